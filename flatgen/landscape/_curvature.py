"""Curvature of the training loss from Hessian-vector products."""

import copy
import math
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal
from sklearn.exceptions import ConvergenceWarning

from ._criterion import sample_loss
from ._data import DataBatches, is_batches
from ._parameters import ParameterLayout, flatten_parameters
from ._sequential_hessian import SequentialHessian, analytic_layers

__all__ = [
    "LossHessian",
    "hessian_trace",
    "top_hessian_eigenpairs",
    "top_hessian_eigenvalue",
]


class LossHessian:
    """Hessian of the mean training cross-entropy, as a matrix-vector product.

    Products are computed on private copies (of the weights for a plain
    sequential network, of the whole module, in eval mode, otherwise); the
    caller's module is never touched. A plain ``nn.Sequential`` of
    ``nn.Linear`` and ``nn.Conv2d`` layers, elementwise activations (ReLU,
    LeakyReLU, Tanh, Sigmoid, exact GELU), max and average pooling and
    ``nn.Flatten`` (as :class:`~flatgen.networks.MLP` and
    :class:`~flatgen.networks.SmallCNN`) gets the exact R-operator written
    out layer by layer (Pearlmutter's method: one directional forward pass
    and its backward pass; a convolution is a matrix product on its
    unfolded patches; no autograd graph, many vectors per pass); any other
    module gets double backpropagation (``torch.autograd.grad`` with
    ``create_graph=True``, the vector passed as ``grad_outputs``). Both give
    the same products to rounding.

    With ``filter_normalized=True`` the operator is ``H_fn = D H D``, the
    Hessian in filter-normalized coordinates: ``D`` is diagonal, equal to
    ``||W_f||`` on the entries of filter ``f`` (a dense unit's
    incoming-weight row, a convolution's output channel) and, on each bias
    or normalization vector ``b``, to ``||b||`` if ``include_bias`` else 0.
    A filter-normalized direction is ``d = D u`` with ``u`` of unit norm on
    each filter, so ``d^T H d = u^T H_fn u``: the curvature along such
    directions is the one of ``H_fn``, whatever the scale of each layer.

    The training data may also come as batches (a ``DataLoader`` or a list
    of ``(X, y)`` pairs, with ``y=None``): every product then passes over the
    batches, accumulating each batch's share of the mean loss by double
    backpropagation, so memory is bounded by one batch and the operator is
    the full-data Hessian, not one batch's estimate.

    Parameters
    ----------
    module : torch.nn.Module
        Network mapping ``X`` to logits.
    X : array-like, torch.Tensor, DataLoader or iterable of (X, y) pairs
        Inputs shaped for the network, or batches of inputs and labels.
    y : array-like of int of shape (n_samples,) or None
        Encoded labels in ``[0, n_classes)``; None when ``X`` holds batches.
    filter_normalized : bool, default=False
        Whether to return products with ``D H D`` instead of ``H``.
    include_bias : bool, default=False
        With ``filter_normalized``, whether biases keep their own scale
        (``||b||``) or are left out (scale 0).
    sample_block : int, default=None
        If given, the loss is accumulated over blocks of this many samples,
        recomputing each block's graph at every product (bounded memory).
        By default the gradient graph of the whole set is built once and
        reused by every product (faster, memory grows with ``n_samples``).
    engine : {'auto', 'autograd'}, default='auto'
        ``'auto'`` uses the analytic R-operator for the sequential
        networks it covers and double backpropagation otherwise;
        ``'autograd'`` always uses double backpropagation (for comparisons).
    criterion : torch.nn.Module, default=None
        Loss with ``reduction='mean'`` (e.g. ``nn.MSELoss()``, with float
        targets ``y``) in place of the cross-entropy of logits; always by
        double backpropagation.

    Attributes
    ----------
    layout : ParameterLayout
        Layout of the parameters (the order of the vectors).
    n_params : int
        Dimension of the operator.
    scale : torch.Tensor of shape (n_params,) or None
        Diagonal of ``D`` when ``filter_normalized``, else None.
    """

    def __init__(
        self,
        module,
        X,
        y,
        *,
        filter_normalized=False,
        include_bias=False,
        sample_block=None,
        engine="auto",
        criterion=None,
    ):
        if engine not in ("auto", "autograd"):
            raise ValueError(f"engine must be 'auto' or 'autograd'; got {engine!r}.")
        if sample_block is not None and (
            not isinstance(sample_block, Integral) or sample_block < 1
        ):
            raise ValueError(
                "sample_block must be a positive integer or None; got "
                f"{sample_block!r}."
            )
        if not any(True for _ in module.parameters()):
            raise ValueError("The module has no parameters.")
        self._loss = sample_loss(criterion)
        self._batches = None
        if is_batches(X):
            if y is not None:
                raise ValueError(
                    "y must be None when X holds (X, y) batches; got y of type "
                    f"{type(y).__name__}."
                )
            self._batches = DataBatches(X, classification=self._loss.classification)
            ops = None  # graphs per batch by double backpropagation
        else:
            X = torch.as_tensor(X)
            analytic = engine == "auto" and self._loss.classification
            ops = analytic_layers(module, X.ndim) if analytic else None
        if ops is None:
            self._module = copy.deepcopy(module).eval()
            self._params = list(self._module.parameters())
            for param in self._params:
                param.requires_grad_(True)
        else:
            # The analytic layers hold copies of the weights: no module
            # copy, whose Python-level deepcopy cost more than all the
            # products of a small network's eigenvalue.
            self._module = None
            self._params = [p.detach() for p in module.parameters()]
        device, dtype = self._params[0].device, self._params[0].dtype
        self.layout = ParameterLayout.from_module(module)
        self.n_params = self.layout.n_params
        self._piece_sizes = [spec.numel for spec in self.layout.specs]
        if self._batches is not None:
            self._X = self._y = None
            self.n_samples = self._batches.n_samples
        else:
            self._X = torch.as_tensor(X).to(device, dtype)
            self._y = self._loss.targets(y, device, dtype)
            if (
                (self._y.ndim != 1 and self._loss.classification)
                or len(self._y) != len(self._X)
                or len(self._y) == 0
            ):
                raise ValueError(
                    f"y must be 1-D with one label per sample; got shape "
                    f"{tuple(self._y.shape)} for {len(self._X)} samples."
                )
            self.n_samples = len(self._y)
        self._sample_block = sample_block
        self._grads = None
        self._analytic = None
        if ops is not None:
            with torch.no_grad():
                self._analytic = SequentialHessian(
                    ops, self._X, self._y, sample_block=sample_block
                )
        self.scale = None
        if filter_normalized:
            theta = flatten_parameters(module).to(device, dtype)
            self.scale = self.layout.group_norms(theta, include_bias)

    @property
    def device(self):
        """Device of the operator's weights, where vectors must live."""
        return self._params[0].device

    @property
    def dtype(self):
        """Dtype of the operator's weights."""
        return self._params[0].dtype

    def _gradients(self, block):
        """Gradient of the block's share of the mean loss, with its graph.

        ``block`` is a slice of the samples held, or an ``(X, y)`` batch.
        """
        if isinstance(block, slice):
            X, y = self._X[block], self._y[block]
        else:
            X, y = (t.to(self.device) for t in block)
            X = X.to(self.dtype) if X.is_floating_point() else X
        if not self._loss.classification:
            y = y.to(self.dtype)
        loss = self._loss.total(self._module(X), y) / self.n_samples
        return torch.autograd.grad(
            loss,
            self._params,
            create_graph=True,
            allow_unused=True,
            materialize_grads=True,
        )

    def _autograd_products(self, pieces, lead):
        """Double-backprop products of vectors given per parameter."""
        streamed = self._batches is not None or self._sample_block is not None
        if self._batches is not None:
            blocks = (self._gradients(batch) for batch in self._batches)
        elif self._sample_block is None:
            if self._grads is None:
                self._grads = self._gradients(slice(None))
            blocks = [self._grads]
        else:
            step = self._sample_block
            blocks = (
                self._gradients(slice(start, start + step))
                for start in range(0, self.n_samples, step)
            )
        total = None
        for grads in blocks:
            # The vector enters as grad_outputs of the gradient: one backward
            # pass with no dot-product graph, 1.27x faster than
            # differentiating <grad, v> on the swiss-roll MLP, same values.
            pairs = [(g, p) for g, p in zip(grads, pieces) if g.requires_grad]
            if not pairs:
                continue  # the loss is linear in every parameter here
            hv = torch.autograd.grad(
                [g for g, _ in pairs],
                self._params,
                grad_outputs=[p for _, p in pairs],
                retain_graph=not streamed,
                allow_unused=True,
                materialize_grads=True,
                is_grads_batched=bool(lead),
            )
            total = hv if total is None else [t + h for t, h in zip(total, hv)]
        if total is None:
            return [torch.zeros_like(p) for p in pieces]
        return total

    def _products(self, vectors):
        """Products of one (n_params,) vector or a (b, n_params) batch.

        A single vector goes through plain (unbatched) matmuls: less
        overhead per product than a batch of one.
        """
        lead = tuple(vectors.shape[:-1])
        # One split into views: cheaper per product than unflatten's dict.
        pieces = [
            piece.view(*lead, *spec.shape)
            for piece, spec in zip(
                vectors.split(self._piece_sizes, dim=-1), self.layout.specs
            )
        ]
        if self._analytic is not None:
            with torch.no_grad():
                parts = self._analytic.products(pieces, lead)
        else:
            parts = self._autograd_products(pieces, lead)
        return torch.cat([t.detach().reshape(*lead, -1) for t in parts], dim=-1)

    @property
    def batch_size(self):
        """Vectors per pass in :meth:`matmat` (a measured rule, see below).

        Where a product is cheap (small layers, few samples) the per-pass
        overhead dominates and vectors go together (as broadcast matmuls in
        the analytic R-operator, as ``is_grads_batched`` in double
        backpropagation); where it is large the work is compute-bound and
        one vector per pass is as fast or faster. The size proxy is the
        forward pass's multiply-adds over all samples (samples x parameters
        for a dense network). Measured on one thread: the swiss-roll MLP
        (200 samples, 3,370 parameters: 6.7e5) 0.55 ms per vector in
        analytic passes of 4-16 vs 0.77 ms one by one, and 0.83 vs 1.45 ms
        by double backpropagation in passes of 16; the digits CNN (400
        images, 3,658 parameters, 1.0e7 multiply-adds) 9.1 ms one by one vs
        10.0 ms in passes of 4 by double backpropagation, and analytic
        passes of 16 were slower than one by one (their directional state,
        6 MB per vector, leaves the caches: hence the memory cap); the
        6x256 MLP (500 samples, 330,242 parameters: 1.7e8) 45 ms one by one
        vs 49-51 ms in analytic passes of 4-16. On other devices than the
        CPU vectors always go 16 at a time.
        """
        if self._sample_block is not None or self._batches is not None:
            return 1
        if self._analytic is not None:
            if self._analytic.sample_block is not None:
                return 1
            work = self.n_samples * self._analytic.flops_per_sample
            per_vector = self.n_samples * self._analytic.state_bytes_per_sample
            if per_vector * 16 > _BATCHED_BYTES:
                return 1
        else:
            work = self.n_samples * self.n_params
        if self.device.type != "cpu":
            return 16  # on accelerators kernel launches dominate: batch
        limit = _ANALYTIC_BATCHED_WORK if self._analytic is not None else _BATCHED_WORK
        return 16 if work <= limit else 1

    def _prepare(self, vectors, shape_text, ndim):
        vectors = torch.as_tensor(vectors).to(self.device, self.dtype)
        if vectors.ndim != ndim or vectors.shape[-1] != self.n_params:
            raise ValueError(
                f"Expected {shape_text}; got shape {tuple(vectors.shape)}."
            )
        return vectors if self.scale is None else vectors * self.scale

    def _finish(self, products):
        return products if self.scale is None else products * self.scale

    def matmat(self, vectors):
        """Products of the (filter-normalized) Hessian with several vectors.

        Parameters
        ----------
        vectors : torch.Tensor of shape (n_vectors, n_params)
            One vector per row, ordered as the parameters in ``layout``.

        Returns
        -------
        products : torch.Tensor of shape (n_vectors, n_params)
            ``H v`` (or ``D H D v``) for each row, detached.
        """
        vectors = self._prepare(
            vectors, f"vectors of shape (n_vectors, {self.n_params})", 2
        ).contiguous()
        size = self.batch_size
        parts = []
        for start in range(0, len(vectors), size):
            chunk = vectors[start : start + size]
            parts.append(self._products(chunk if size > 1 else chunk[0]))
        return self._finish(torch.cat([p.reshape(-1, self.n_params) for p in parts]))

    def as_linear_operator(self):
        """Return the operator as a ``scipy.sparse.linalg.LinearOperator``.

        Its ``matvec`` and ``matmat`` take and return float64 NumPy arrays
        (computed in the module's dtype and device), so scipy's solvers
        compose with it, e.g. ``scipy.sparse.linalg.eigsh(op, k=5)`` for the
        top eigenpairs of the full-data Hessian. The operator is symmetric
        (``rmatvec`` is ``matvec``).

        Returns
        -------
        operator : scipy.sparse.linalg.LinearOperator
            Of shape ``(n_params, n_params)`` and dtype float64.
        """
        from scipy.sparse.linalg import LinearOperator

        def matvec(vector):
            vector = torch.as_tensor(np.asarray(vector, dtype=np.float64).ravel())
            return self.matvec(vector).to("cpu", torch.float64).numpy()

        def matmat(matrix):
            matrix = torch.as_tensor(np.asarray(matrix, dtype=np.float64))
            products = self.matmat(matrix.T.contiguous())
            return products.to("cpu", torch.float64).numpy().T

        n = self.n_params
        return LinearOperator(
            (n, n), matvec=matvec, rmatvec=matvec, matmat=matmat, dtype=np.float64
        )

    def matvec(self, vector):
        """Product of the (filter-normalized) Hessian with ``vector``.

        Parameters
        ----------
        vector : torch.Tensor of shape (n_params,)
            Vector ordered as the parameters in ``layout``.

        Returns
        -------
        product : torch.Tensor of shape (n_params,)
            ``H v`` or ``D H D v``, detached, on the module's device.
        """
        vector = self._prepare(vector, f"a vector of length {self.n_params}", 1)
        return self._finish(self._products(vector.contiguous()))


