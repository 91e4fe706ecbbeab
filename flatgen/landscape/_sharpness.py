"""Sharpness of a minimum: worst-case and average loss increase, tolerated scales.

Every function here sees the loss through two callables, so it works on any
model and is checked on quadratics with closed-form answers:

- ``losses_at(thetas)``: the losses at a batch of parameter vectors
  ``(B, n) -> (B,)``, no gradient (for networks, a
  :class:`~flatgen.landscape.BatchedEvaluator`);
- ``loss_and_grad(theta)``: the loss and its gradient at one vector (for
  networks, :class:`NetworkLoss`).

Perturbations live in a scaled space: ``delta = scale * u`` with ``u`` in an
L2 ball or Gaussian. ``scale`` is 1 on every perturbed entry (raw weights),
``|theta|`` (adaptive sharpness, Kwon et al. 2021; Andriushchenko et al.
2023: invariant to rescaling the layers of a ReLU network) or the entry's
filter norm (the filter-normalized space of flatgen's basins); 0 on entries
left alone.
"""

import copy
import math

import numpy as np
import scipy.optimize.elementwise
import torch
import torch.nn.functional as F
from torch.func import functional_call, jvp, vmap

from ._criterion import sample_loss
from ._data import DataBatches, is_batches
from ._dense_gradients import dense_layers, many_losses_and_grads
from ._parameters import ParameterLayout, flatten_parameters

SCALES = ("adaptive", "filter_normalized", "raw")


