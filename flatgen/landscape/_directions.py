"""Filter-normalized random directions (Li et al., 2018)."""

from numbers import Integral

import numpy as np
import torch

__all__ = ["filter_normalized_directions"]

# Float64 memory of one block of directions being scaled.
_BLOCK_BYTES = 1024**2


def _direction_seed(seed, *key):
    # One independent stream per (seed, key): direction k is the same
    # whether it is drawn alone, in a chunk or in one big call; other keys
    # (tuples of any length) name other streams of the same seed.
    state = np.random.SeedSequence(entropy=seed, spawn_key=key).generate_state(
        2, dtype=np.uint32
    )
    return int(state[0]) << 31 | int(state[1]) >> 1


def filter_normalized_directions(
    layout,
    theta,
    n_directions,
    seed,
    *,
    start=0,
    include_bias=False,
    dtype=None,
    device=None,
):
    """Draw random directions scaled filter by filter to the weights' norms.

    For every filter ``f`` (see :class:`ParameterLayout`) a Gaussian vector
    ``g ~ N(0, I)`` is drawn and scaled to the filter's own norm:
    ``d_f = g / ||g|| * ||W_f||``. A filter of zero norm gets a zero
    direction.

    Parameters
    ----------
    layout : ParameterLayout
        Layout of the network's parameters.
    theta : torch.Tensor of shape (n_params,)
        Flat parameters whose filter norms set the scale (the minimizer).
    n_directions : int
        Number of directions to draw.
    seed : int
        Non-negative seed.
    start : int, default=0
        Index of the first direction. Direction ``k`` is drawn from its own
        generator seeded by ``(seed, k)``, so the result is deterministic in
        ``(seed, start, n_directions)`` and chunking does not change it:
        rows ``i:j`` of a call with ``start=0`` equal a call with
        ``start=i, n_directions=j - i``.
    include_bias : bool, default=False
        If False, biases and normalization parameters (tensors with at most
        one dimension) get a zero direction: they are not perturbed. If
        True, each such vector ``b`` is treated as one filter and gets
        ``g / ||g|| * ||b||``.
    dtype : torch.dtype, default=None
        Dtype of the result; that of ``theta`` when None.
    device : torch.device, default=None
        Device of the result; that of ``theta`` when None.

    Returns
    -------
    directions : torch.Tensor of shape (n_directions, n_params)
        One direction per row.

    Notes
    -----
    The Gaussian draws use a seeded CPU :class:`torch.Generator` in float32
    (never the global generator), and the scaling is done in float64, so a
    given seed yields the same directions on every device.

    Examples
    --------
    >>> import torch
    >>> from flatgen.landscape import ParameterLayout, flatten_parameters
    >>> from flatgen.networks import MLP
    >>> net = MLP(2, 2, (3,))
    >>> layout, theta = ParameterLayout.from_module(net), flatten_parameters(net)
    >>> d = filter_normalized_directions(layout, theta, 4, seed=0)
    >>> d.shape
    torch.Size([4, 17])
    >>> w = net[0].weight.detach()
    >>> torch.allclose(d[0, :6].view(3, 2).norm(dim=1), w.norm(dim=1))
    True
    >>> bool((d[:, 6:9] == 0).all())  # the first bias is not perturbed
    True
    """
    for name, value in [("n_directions", n_directions), ("start", start)]:
        if not isinstance(value, Integral) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer; got {value!r}.")
    if not isinstance(seed, Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}.")
    theta = torch.as_tensor(theta)
    dtype = theta.dtype if dtype is None else dtype
    device = theta.device if device is None else device
    index, active = layout.groups(include_bias)
    target = layout.group_norms(theta.detach().cpu().double(), include_bias)
    generator = torch.Generator(device="cpu")
    directions = torch.empty((n_directions, layout.n_params), dtype=dtype)
    # Rows are drawn one by one (each from its own generator) and scaled in
    # blocks of up to _BLOCK_BYTES of float64: scaling row by row cost more
    # than the draws on small networks.
    block = max(1, _BLOCK_BYTES // (8 * max(layout.n_params, 1)))
    for first in range(0, n_directions, block):
        rows = range(first, min(first + block, n_directions))
        g = torch.empty((len(rows), layout.n_params))
        for i, row in enumerate(rows):
            generator.manual_seed(_direction_seed(int(seed), int(start) + row))
            torch.randn(layout.n_params, generator=generator, out=g[i])
        g = g.double()
        # Summed in the same order for every row, whatever the block.
        g_norms = torch.zeros((len(rows), len(active)), dtype=torch.float64)
        g_norms.index_add_(1, index, g.square())
        directions[rows.start : rows.stop] = g * (target / g_norms.sqrt()[:, index])
    return directions.to(device)
