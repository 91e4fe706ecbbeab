"""Flat views of a module's parameters and which of them are filters."""

import copy
from dataclasses import dataclass

import torch

__all__ = [
    "ParameterLayout",
    "ParameterSpec",
    "flatten_parameters",
    "module_with_parameters",
]


@dataclass(frozen=True)
class ParameterSpec:
    """Where one parameter tensor lives inside the flat parameter vector.

    Attributes
    ----------
    name : str
        Name as given by :meth:`torch.nn.Module.named_parameters`.
    shape : tuple of int
        Shape of the tensor.
    offset : int
        Index of its first element in the flat vector.
    numel : int
        Number of elements.
    is_filter : bool
        True for weights with at least two dimensions (``nn.Linear``,
        ``nn.Conv*``): each slice along the first axis (a dense unit's
        incoming-weight row, a convolution's output channel) is one filter.
        False for biases and normalization parameters (at most one
        dimension), which form a single group each.
    """

    name: str
    shape: tuple
    offset: int
    numel: int
    is_filter: bool

    @property
    def n_groups(self):
        """Number of normalization groups: filters, or 1 for a bias."""
        return self.shape[0] if self.is_filter else 1


class ParameterLayout:
    """Names, shapes and filter structure of a module's parameters.

    The flat vector concatenates the parameters in the order of
    :meth:`torch.nn.Module.named_parameters` (shared parameters once), each
    flattened in row-major order, so every filter is a contiguous block.

    Parameters
    ----------
    specs : sequence of ParameterSpec
        One entry per parameter tensor, in flat-vector order.

    Attributes
    ----------
    specs : tuple of ParameterSpec
        The parameter tensors.
    n_params : int
        Length of the flat vector.

    Examples
    --------
    >>> from flatgen.networks import MLP
    >>> layout = ParameterLayout.from_module(MLP(2, 2, (3,)))
    >>> for spec in layout.specs:
    ...     print(spec.name, spec.shape, spec.offset, spec.is_filter)
    0.weight (3, 2) 0 True
    0.bias (3,) 6 False
    2.weight (2, 3) 9 True
    2.bias (2,) 15 False
    >>> layout.n_params
    17
    """

    def __init__(self, specs):
        self.specs = tuple(specs)
        self.n_params = sum(spec.numel for spec in self.specs)

    @classmethod
    def from_module(cls, module):
        """Describe the parameters of ``module``.

        Parameters
        ----------
        module : torch.nn.Module
            The network.

        Returns
        -------
        layout : ParameterLayout
            Its layout.
        """
        specs, offset = [], 0
        for name, param in module.named_parameters():
            numel = param.numel()
            specs.append(
                ParameterSpec(name, tuple(param.shape), offset, numel, param.ndim >= 2)
            )
            offset += numel
        return cls(specs)

    @property
    def names(self):
        """Tuple of parameter names."""
        return tuple(spec.name for spec in self.specs)

    def unflatten(self, thetas):
        """Split flat vectors into named tensors, as views (no copy).

        Parameters
        ----------
        thetas : torch.Tensor of shape (n_params,) or (B, n_params)
            One flat vector or a batch of them.

        Returns
        -------
        tensors : dict of str to torch.Tensor
            For each parameter, a view of shape ``spec.shape`` (or
            ``(B,) + spec.shape`` for a batch).
        """
        self._check_length(thetas)
        lead = thetas.shape[:-1]
        return {
            spec.name: thetas[..., spec.offset : spec.offset + spec.numel].view(
                *lead, *spec.shape
            )
            for spec in self.specs
        }

    def groups(self, include_bias=False, device=None):
        """Assign every flat entry to its normalization group.

        Parameters
        ----------
        include_bias : bool, default=False
            Whether the non-filter parameters (biases, normalization
            parameters) take part; each whole vector is then one group.
        device : torch.device, default=None
            Where to put the returned tensors (CPU when None).

        Returns
        -------
        group_index : torch.Tensor of shape (n_params,), dtype int64
            Group of each entry.
        active : torch.Tensor of shape (n_groups,), dtype bool
            False for the groups of non-filter parameters when
            ``include_bias`` is False.
        """
        index, active, start = [], [], 0
        for spec in self.specs:
            n_groups = spec.n_groups
            ids = torch.arange(start, start + n_groups, device=device)
            index.append(ids.repeat_interleave(spec.numel // n_groups))
            active += [spec.is_filter or include_bias] * n_groups
            start += n_groups
        if not index:
            return (
                torch.zeros(0, dtype=torch.int64, device=device),
                torch.zeros(0, dtype=torch.bool, device=device),
            )
        return torch.cat(index), torch.tensor(active, device=device)

    def group_norms(self, theta, include_bias=False):
        """Norm of each entry's group, broadcast to every entry.

        This is the diagonal of the filter-normalization scaling ``D``:
        ``||W_f||`` on the entries of filter ``f``, ``||b||`` on a bias
        vector ``b`` when ``include_bias`` is True and 0 on it otherwise.

        Parameters
        ----------
        theta : torch.Tensor of shape (n_params,)
            Flat parameter vector.
        include_bias : bool, default=False
            See :meth:`groups`.

        Returns
        -------
        norms : torch.Tensor of shape (n_params,)
            Same dtype and device as ``theta``; computed in float64.
        """
        self._check_length(theta)
        index, active = self.groups(include_bias, device=theta.device)
        squares = torch.zeros(len(active), dtype=torch.float64, device=theta.device)
        squares.index_add_(0, index, theta.detach().double().square())
        norms = squares.sqrt() * active
        return norms[index].to(theta.dtype)

    def _check_length(self, thetas):
        if thetas.shape[-1:] != (self.n_params,):
            raise ValueError(
                f"Expected flat parameter vectors of length {self.n_params}; got "
                f"a tensor of shape {tuple(thetas.shape)}."
            )

    def __repr__(self):
        n_filters = sum(s.n_groups for s in self.specs if s.is_filter)
        return (
            f"ParameterLayout(n_params={self.n_params}, n_tensors={len(self.specs)}, "
            f"n_filters={n_filters})"
        )


def flatten_parameters(module):
    """Return a detached copy of all parameters as one flat vector.

    Parameters
    ----------
    module : torch.nn.Module
        The network; it is not modified.

    Returns
    -------
    theta : torch.Tensor of shape (n_params,)
        New tensor on the parameters' device and dtype, ordered as
        :class:`ParameterLayout`.
    """
    params = [p.detach().reshape(-1) for p in module.parameters()]
    if not params:
        return torch.zeros(0)
    # torch.cat always allocates, so the result never aliases the module.
    return torch.cat(params)


def module_with_parameters(module, theta):
    """Return a deep copy of ``module`` whose parameters are ``theta``.

    Parameters
    ----------
    module : torch.nn.Module
        Template network; it is not modified.
    theta : torch.Tensor of shape (n_params,)
        Flat parameter vector, ordered as :class:`ParameterLayout`.

    Returns
    -------
    copy : torch.nn.Module
        Independent copy with the same buffers, training mode and
        ``requires_grad`` flags as ``module``.
    """
    layout = ParameterLayout.from_module(module)
    tensors = layout.unflatten(torch.as_tensor(theta))
    clone = copy.deepcopy(module)
    with torch.no_grad():
        for name, param in clone.named_parameters():
            param.copy_(tensors[name])
    return clone