class NetworkLoss:
    """Mean training cross-entropy of a network as a function of its flat weights.

    Parameters
    ----------
    module : torch.nn.Module
        Trained network; a private copy in eval mode is used.
    X : array-like, torch.Tensor, DataLoader or iterable of (X, y) pairs
        Inputs shaped for the network, or batches of inputs and labels.
    y : array-like of int of shape (n_samples,), default=None
        Encoded labels (targets for a regression criterion); None when
        ``X`` holds batches.
    criterion : torch.nn.Module, default=None
        Loss with ``reduction='mean'``; None is the cross-entropy of logits.

    Attributes
    ----------
    layout : ParameterLayout
        Order of the flat vector.
    theta0 : torch.Tensor of shape (n_params,)
        The trained weights.
    """

    def __init__(self, module, X, y=None, *, criterion=None):
        self.loss = sample_loss(criterion)
        self.module = copy.deepcopy(module).eval()
        for param in self.module.parameters():
            param.requires_grad_(False)
        self.layout = ParameterLayout.from_module(self.module)
        self.theta0 = flatten_parameters(self.module)
        self._dense_ops = self._dense_layers()
        if is_batches(X):
            self.batches = DataBatches(X, classification=self.loss.classification)
            self.X = self.y = None
        else:
            self.batches = None
            self.X, self.y = self._on_device(X, y)

    def __getstate__(self):
        # The dense layers' activation rules are lambdas: rebuilt, not pickled.
        state = self.__dict__.copy()
        state.pop("_dense_ops", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._dense_ops = self._dense_layers()

    def _dense_layers(self):
        # Written-out gradients for dense stacks under the cross-entropy.
        return dense_layers(self.module) if self.loss.classification else None

    def _on_device(self, X, y):
        device, dtype = self.theta0.device, self.theta0.dtype
        X = torch.as_tensor(X).to(device)
        X = X.to(dtype) if X.is_floating_point() else X
        return X, self.loss.targets(y, device, dtype)

    def _data(self):
        """Yield the data as (X, y) pieces: one, or every batch."""
        if self.batches is None:
            yield self.X, self.y
        else:
            for X, y in self.batches:
                yield self._on_device(X, y)

    def _per_sample(self, theta, X, y):
        outputs = functional_call(self.module, self.layout.unflatten(theta), (X,))
        return self.loss.per_sample(outputs, y)

    def per_sample(self, theta):
        """Return the cross-entropy of every sample at weights ``theta``.

        Parameters
        ----------
        theta : torch.Tensor of shape (n_params,)
            Flat weights (may require grad).

        Returns
        -------
        losses : torch.Tensor of shape (n_samples,)
            One loss per sample (over every batch in turn).
        """
        return torch.cat([self._per_sample(theta, X, y) for X, y in self._data()])

    def loss_and_grad(self, theta):
        """Return the mean loss at ``theta`` and its gradient.

        Over batches, the sums of every batch's losses and gradients, divided
        by the number of samples (memory bounded by one batch).

        Parameters
        ----------
        theta : torch.Tensor of shape (n_params,)
            Flat weights.

        Returns
        -------
        loss : float
            Mean cross-entropy.
        grad : torch.Tensor of shape (n_params,)
            Its gradient.
        """
        if self.batches is None:
            theta = theta.detach().clone().requires_grad_(True)
            loss = self.per_sample(theta).mean()
            (grad,) = torch.autograd.grad(loss, theta)
            return float(loss.detach()), grad
        total, grad = 0.0, torch.zeros_like(theta)
        for X, y in self._data():
            point = theta.detach().clone().requires_grad_(True)
            loss = self._per_sample(point, X, y).sum()
            grad += torch.autograd.grad(loss, point)[0]
            total += float(loss.detach().double())
        n_samples = self.batches.n_samples
        return total / n_samples, grad / n_samples

    def losses_and_grads(self, thetas):
        """Return the mean loss and its gradient at each of many weight vectors.

        For a plain sequential stack of linear layers and elementwise
        activations under the cross-entropy, by batched products with the
        backward pass written out; otherwise the losses by one
        ``torch.func.vmap`` over the stacked vectors and their gradients by
        one ordinary backward pass of their sum (each loss depends on its
        own row only). Per batch, summed, over batches.

        Parameters
        ----------
        thetas : torch.Tensor of shape (B, n_params)
            Flat weight vectors.

        Returns
        -------
        losses : torch.Tensor of shape (B,)
            Mean cross-entropy at each vector.
        grads : torch.Tensor of shape (B, n_params)
            Their gradients.
        """
        # Dense stacks on rows: the backward pass written out
        # (_dense_gradients). Otherwise the same numbers as
        # vmap(grad_and_value(...)), bit for bit, and 1.1-1.3x faster on the
        # digits CNN at 4-16 vectors (benchmarks/batched_gradients.py): the
        # backward pass is autograd's own instead of a vmapped one.
        if self.batches is None:
            return self._batched_losses_and_grads(thetas, self.X, self.y, "mean")
        losses, grads = 0.0, 0.0
        for X, y in self._data():
            batch_losses, batch_grads = self._batched_losses_and_grads(
                thetas, X, y, "sum"
            )
            losses = losses + batch_losses
            grads = grads + batch_grads
        n_samples = self.batches.n_samples
        return losses / n_samples, grads / n_samples

    def _batched_losses_and_grads(self, thetas, X, y, reduction):
        if self._dense_ops is not None and X.ndim == 2:
            return many_losses_and_grads(
                self._dense_ops, self.layout, thetas, X, y, reduction
            )
        thetas = thetas.detach().requires_grad_(True)
        with torch.enable_grad():
            losses = vmap(
                lambda theta: getattr(self._per_sample(theta, X, y), reduction)()
            )(thetas)
            (grads,) = torch.autograd.grad(losses.sum(), thetas)
        return losses.detach(), grads

    def curvatures_along(self, direction, steps, chunk_size):
        """Return ``d^2/dc^2 L(theta0 + c d)`` at every step ``c``, batched.

        The steps of a chunk are independent, so differentiating the sum of
        their losses twice with respect to the steps gives every step's
        second derivative at once: one batched forward pass and two backward
        passes per chunk (60 frames of the swiss-roll MLP: 0.09 s, vs 0.21 s
        for a loop of per-step double backpropagations).

        Parameters
        ----------
        direction : torch.Tensor of shape (n_params,)
            The direction ``d``.
        steps : array-like of shape (n_steps,)
            The steps ``c``.
        chunk_size : int
            Steps per batched pass.

        Returns
        -------
        curvatures : ndarray of shape (n_steps,), dtype float64
            ``d^T H(theta0 + c d) d`` at each step.
        """
        if self.batches is not None or not self.loss.classification:
            raise ValueError(
                "curvatures_along needs the training set as arrays and the "
                "cross-entropy of a classifier."
            )
        theta0 = self.theta0
        steps = torch.as_tensor(steps, dtype=theta0.dtype).to(theta0.device)
        X, y = self.X, self.y

        def forward(params, inputs):
            return functional_call(self.module, params, (inputs,))

        pieces = []
        for start in range(0, len(steps), chunk_size):
            # enable_grad: the caller may be inside torch.no_grad().
            with torch.enable_grad():
                c = steps[start : start + chunk_size].clone().requires_grad_(True)
                thetas = theta0 + c[:, None] * direction
                params = self.layout.unflatten(thetas)
                logits = vmap(forward, in_dims=(0, None))(params, X)
                n_frames, n_samples, n_classes = logits.shape
                losses = F.cross_entropy(
                    logits.reshape(-1, n_classes),
                    y.repeat(n_frames),
                    reduction="none",
                ).view(n_frames, n_samples)
                (slopes,) = torch.autograd.grad(
                    losses.mean(dim=1).sum(), c, create_graph=True
                )
                (curvatures,) = torch.autograd.grad(slopes.sum(), c)
            pieces.append(curvatures.detach())
        return torch.cat(pieces).double().cpu().numpy()

    def directional_derivatives(self, tangent):
        """Return ``<tangent, grad loss_i>`` of every sample at the trained weights.

        One forward-mode pass (``torch.func.jvp``) for all samples of a batch.

        Parameters
        ----------
        tangent : torch.Tensor of shape (n_params,)
            Direction in weight space.

        Returns
        -------
        derivatives : torch.Tensor of shape (n_samples,)
            Per-sample directional derivatives.
        """
        pieces = []
        for X, y in self._data():
            _, derivatives = jvp(
                lambda theta, X=X, y=y: self._per_sample(theta, X, y),
                (self.theta0,),
                (tangent,),
            )
            pieces.append(derivatives)
        return torch.cat(pieces)


def perturbation_scale(layout, theta0, scale, include_bias=False):
    """Return the per-entry scale of perturbations in one of the ``SCALES``.

    Parameters
    ----------
    layout : ParameterLayout
        Layout of ``theta0``.
    theta0 : torch.Tensor of shape (n_params,)
        Trained weights.
    scale : {'adaptive', 'filter_normalized', 'raw'}
        ``|theta0|``, the entry's filter norm, or 1, on perturbed entries.
    include_bias : bool, default=False
        Whether biases and normalization parameters are perturbed.

    Returns
    -------
    scale : torch.Tensor of shape (n_params,)
        0 on the entries left alone.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}; got {scale!r} instead.")
    index, active = layout.groups(include_bias, device=theta0.device)
    mask = active[index].to(theta0.dtype)
    if scale == "raw":
        return mask
    if scale == "adaptive":
        return theta0.abs() * mask
    return layout.group_norms(theta0, include_bias).to(theta0.dtype)


def _check_positive(name, value):
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number; got {value!r}.")


def _as_float64(losses):
    return np.asarray(torch.as_tensor(losses).detach().cpu(), dtype=np.float64)


def worst_case_sharpness(
    loss_and_grad, theta0, scale, radius, *, n_steps=20, n_restarts=1, seed=0
):
    """Largest loss increase in a ball around the minimum, by projected ascent.

    ``max_{||u|| <= radius} L(theta0 + scale * u) - L(theta0)``: the
    sharpness that SAM minimizes (Foret et al. 2021) and, with ``scale =
    |theta0|``, the adaptive sharpness of Andriushchenko et al. (2023). Each
    restart starts at a seeded random point of the sphere and takes
    ``n_steps`` normalized gradient steps of decreasing length, projected back
    into the ball; the largest loss seen is returned. Ascent finds a lower
    bound of the true maximum: on a quadratic it converges to the closed
    form ``radius**2 / 2 * lambda_max(S H S)``.

    Parameters
    ----------
    loss_and_grad : callable
        ``theta -> (loss, gradient)``.
    theta0 : torch.Tensor of shape (n_params,)
        The minimum.
    scale : torch.Tensor of shape (n_params,)
        Per-entry scale of the perturbation (see :func:`perturbation_scale`).
    radius : float
        Radius of the ball of ``u``.
    n_steps : int, default=20
        Ascent steps per restart.
    n_restarts : int, default=1
        Random starting points.
    seed : int, default=0
        Seed of the starting points.

    Returns
    -------
    sharpness : float
        Largest loss increase found (>= 0).
    u : torch.Tensor of shape (n_params,)
        The scaled perturbation that reached it (``delta = scale * u``).
    """
    _check_positive("radius", radius)
    base, _ = loss_and_grad(theta0)
    generator = torch.Generator().manual_seed(int(seed))
    best, best_u = 0.0, torch.zeros_like(theta0)
    active = scale != 0
    for _ in range(n_restarts):
        u = torch.randn(theta0.shape, generator=generator, dtype=theta0.dtype)
        u = u.to(theta0.device) * active
        u *= radius / u.norm().clamp_min(1e-30)
        for step in range(n_steps + 1):
            loss, grad = loss_and_grad(theta0 + scale * u)
            if loss - base > best:
                best, best_u = loss - base, u.clone()
            if step == n_steps:
                break
            ascent = grad * scale  # gradient with respect to u
            norm = ascent.norm()
            if not torch.isfinite(norm) or norm == 0:
                break
            # Steps shrink from the radius to a tenth of it: far moves first,
            # then a settled point on the sphere.
            length = radius * (1.0 - 0.9 * step / max(n_steps - 1, 1))
            u = u + length * ascent / norm
            u *= torch.clamp(radius / u.norm().clamp_min(1e-30), max=1.0)
    return float(best), best_u


def average_sharpness(losses_at, theta0, scale, sigma, *, n_samples=64, seed=0):
    """Mean loss increase under Gaussian perturbations of the weights.

    ``E_u[L(theta0 + sigma * scale * u)] - L(theta0)`` with ``u ~ N(0, I)``
    (average-case sharpness; on a quadratic ``sigma**2 / 2 * tr(S H S)``).

    Parameters
    ----------
    losses_at : callable
        ``(B, n_params) -> (B,)`` losses, no gradient needed.
    theta0 : torch.Tensor of shape (n_params,)
        The minimum.
    scale : torch.Tensor of shape (n_params,)
        Per-entry scale (see :func:`perturbation_scale`).
    sigma : float
        Standard deviation of ``u``'s multiplier.
    n_samples : int, default=64
        Gaussian draws.
    seed : int, default=0
        Seed of the draws.

    Returns
    -------
    sharpness : float
        Mean loss increase.
    std_error : float
        Its Monte-Carlo standard error.
    """
    _check_positive("sigma", sigma)
    draws = _gaussian_draws(theta0, scale, n_samples, seed)
    base = _as_float64(losses_at(theta0[None]))[0]
    increase = _as_float64(losses_at(theta0 + sigma * draws)) - base
    return float(increase.mean()), float(increase.std(ddof=1) / np.sqrt(n_samples))


def _gaussian_draws(theta0, scale, n_samples, seed):
    generator = torch.Generator().manual_seed(int(seed))
    draws = torch.randn(
        (n_samples, theta0.numel()), generator=generator, dtype=theta0.dtype
    )
    return draws.to(theta0.device) * scale


def pac_bayes_sigma(
    losses_at,
    theta0,
    scale,
    *,
    bound=0.1,
    n_samples=64,
    sigma_max=10.0,
    rtol=1e-3,
    seed=0,
):
    """Largest Gaussian noise the minimum tolerates: the PAC-Bayes flatness sigma.

    The largest ``sigma`` with ``E_u[L(theta0 + sigma * scale * u)] -
    L(theta0) <= bound``, ``u ~ N(0, I)``, found by a bracketing root search
    on ``log sigma`` (Chandrupatla's method) with the same draws at every
    ``sigma`` (common random numbers, so the estimated expectation is a
    smooth function of ``sigma`` and the search interpolates it). Jiang
    et al. (2020) rank networks by ``1 / sigma**2`` ("pacbayes.flatness")
    with a bound of 0.1 on the training error; here the bound is on the
    mean cross-entropy. On a quadratic, ``sigma = sqrt(2 bound / tr(S H
    S))``.

    Parameters
    ----------
    losses_at : callable
        ``(B, n_params) -> (B,)`` losses.
    theta0 : torch.Tensor of shape (n_params,)
        The minimum.
    scale : torch.Tensor of shape (n_params,)
        Per-entry scale (see :func:`perturbation_scale`).
    bound : float, default=0.1
        Largest tolerated mean loss increase.
    n_samples : int, default=64
        Gaussian draws (reused at every sigma).
    sigma_max : float, default=10.0
        Upper end of the search; returned (flagged) when even it stays
        below the bound.
    rtol : float, default=1e-3
        Relative precision of sigma.
    seed : int, default=0
        Seed of the draws.

    Returns
    -------
    sigma : float
        The largest tolerated noise level (``sigma_max`` when capped).
    capped : bool
        Whether the loss stayed below the bound up to ``sigma_max``.
    n_evaluations : int
        Sigmas tried.
    """
    _check_positive("bound", bound)
    _check_positive("sigma_max", sigma_max)
    draws = _gaussian_draws(theta0, scale, n_samples, seed)
    base = _as_float64(losses_at(theta0[None]))[0]

    def excess(sigma):
        return float(_as_float64(losses_at(theta0 + sigma * draws)).mean() - base)

    return _largest_below(excess, bound, sigma_max, rtol)


def worst_case_radius(
    loss_and_grad,
    theta0,
    scale,
    *,
    bound=0.1,
    n_steps=20,
    n_restarts=1,
    radius_max=10.0,
    rtol=1e-3,
    seed=0,
):
    """Largest ball the minimum tolerates: the worst-case flatness radius.

    The largest ``radius`` with ``max_{||u|| <= radius} L(theta0 + scale *
    u) - L(theta0) <= bound``, the maximum found by
    :func:`worst_case_sharpness` from the same seeded starts at every
    radius, and the radius by a bracketing root search on its logarithm. The
    scale of the worst-case sharpness is then set per model by a stated loss
    increase instead of by hand; Jiang et al. (2020) rank networks by ``1 /
    radius**2`` ("sharpness.flatness", with ``scale='adaptive'``
    "sharpness.mag.flatness") with a bound of 0.1 on the training error;
    here the bound is on the mean cross-entropy. On a quadratic, ``radius =
    sqrt(2 bound / lambda_max(S H S))``. The ascent finds a lower bound of
    each maximum, so the radius found is an upper bound of the exact one
    (equal on a quadratic).

    Parameters
    ----------
    loss_and_grad : callable
        ``theta -> (loss, gradient)``.
    theta0 : torch.Tensor of shape (n_params,)
        The minimum.
    scale : torch.Tensor of shape (n_params,)
        Per-entry scale (see :func:`perturbation_scale`).
    bound : float, default=0.1
        Largest tolerated loss increase.
    n_steps : int, default=20
        Ascent steps per start and radius.
    n_restarts : int, default=1
        Random starts per radius.
    radius_max : float, default=10.0
        Upper end of the search; returned (flagged) when even its ball
        stays below the bound.
    rtol : float, default=1e-3
        Relative precision of the radius.
    seed : int, default=0
        Seed of the starts (the same at every radius).

    Returns
    -------
    radius : float
        The largest tolerated radius (``radius_max`` when capped).
    capped : bool
        Whether the loss stayed below the bound up to ``radius_max``.
    n_evaluations : int
        Radii tried (each ``n_restarts * (n_steps + 1)`` gradients).
    """
    _check_positive("bound", bound)
    _check_positive("radius_max", radius_max)

    def excess(radius):
        found, _ = worst_case_sharpness(
            loss_and_grad,
            theta0,
            scale,
            radius,
            n_steps=n_steps,
            n_restarts=n_restarts,
            seed=seed,
        )
        return found

    return _largest_below(excess, bound, radius_max, rtol)


def _largest_below(excess, bound, upper, rtol):
    """Largest ``x <= upper`` with ``excess(x) <= bound``, on a log scale.

    Walks down from ``upper`` by decades to bracket the crossing, then
    narrows the bracket on ``log x`` by Chandrupatla's method
    (:func:`scipy.optimize.elementwise.find_root`: inverse quadratic
    interpolation where it is safe, bisection elsewhere) until its ends are
    within a factor ``1 + rtol``. What it interpolates is ``log(excess /
    bound)``, linear in ``log x`` where the excess grows as a power of ``x``
    (as ``x**2`` near a minimum): a smooth crossing then takes 3 or 4
    evaluations where bisection of a decade takes ``log2(ln 10 / rtol)``
    (12 at ``rtol = 1e-3``); a jump takes about as many as bisection.

    Returns ``(x, capped, n_evaluations)``: ``x`` is the end of the final
    bracket within the bound (``excess(x) <= bound``, an excess beyond it
    at most a factor ``1 + rtol`` higher); ``capped`` when ``excess(upper)``
    is within the bound; ``x = 0`` when no decade down to 1e-12 is.
    """

    def signed(value):
        # A finite stand-in with the sign of excess - bound: an excess at or
        # below zero, infinite or NaN would stop the interpolation; clipped,
        # the method bisects there instead.
        if math.isnan(value) or value > bound * math.exp(_CLIP):
            return _CLIP
        ratio = math.log(max(value, bound * math.exp(-_CLIP)) / bound)
        # The sign is the comparison's: exactly at the bound is within (a
        # zero would end the search before the bracket is narrow).
        return min(ratio, -1e-300) if value <= bound else max(ratio, 1e-300)

    top = float(excess(upper))
    if top <= bound:  # NaN (an overflowing loss) is beyond it
        return float(upper), True, 1
    # Points tried, by log x: (x, signed excess).
    tried = {math.log(upper): (float(upper), signed(top))}
    low = upper
    while True:
        high, low = low, low / 10.0
        tried[math.log(low)] = (low, signed(float(excess(low))))
        if tried[math.log(low)][1] <= 0:
            break
        if low < 1e-12:
            return 0.0, False, len(tried)

    def at(log_x):
        log_x = float(log_x)
        if log_x not in tried:
            x = math.exp(log_x)
            tried[log_x] = (x, signed(float(excess(x))))
        return tried[log_x][1]

    def at_each(log_xs):  # the method passes arrays
        return np.reshape([at(t) for t in np.ravel(log_xs)], np.shape(log_xs))

    found = scipy.optimize.elementwise.find_root(
        at_each,
        (math.log(low), math.log(high)),
        tolerances={
            # Bracket ends within a factor 1 + rtol; never stopped by |f|.
            "xatol": 0.999 * math.log1p(rtol),
            "xrtol": 0.0,
            "fatol": 0.0,
            "frtol": 0.0,
        },
    )
    for end in found.bracket:
        x, value = tried[float(end)]
        if value <= 0:
            return float(x), False, len(tried)
    raise AssertionError("The search lost its bracket's end within the bound.")


# Largest |log(excess / bound)| passed to Chandrupatla's method.
_CLIP = 30.0