# Samples x parameters up to which Hessian products go several vectors per
# pass (see LossHessian.batch_size).
_ANALYTIC_BATCHED_WORK = 2**24
_BATCHED_WORK = 2**20
# ... as long as the passes of 16 vectors keep their directional state
# within about the caches (digits CNN, 6 MB per vector: 11.6 ms per vector
# one by one, 11.9 ms in passes of 4, 15.8 ms in passes of 16).
_BATCHED_BYTES = 32 * 1024**2


def _check_common(name, value, low):
    if not isinstance(value, Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")


# Lanczos vectors kept for full re-orthogonalization, at most this many
# floats (256 MB in float64); beyond it the iteration restarts from its best
# Ritz vector, so memory stays bounded whatever n_iter and the model size.
_MAX_BASIS_FLOATS = 32 * 1024**2
# Products before a Ritz pair may be accepted: the Krylov space must be rich
# enough that the top Ritz value stands for the top of the spectrum. A loose
# tolerance is met earlier, so it needs more: against the exact spectrum of
# the swiss-roll net (benchmarks/eigen_exact.py, 200 seeds, raw and
# filter-normalized, float32 and float64), 3 products never returned a
# non-dominant eigenvalue at tol <= 1e-3, while at tol=1e-2 one start of 200
# stopped at the second eigenvalue after 3 or 4 products and none after 5.
_MIN_LANCZOS_STEPS = 3
_MIN_LANCZOS_STEPS_LOOSE = 5
_LOOSE_TOL = 1e-3


def _min_lanczos_steps(tol):
    return _MIN_LANCZOS_STEPS if tol <= _LOOSE_TOL else _MIN_LANCZOS_STEPS_LOOSE


def _top_eigenpair(matvec, start, n_iter, tol):
    """Largest algebraic eigenpair of a symmetric operator by Lanczos.

    Lanczos with full re-orthogonalization, from a random start (``start()``
    gives it). After each product the largest Ritz value ``theta`` of the
    tridiagonal matrix and its residual ``||H u - theta u||`` (free from the
    recurrence) are computed; the pair is accepted only when the residual is
    at most ``tol * |theta|``, which bounds ``|theta - lambda| <= tol *
    |theta|`` for an eigenvalue ``lambda`` of ``H``. Unlike a test on the
    change between iterations, a slowly converging or stalled estimate
    never passes. Ritz values approach the spectrum's ends from inside, the
    largest first, so the accepted value is the top eigenvalue, not an
    interior one, once the Krylov space holds any part of the top
    eigenvector (a random start does, almost surely).

    Returns
    -------
    eigenvalue : float
    vector : torch.Tensor
        Unit Ritz vector, in the dtype of ``start()``.
    converged : bool
    residual : float
        Relative residual ``||H u - theta u|| / |theta|`` of the returned pair.
    """
    values, vectors, converged, relative = _top_eigenpairs(
        matvec, start, n_iter, tol, 1
    )
    return float(values[0]), vectors[:, 0], converged, float(relative[0])


def _top_eigenpairs(matvec, start, n_iter, tol, k):
    """Find the ``k`` largest eigenpairs by Lanczos, each checked on its residual.

    As :func:`_top_eigenpair`, but the iteration stops only when each of the
    ``k`` largest Ritz pairs has a residual of at most ``tol`` times its
    value. A restart (memory bound) starts from the sum of those Ritz
    vectors, which keeps every one of them in the new Krylov space.

    Returns
    -------
    values : ndarray of shape (k,)
        Descending.
    vectors : torch.Tensor of shape (n, k)
        Orthonormal Ritz vectors, in the dtype of ``start()``.
    converged : bool
    relative : ndarray of shape (k,)
        Relative residual of each pair.
    """
    q = start()
    out_dtype = q.dtype
    n = q.numel()
    k = int(min(k, n))
    # The basis is kept in the operator's precision (float32 products carry
    # no more digits than a float32 basis holds, and its re-orthogonalization
    # is memory-bound: half the traffic); the tridiagonal is float64.
    work = torch.float64 if out_dtype == torch.float64 else torch.float32
    breakdown = max(1e-12, 100 * torch.finfo(work).eps)
    q = q.to(work)
    q = q / torch.linalg.vector_norm(q)
    cycle_length = max(2 * k, 2, min(n, _MAX_BASIS_FLOATS // max(n, 1)))
    min_products = min(_min_lanczos_steps(tol), n)
    products = 0
    values = np.full(k, np.nan)
    relative = np.full(k, np.inf)
    vectors = None
    while products < n_iter:
        steps = min(cycle_length, n_iter - products)
        # The basis grows by doubling: most runs stop after a few products,
        # and zeroing a cycle's full (steps, n) block up front cost more than
        # those products on small and wide models alike.
        basis = torch.empty((min(steps, 16), n), dtype=work, device=q.device)
        alphas, betas = [], []
        largest_alpha = 1e-300
        for j in range(steps):
            if j == len(basis):
                grown = torch.empty((min(steps, 2 * j), n), dtype=work, device=q.device)
                grown[:j] = basis
                basis = grown
            basis[j] = q
            w = matvec(q.to(out_dtype)).to(work, copy=True)
            products += 1
            alpha = float(torch.dot(q, w))
            w.sub_(q, alpha=alpha)
            active = basis[: j + 1]
            for _ in range(2):  # full re-orthogonalization, twice is enough
                w.addmv_(active.T, active @ w, alpha=-1)
            alphas.append(alpha)
            largest_alpha = max(largest_alpha, abs(alpha))
            beta = math.sqrt(float(torch.dot(w, w)))
            # This cycle's Krylov space is invariant (or spans everything):
            # its Ritz pairs are exact.
            exhausted = j + 1 >= n or beta <= breakdown * largest_alpha
            last = j == steps - 1
            # Ritz pairs are needed only where the iteration may stop (the
            # small eigenproblem is most of a tiny model's bookkeeping).
            if j + 1 >= k and (products >= min_products or exhausted or last):
                values, small = _top_ritz_pairs(alphas, betas, k)
                relative = _relative_residuals(beta * small[-1], values)
                converged = products >= min_products and max(relative) <= tol
                done = converged or exhausted
                if done or last:
                    coefficients = torch.as_tensor(
                        small.copy(), dtype=work, device=basis.device
                    )
                    vectors = active.T @ coefficients
                    vectors = vectors / torch.linalg.vector_norm(
                        vectors, dim=0, keepdim=True
                    )
                    if done:
                        return values, vectors.to(out_dtype), True, relative
                    break
            elif exhausted:
                break
            betas.append(beta)
            q = w.div_(beta)  # already orthogonal to the basis (two passes above)
        if vectors is None:  # the space broke down before k Ritz pairs
            vectors = q[:, None].repeat(1, k)
        # Restart from the best Ritz vectors: memory stays bounded.
        q = vectors.sum(dim=1)
        q = q / torch.linalg.vector_norm(q)
    return values, vectors.to(out_dtype), False, relative


# Up to this size the tridiagonal's eigenproblem is solved as a dense
# symmetric one: for the few steps most runs take, LAPACK's dense solver
# through numpy costs a third of scipy's validated tridiagonal routine.
_DENSE_RITZ_SIZE = 64


def _top_ritz_pairs(alphas, betas, k):
    """Largest ``k`` eigenpairs of the Lanczos tridiagonal, descending."""
    m = len(alphas)
    if m <= _DENSE_RITZ_SIZE:
        tridiagonal = np.zeros((m, m))
        tridiagonal.flat[:: m + 1] = alphas
        tridiagonal.flat[m :: m + 1] = betas  # eigh reads the lower triangle
        ritz, small = np.linalg.eigh(tridiagonal)
        ritz, small = ritz[m - k :], small[:, m - k :]
    else:
        ritz, small = eigh_tridiagonal(
            np.array(alphas), np.array(betas), select="i", select_range=(m - k, m - 1)
        )
    return ritz[::-1], small[:, ::-1]


def _relative_residuals(residuals, values):
    """``|residual| / |value|``; 0 for an exact zero pair, inf for 0 with a residual.

    On Python floats: for the few pairs sought, numpy's per-call overhead
    was most of this step's cost.
    """
    relative = [
        abs(r) / abs(v) if v != 0 else (0.0 if r == 0 else math.inf)
        for r, v in zip(residuals.tolist(), values.tolist())
    ]
    return np.array(relative)


def _lanczos_problem(module, X, y, *, n_iter, tol, seed, **hessian_options):
    """Validate the solver settings; return the Hessian operator and its start."""
    _check_common("n_iter", n_iter, 1)
    _check_common("seed", seed, 0)
    if not isinstance(tol, Real) or not tol > 0:
        raise ValueError(f"tol must be positive; got {tol!r}.")
    hessian = LossHessian(module, X, y, **hessian_options)
    generator = torch.Generator(device="cpu").manual_seed(seed)

    def start():
        vector = torch.randn(hessian.n_params, generator=generator, dtype=torch.float64)
        if hessian.scale is not None:
            # Coordinates scaled to zero carry no curvature: start without them.
            vector = vector * (hessian.scale.cpu() != 0)
        return vector.to(hessian.device, hessian.dtype)

    return hessian, start


def top_hessian_eigenvalue(
    module,
    X,
    y,
    *,
    n_iter=200,
    tol=1e-4,
    seed=0,
    filter_normalized=False,
    include_bias=False,
    sample_block=None,
    criterion=None,
    return_vector=False,
):
    """Largest eigenvalue of the training-loss Hessian, by Lanczos iteration.

    The largest *algebraic* eigenvalue (negative ones, possible away from a
    minimum, are never mistaken for it). Lanczos with full
    re-orthogonalization from a seeded random start; after every
    Hessian-vector product the top Ritz pair's residual
    ``||H u - theta u||`` is checked, and the value is returned once it is
    at most ``tol * |theta|``, so ``theta`` is then within ``tol * |theta|``
    of an eigenvalue of ``H``. A stalled or slowly converging estimate never
    passes this test (a test on the change between iterations could accept
    the second eigenvalue when the top two are close).

    With ``filter_normalized=True`` this is the largest eigenvalue of
    ``D H D`` (see :class:`LossHessian`) restricted to the coordinates with
    a nonzero scale: the start vector is zero on the others (biases when
    ``include_bias`` is False), so the trivial zero eigenvalues of those
    coordinates are never returned, even when every other one is negative.

    Parameters
    ----------
    module : torch.nn.Module
        Network mapping ``X`` to logits; not modified.
    X : array-like or torch.Tensor
        Training inputs shaped for the network.
    y : array-like of int of shape (n_samples,)
        Encoded labels.
    n_iter : int, default=200
        Maximum Hessian-vector products.
    tol : float, default=1e-4
        Stop when the residual of the top Ritz pair is at most ``tol`` times
        the Ritz value (then the value is within that relative distance of
        an eigenvalue; the eigenvalue error is usually far smaller).
    seed : int, default=0
        Seed of the CPU generator that draws the start vector.
    filter_normalized : bool, default=False
        Use the filter-normalized Hessian ``D H D`` (the paper's "curv");
        see :class:`LossHessian`.
    include_bias : bool, default=False
        See :class:`LossHessian`.
    sample_block : int, default=None
        See :class:`LossHessian`.
    criterion : torch.nn.Module, default=None
        See :class:`LossHessian`.
    return_vector : bool, default=False
        Also return the unit eigenvector.

    Returns
    -------
    eigenvalue : float
        Largest eigenvalue.
    eigenvector : torch.Tensor of shape (n_params,)
        Returned only if ``return_vector``.

    Warns
    -----
    ConvergenceWarning
        If the residual did not reach the tolerance in ``n_iter`` products;
        the message gives the residual reached.
    """
    hessian, start = _lanczos_problem(
        module,
        X,
        y,
        n_iter=n_iter,
        tol=tol,
        seed=seed,
        filter_normalized=filter_normalized,
        include_bias=include_bias,
        sample_block=sample_block,
        criterion=criterion,
    )
    eigenvalue, vector, converged, residual = _top_eigenpair(
        hessian.matvec, start, n_iter, tol
    )
    if not converged:
        warnings.warn(
            f"The top Hessian eigenvalue did not converge: after n_iter={n_iter} "
            f"Hessian-vector products its residual is {residual:.2g} of the "
            f"value (tol={tol:g}), so {eigenvalue:.6g} may be off by that much "
            "or more (too small). Raise n_iter.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return (eigenvalue, vector) if return_vector else eigenvalue


def top_hessian_eigenpairs(
    module,
    X,
    y,
    n_eigenpairs=5,
    *,
    n_iter=300,
    tol=1e-4,
    seed=0,
    filter_normalized=False,
    include_bias=False,
    sample_block=None,
    criterion=None,
    return_residuals=False,
):
    """Return the largest eigenvalues of the training-loss Hessian and their vectors.

    Lanczos as in :func:`top_hessian_eigenvalue`, stopped only when every one
    of the ``n_eigenpairs`` largest Ritz pairs has a residual of at most
    ``tol`` times its value. The eigenvectors serve as directions for loss
    slices and perturbation paths (the sharpest directions of the minimum).

    Parameters
    ----------
    module : torch.nn.Module
        Network mapping ``X`` to logits; not modified.
    X : array-like or torch.Tensor
        Training inputs shaped for the network.
    y : array-like of int of shape (n_samples,)
        Encoded labels.
    n_eigenpairs : int, default=5
        How many of the largest eigenpairs.
    n_iter : int, default=300
        Maximum Hessian-vector products.
    tol : float, default=1e-4
        Relative residual at which each pair is accepted.
    seed : int, default=0
        Seed of the start vector.
    filter_normalized : bool, default=False
        Use ``D H D`` (see :class:`LossHessian`).
    include_bias : bool, default=False
        See :class:`LossHessian`.
    sample_block : int, default=None
        See :class:`LossHessian`.
    criterion : torch.nn.Module, default=None
        See :class:`LossHessian`.
    return_residuals : bool, default=False
        Also return each pair's relative residual.

    Returns
    -------
    eigenvalues : ndarray of shape (n_eigenpairs,)
        Descending.
    eigenvectors : torch.Tensor of shape (n_params, n_eigenpairs)
        Orthonormal, column ``i`` for ``eigenvalues[i]``, ordered as the
        module's parameters.
    residuals : ndarray of shape (n_eigenpairs,)
        ``||H v - lambda v|| / |lambda|`` of each pair (each at most ``tol``
        when converged); only if ``return_residuals``.

    Warns
    -----
    ConvergenceWarning
        If some pair's residual did not reach ``tol`` in ``n_iter`` products.
    """
    _check_common("n_eigenpairs", n_eigenpairs, 1)
    hessian, start = _lanczos_problem(
        module,
        X,
        y,
        n_iter=n_iter,
        tol=tol,
        seed=seed,
        filter_normalized=filter_normalized,
        include_bias=include_bias,
        sample_block=sample_block,
        criterion=criterion,
    )
    if n_eigenpairs > hessian.n_params:
        raise ValueError(
            f"n_eigenpairs must be at most the {hessian.n_params} parameters; got "
            f"{n_eigenpairs}."
        )
    values, vectors, converged, relative = _top_eigenpairs(
        hessian.matvec, start, n_iter, tol, n_eigenpairs
    )
    if not converged:
        warnings.warn(
            f"The top {n_eigenpairs} Hessian eigenpairs did not converge: after "
            f"n_iter={n_iter} Hessian-vector products the largest relative "
            f"residual is {float(np.max(relative)):.2g} (tol={tol:g}). Raise "
            "n_iter.",
            ConvergenceWarning,
            stacklevel=2,
        )
    values = np.asarray(values, dtype=float).copy()
    if return_residuals:
        return values, vectors, np.asarray(relative, dtype=float).copy()
    return values, vectors


def _rademacher(generator, n_vectors, n_params, hessian):
    """Rademacher vectors drawn one by one (the same whatever the batching)."""
    return torch.stack(
        [
            2 * torch.randint(0, 2, (n_params,), generator=generator) - 1
            for _ in range(n_vectors)
        ]
    ).to(hessian.device, torch.float64)


def _quadratic_forms(hessian, probes):
    """``v^T H v`` for each row of the float64 ``probes``."""
    products = hessian.matmat(probes.to(hessian.dtype)).double()
    return (probes * products).sum(dim=1)


# Memory for Hutch++'s sketch basis (float64, n_params per vector); a larger
# sketch leaves the rest of the products to plain probes.
_SKETCH_BYTES = 256 * 1024**2


def hessian_trace(
    module,
    X,
    y,
    *,
    n_samples=100,
    seed=0,
    method="hutch++",
    filter_normalized=False,
    include_bias=False,
    sample_block=None,
    criterion=None,
    return_std=False,
):
    """Trace of the training-loss Hessian from ``n_samples`` products.

    ``method='hutchinson'`` averages ``z^T H z`` over ``n_samples``
    Rademacher vectors ``z`` (entries +-1 with equal probability), whose
    mean is ``trace(H)``. ``method='hutch++'`` (Meyer, Musco, Musco and
    Woodruff, 2021) spends a third of the products on a sketch ``H S`` of
    Rademacher vectors, takes its orthonormal basis ``Q``, computes
    ``trace(Q^T H Q)`` exactly with another third, and estimates the rest,
    ``trace((I - Q Q^T) H (I - Q Q^T))``, by Hutchinson's estimator on the
    last third: unbiased as well, and far more accurate when a few
    eigenvalues carry much of the Hessian's Frobenius norm, as at the
    minima of trained networks (its error falls like ``1/n_samples``
    instead of ``1/sqrt(n_samples)`` there).

    Parameters
    ----------
    module : torch.nn.Module
        Network mapping ``X`` to logits; not modified.
    X : array-like or torch.Tensor
        Training inputs shaped for the network.
    y : array-like of int of shape (n_samples,)
        Encoded labels.
    n_samples : int, default=100
        Number of Hessian-vector products.
    seed : int, default=0
        Seed of the CPU generator that draws the random vectors.
    method : {'hutch++', 'hutchinson'}, default='hutch++'
        Estimator. Hutch++'s sketch is capped at 256 MiB of float64 vectors
        (the remaining products go to its plain probes).
    filter_normalized : bool, default=False
        Trace of ``D H D`` instead of ``H``; see :class:`LossHessian`.
    include_bias : bool, default=False
        See :class:`LossHessian`.
    sample_block : int, default=None
        See :class:`LossHessian`.
    criterion : torch.nn.Module, default=None
        See :class:`LossHessian`.
    return_std : bool, default=False
        Also return the standard error of the estimate.

    Returns
    -------
    trace : float
        Estimated trace.
    std_error : float
        Standard deviation of the random quadratic forms divided by the
        square root of their number (Hutch++: of its last third's, given the
        sketch, the only random part of its estimate); nan with fewer than
        two of them. Only if ``return_std``.
    """
    _check_common("n_samples", n_samples, 1)
    _check_common("seed", seed, 0)
    if method not in ("hutch++", "hutchinson"):
        raise ValueError(f"method must be 'hutch++' or 'hutchinson'; got {method!r}.")
    hessian = LossHessian(
        module,
        X,
        y,
        filter_normalized=filter_normalized,
        include_bias=include_bias,
        sample_block=sample_block,
        criterion=criterion,
    )
    n_params = hessian.n_params
    generator = torch.Generator(device="cpu").manual_seed(seed)
    n_sketch = 0
    if method == "hutch++":
        n_sketch = min(n_samples // 3, n_params, _SKETCH_BYTES // (8 * n_params))
    exact_part = 0.0
    basis = None
    if n_sketch:
        probes = _rademacher(generator, n_sketch, n_params, hessian)
        sketch = hessian.matmat(probes.to(hessian.dtype)).double()
        basis = torch.linalg.qr(sketch.T).Q.T  # (n_sketch, n_params), orthonormal
        exact_part = float(_quadratic_forms(hessian, basis).sum())
    forms = []
    n_probes = n_samples - 2 * n_sketch
    for start in range(0, n_probes, hessian.batch_size):
        # One batch of probes at a time: memory stays at one batch.
        size = min(hessian.batch_size, n_probes - start)
        probes = _rademacher(generator, size, n_params, hessian)
        if basis is not None:
            probes = probes - (probes @ basis.T) @ basis
        forms.append(_quadratic_forms(hessian, probes).cpu())
    forms = torch.cat(forms)
    trace = exact_part + float(forms.mean())
    if not return_std:
        return trace
    n_forms = len(forms)
    std_error = float(forms.std() / math.sqrt(n_forms)) if n_forms > 1 else math.nan
    return trace, std_error
