"""Relative flatness of a layer (Petzka et al., NeurIPS 2021).

For a layer with weight matrix ``W`` (rows ``w_s``, one per output unit),

    kappa = sum_{s, s'} <w_s, w_s'> Tr(H_{s, s'}),

where ``H_{s, s'}`` is the block of the training loss's Hessian between the
rows ``w_s`` and ``w_s'``. Written as one trace, ``kappa = Tr(S H_W S)`` with
``H_W`` the Hessian in the layer's weights and ``S = (W W^T)^{1/2} (x) I``,
so it is computed from Hessian-vector products: exactly (one product per
weight of the layer) or by Hutchinson's estimator. Scaling the layer by
``a`` and the layer before it by ``1 / a`` (a ReLU network computes the same
function) multiplies ``<w_s, w_s'>`` by ``a^2`` and ``H`` by ``1 / a^2``:
``kappa`` does not change, unlike the trace of the Hessian.
"""

import math
from numbers import Integral

import torch
from torch import nn

__all__ = ["layer_weight_name", "relative_flatness"]

# Products per matmat call: bounds the (chunk, n_params) float64 vectors.
_CHUNK_BYTES = 64 * 1024**2


def layer_weight_name(module, layer):
    """Return the parameter name of the weight matrix of one ``nn.Linear`` layer.

    Parameters
    ----------
    module : torch.nn.Module
        The network.
    layer : int or str
        Index into its ``nn.Linear`` layers in definition order (``-1``: the
        last, whose inputs are the network's features) or a module name.

    Returns
    -------
    name : str
        As in ``module.named_parameters()``.
    """
    linear = [
        (name, sub)
        for name, sub in module.named_modules()
        if isinstance(sub, nn.Linear)
    ]
    if isinstance(layer, str):
        found = [name for name, _ in linear if name == layer]
        if not found:
            raise ValueError(
                f"layer={layer!r} is not an nn.Linear of the network; its linear "
                f"layers are {[name for name, _ in linear]}."
            )
        name = found[0]
    else:
        if not linear:
            raise ValueError("The network has no nn.Linear layer to measure.")
        if not isinstance(layer, Integral) or not -len(linear) <= layer < len(linear):
            raise ValueError(
                f"layer must be a name or an index in [-{len(linear)}, "
                f"{len(linear)}) of the network's nn.Linear layers; got {layer!r}."
            )
        name = linear[layer][0]
    return f"{name}.weight" if name else "weight"


def relative_flatness(hessian, theta0, layer_name, *, n_probes=None, seed=0):
    """Relative flatness ``Tr(S H_W S)`` of one layer from Hessian products.

    Parameters
    ----------
    hessian : LossHessian
        The training loss's Hessian at the minimum (plain, not
        filter-normalized).
    theta0 : torch.Tensor of shape (n_params,)
        The trained weights, ordered as ``hessian.layout``.
    layer_name : str
        Name of the layer's weight matrix in the layout.
    n_probes : int or None, default=None
        None computes the trace exactly (one product per weight of the
        layer); an integer uses that many Rademacher probes (Hutchinson).
    seed : int, default=0
        Seed of the probes.

    Returns
    -------
    kappa : float
        The relative flatness.
    std_error : float
        Standard error of a Hutchinson estimate; 0 when exact.
    """
    spec = next((s for s in hessian.layout.specs if s.name == layer_name), None)
    if spec is None or len(spec.shape) != 2:
        raise ValueError(f"{layer_name!r} is not a weight matrix of the network.")
    d_out, d_in = spec.shape
    W = theta0[spec.offset : spec.offset + spec.numel].detach().double().cpu()
    W = W.view(d_out, d_in)
    values, vectors = torch.linalg.eigh(W @ W.T)
    root = (vectors * values.clamp(min=0).sqrt()) @ vectors.T  # (W W^T)^{1/2}
    n_params = hessian.n_params
    if n_probes is None:
        # Probe e_(s, j) for every weight: S e_(s, j) is column s of the root
        # in block j.
        count = d_out * d_in
        index = torch.arange(count)
        rows, cols = index // d_in, index % d_in

        def probes(start, stop):
            block = torch.zeros(stop - start, d_out, d_in, dtype=torch.float64)
            k = torch.arange(stop - start)
            block[k, :, cols[start:stop]] = root[:, rows[start:stop]].T
            return block.reshape(stop - start, -1)

    else:
        if not isinstance(n_probes, Integral) or n_probes < 2:
            raise ValueError(
                f"n_probes must be None or an integer >= 2; got {n_probes!r}."
            )
        count = int(n_probes)
        generator = torch.Generator().manual_seed(int(seed))
        signs = torch.randint(0, 2, (count, d_out, d_in), generator=generator) * 2.0 - 1
        signs = signs.double()

        def probes(start, stop):
            return torch.einsum("st,ktj->ksj", root, signs[start:stop]).reshape(
                stop - start, -1
            )

    chunk = max(1, _CHUNK_BYTES // (8 * n_params))
    forms = []
    for start in range(0, count, chunk):
        stop = min(start + chunk, count)
        local = probes(start, stop)
        full = torch.zeros(stop - start, n_params, dtype=hessian.dtype)
        full[:, spec.offset : spec.offset + spec.numel] = local.to(hessian.dtype)
        products = hessian.matmat(full.to(hessian.device)).double().cpu()
        layer_part = products[:, spec.offset : spec.offset + spec.numel]
        forms.append((local * layer_part).sum(dim=1))
    forms = torch.cat(forms).numpy()
    if n_probes is None:
        return float(forms.sum()), 0.0
    return float(forms.mean()), float(forms.std(ddof=1) / math.sqrt(count))
