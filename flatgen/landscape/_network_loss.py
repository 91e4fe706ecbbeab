"""A network's training loss as a function of a displacement of its weights."""

import math

import torch

from ._parameters import flatten_parameters

__all__ = ["NetworkBasinLoss"]

SPACES = ("filter_normalized", "raw")


class NetworkBasinLoss:
    """Training loss at ``theta* + displacement``, batched, with its curvature.

    A displacement ``z`` of length ``n_dims`` moves the perturbed weights (all
    weight matrices and convolution kernels; biases and normalization
    parameters too if ``include_bias``) by ``scale * z``:

    - ``space='raw'``: ``scale = 1``: ``z`` is a displacement in raw weight
      space, and a volume of ``z`` is a volume of weights;
    - ``space='filter_normalized'``: ``scale`` is the norm of each entry's
      filter (a dense unit's incoming-weight row, a convolution output
      channel; each bias vector is one group), so ``z`` measures every
      filter relative to its own size (Li et al., 2018). Volumes in the two
      spaces differ by the constant factor ``prod(scale)``:
      ``log10 V_raw = log10 V_filter_normalized + log10_scale_det``.

    Calling the object on a (B, n_dims) tensor returns the B training losses
    (no gradient; batched by :class:`BatchedEvaluator`); :meth:`hvp` gives
    Hessian-vector products in the same coordinates. The module is copied,
    never modified. It is a view of a :class:`TrainingObjective` (its
    ``objective``), whose evaluator and Hessian it uses; it pickles without
    them, so joblib and dask workers rebuild them.

    Parameters
    ----------
    module : torch.nn.Module
        Trained network mapping ``X`` to logits.
    X : array-like, torch.Tensor, DataLoader or iterable of (X, y) pairs
        Training inputs shaped for the network, or batches of them.
    y : array-like of int of shape (n_samples,), default=None
        Encoded training labels; None when ``X`` holds batches.
    space : {'filter_normalized', 'raw'}, default='filter_normalized'
        Coordinates of the displacement.
    include_bias : bool, default=False
        Whether biases and normalization parameters are perturbed.

    Attributes
    ----------
    n_dims : int
        Number of perturbed parameters.
    scale : torch.Tensor of shape (n_dims,)
        Factor from displacement coordinates to raw weights (float64).
    log10_scale_det : float
        ``sum(log10(scale))``: add it to a volume in this space to get the
        volume in raw weight space.
    log10_filter_norm_det : float
        ``sum(log10 ||W_f(i)||)`` over the perturbed entries, whatever the
        space: the offset from filter-normalized to raw volumes.
    """

    def __init__(
        self, module, X, y=None, *, space="filter_normalized", include_bias=False
    ):
        from ._objective import TrainingObjective

        objective = TrainingObjective(module, X, y, include_bias=include_bias)
        self._setup(objective, space)

    @classmethod
    def from_objective(cls, objective, space="filter_normalized"):
        """Return the basin loss of a :class:`TrainingObjective`.

        Parameters
        ----------
        objective : TrainingObjective
            The training loss; the basin loss shares its evaluator and
            Hessian, and perturbs what its ``include_bias`` says.
        space : {'filter_normalized', 'raw'}, default='filter_normalized'
            Coordinates of the displacement.

        Returns
        -------
        loss : NetworkBasinLoss
        """
        loss = cls.__new__(cls)
        loss._setup(objective, space)
        return loss

    def _setup(self, objective, space):
        if space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}; got {space!r} instead.")
        self.space = space
        self.objective = objective
        self.include_bias = objective.include_bias
        module = objective.module
        self._layout = objective.layout
        theta = flatten_parameters(module)
        self._theta0 = theta
        self._index = objective.perturbed_index
        self._runs = _contiguous_runs(self._index)
        self.n_dims = objective.n_perturbed
        if self.n_dims == 0:
            raise ValueError("The network has no parameters to perturb.")
        norms = self._layout.group_norms(theta.detach().cpu().double(), True)
        if space == "raw":
            self.scale = torch.ones(self.n_dims, dtype=torch.float64)
        else:
            self.scale = norms[self._index].double()
            if not torch.all(self.scale > 0):
                raise ValueError(
                    "space='filter_normalized' needs every perturbed filter to have "
                    "a nonzero norm; some are all zeros. Use space='raw'."
                )
        self.log10_scale_det = float(torch.log10(self.scale).sum())
        filter_norms = norms[self._index].double()
        self.log10_filter_norm_det = (
            float(torch.log10(filter_norms).sum())
            if torch.all(filter_norms > 0)
            else float("nan")
        )

    @property
    def n_filters(self):
        """Number of perturbed filters (normalization groups)."""
        index, active = self._layout.groups(self.include_bias)
        return int(active.sum())

    def _embed(self, displacements, dtype, device):
        full = torch.zeros(
            (len(displacements), self._layout.n_params), dtype=dtype, device=device
        )
        scaled = displacements.to(torch.float64) * self.scale.to(displacements.device)
        full[:, self._index.to(device)] = scaled.to(device, dtype)
        return full

    def _displaced(self, displacements, device):
        """Return ``theta* + embed(scale * z)`` for rows ``z``, in the network's dtype.

        The perturbed entries are a few contiguous runs of the flat weights
        (each layer's weights, its bias left out): slice-wise additions
        instead of a zero matrix, an indexed write and a full sum: the same
        numbers, the losses at 120 displacements of the swiss-roll MLP
        1.2-1.6x faster (``benchmarks/basin_loss_embedding.py``).
        """
        theta0 = self._theta0.to(device)
        # The product in float64 (the scale's precision), rounded once to
        # the network's dtype, in one pass: no float64 copies of the rows.
        scaled = torch.empty(
            displacements.shape, dtype=theta0.dtype, device=displacements.device
        )
        torch.mul(displacements, self.scale.to(displacements.device), out=scaled)
        scaled = scaled.to(device)
        thetas = theta0.expand(len(displacements), -1).clone()
        for first, stop, start, end in self._runs:
            thetas[:, first:stop].add_(scaled[:, start:end])
        return thetas

    def _perturbed(self, grads):
        """Return the perturbed entries' columns of rows of flat weights."""
        if len(self._runs) == 1:
            first, stop, _, _ = self._runs[0]
            return grads[:, first:stop]
        return torch.cat([grads[:, first:stop] for first, stop, _, _ in self._runs], 1)

    def __call__(self, displacements):
        """Training loss at each displacement.

        Parameters
        ----------
        displacements : torch.Tensor of shape (B, n_dims)
            Displacements from the minimum, in this object's space.

        Returns
        -------
        losses : torch.Tensor of shape (B,), dtype float64
            Mean training cross-entropy at each displaced weight vector.
        """
        evaluator = self.objective.evaluator
        thetas = self._displaced(torch.as_tensor(displacements), evaluator.device)
        return torch.as_tensor(evaluator.loss(thetas), dtype=torch.float64)

    def losses_along(self, displacements, shares):
        """Training loss at ``s z`` for every share ``s`` and row ``z``.

        The same numbers as calling this object on the stacked rows
        ``s z`` (to the network's rounding), without building them: the
        weight vectors ``theta* + s embed(scale * z)`` are written in one
        product and one sum, which makes the losses along 8 segments of 16
        points (the star-shaped basin's energy) 1.2x faster on the
        swiss-roll MLP (``benchmarks/segment_losses.py``).

        Parameters
        ----------
        displacements : torch.Tensor of shape (B, n_dims)
            Displacements from the minimum, in this object's space.
        shares : torch.Tensor of shape (K,)
            Points along each segment from the minimum, as shares of it.

        Returns
        -------
        losses : torch.Tensor of shape (K, B), dtype float64
            Mean training cross-entropy at each point of each segment.
        """
        evaluator = self.objective.evaluator
        device = evaluator.device
        displacements = torch.as_tensor(displacements)
        theta0 = self._theta0.to(device)
        steps = self._embed(displacements, torch.float64, device)
        shares = torch.as_tensor(shares, dtype=torch.float64, device=device)
        # The product in float64, rounded once to the network's dtype; the
        # entries left unperturbed get theta* + 0, theta* exactly.
        thetas = torch.empty(
            (len(shares), len(displacements), len(theta0)),
            dtype=theta0.dtype,
            device=device,
        )
        torch.mul(shares[:, None, None], steps[None], out=thetas)
        thetas = thetas.add_(theta0).reshape(-1, len(theta0))
        losses = torch.as_tensor(evaluator.loss(thetas), dtype=torch.float64)
        return losses.reshape(len(shares), len(displacements))

    def losses_and_grads(self, displacements):
        """Training loss and its gradient at each displacement.

        Parameters
        ----------
        displacements : torch.Tensor of shape (B, n_dims)
            Displacements from the minimum, in this object's space.

        Returns
        -------
        losses : torch.Tensor of shape (B,), dtype float64
            Mean training loss at each displaced weight vector.
        grads : torch.Tensor of shape (B, n_dims), dtype float64
            Their gradients with respect to the displacements.
        """
        device = self.objective.theta0.device
        thetas = self._displaced(torch.as_tensor(displacements), device)
        losses, grads = self.objective.losses_and_grads(thetas)
        grads = self._perturbed(grads).detach().to("cpu", torch.float64) * self.scale
        return losses.detach().to("cpu", torch.float64), grads

    def hvp(self, vectors):
        """Hessian-vector products of the training loss in this space.

        Parameters
        ----------
        vectors : torch.Tensor of shape (B, n_dims)
            Vectors in displacement coordinates.

        Returns
        -------
        products : torch.Tensor of shape (B, n_dims), dtype float64
            ``S H S v`` with ``S = diag(scale)`` and ``H`` the Hessian of the
            loss in the perturbed weights.
        """
        hessian = self.objective.hessian
        vectors = torch.as_tensor(vectors, dtype=torch.float64)
        full = self._embed(vectors, hessian.dtype, hessian.device)
        out = hessian.matmat(full)
        index = self._index.to(out.device)
        return out[:, index].double().cpu() * self.scale

    def paper_scale(self):
        """Radius of the paper's cap in these coordinates, per unit ``max_radius``.

        The paper's filter-normalized direction has, per filter, the norm of
        that filter, so its total length is ``sqrt(n_filters)`` in
        filter-normalized coordinates and ``||theta||`` in raw ones: a cap of
        ``max_radius`` paper units is ``max_radius`` times this length.
        """
        if self.space == "raw":
            return float(self._theta0.detach().double()[self._index].norm())
        return math.sqrt(self.n_filters)


def _contiguous_runs(index):
    """Split sorted flat indices into runs of consecutive entries.

    Returns ``(first, stop, start, end)`` per run: flat entries
    ``first:stop`` are positions ``start:end`` of ``index``.
    """
    index = index.detach().cpu().reshape(-1)
    if len(index) == 0:
        return []
    breaks = (torch.nonzero(index[1:] - index[:-1] != 1).reshape(-1) + 1).tolist()
    starts, ends = [0, *breaks], [*breaks, len(index)]
    return [
        (int(index[a]), int(index[a]) + (b - a), a, b) for a, b in zip(starts, ends)
    ]
