"""One fitted model's training-loss landscape, set up once for any measurement.

Every analyzer measures the same thing: the training loss of a copy of the
network at weights ``theta* + perturbation``. :class:`ModelLandscape` owns
what that takes (the copy, the prepared data, the batched evaluator, the
flat weights ``theta*`` and filter-normalized directions) and
:func:`analysis_seeds` is the one place seeds come from ``random_state``.
"""

from functools import cached_property

import numpy as np
from sklearn.utils import check_random_state

from .._torch_utils import torch_threads
from ..landscape import (
    BatchedEvaluator,
    filter_normalized_directions,
    flatten_parameters,
    top_hessian_eigenpairs,
)
from ._access import network_and_data

# Relative residual at which a Hessian direction's eigenpair is accepted
# (top_hessian_eigenpairs' default).
HESSIAN_DIRECTION_TOL = 1e-4


def analysis_seeds(random_state, n_seeds=1):
    """Return the integer seeds of one analysis, drawn from ``random_state``.

    Seed 0 seeds the directions, and direction ``k`` depends only on that
    seed and ``k``: analyzers given the same ``random_state`` perturb along
    the same directions (a LossSlice plane is spanned by the first two
    directions of a BasinAnalyzer). Analyses that need more randomness take
    seeds 1, 2, ... (the curvature's trace probes). A ``RandomState``
    instance advances by ``n_seeds`` draws.

    Parameters
    ----------
    random_state : int, RandomState instance or None
        The analyzer's ``random_state``.
    n_seeds : int, default=1
        How many seeds.

    Returns
    -------
    seeds : list of int
    """
    rng = check_random_state(random_state)
    return [int(s) for s in rng.randint(np.iinfo(np.int32).max, size=n_seeds)]


class ModelLandscape:
    """Training loss around a trained network's weights, ready to evaluate.

    Parameters
    ----------
    module : torch.nn.Module
        The trained network; not modified (evaluations use its weights
        functionally).
    X : ndarray
        Training inputs shaped for the network.
    y : ndarray of int64
        Encoded training labels.
    include_bias : bool, default=False
        Whether directions move biases (and normalization parameters).
    n_threads : int or None, default=None
        torch threads for the work done in :meth:`threads`.
    """

    def __init__(self, module, X, y, *, include_bias=False, n_threads=None):
        self.module, self.X, self.y = module, X, y
        self.include_bias = bool(include_bias)
        self.n_threads = n_threads

    @classmethod
    def from_estimator(cls, estimator, X, y, *, include_bias=False, n_threads=None):
        """Set up the landscape of a fitted model.

        ``estimator`` is any model the analyzers accept (a flatgen
        classifier, a skorch net, an sklearn ``MLPClassifier``, a torch
        module returning logits, or a Pipeline ending in one). The network
        is deep-copied and ``X, y`` are prepared as the network sees them
        (see :func:`~flatgen.analyzers._access.network_and_data`).
        """
        module, X, y = network_and_data(estimator, X, y)
        return cls(module, X, y, include_bias=include_bias, n_threads=n_threads)

    def threads(self):
        """Context manager: run torch with this landscape's thread count."""
        return torch_threads(self.n_threads)

    @cached_property
    def evaluator(self):
        """The :class:`~flatgen.landscape.BatchedEvaluator` of the training loss."""
        return BatchedEvaluator(self.module, self.X, self.y)

    @cached_property
    def theta0(self):
        """The trained weights as one flat tensor on the evaluator's device."""
        return flatten_parameters(self.module).to(self.evaluator.device)

    @property
    def n_perturbed(self):
        """Number of parameters the directions move."""
        return int(
            sum(
                p.numel()
                for p in self.module.parameters()
                if self.include_bias or p.ndim >= 2
            )
        )

    def directions(self, n_directions, seed, *, start=0):
        """Filter-normalized directions ``start .. start + n_directions - 1``.

        Direction ``k`` depends only on ``(seed, k)``, so any chunking draws
        the same vectors.
        """
        return filter_normalized_directions(
            self.evaluator.layout,
            self.theta0,
            n_directions,
            seed,
            start=start,
            include_bias=self.include_bias,
        )

    def base_loss(self):
        """Return the training loss and accuracy at the trained weights."""
        loss, accuracy = self.evaluator.evaluate(self.theta0[None])
        return float(loss[0]), float(accuracy[0])

    def hessian_directions(self, n_directions, seed):
        """Return the sharpest directions: top eigenvectors of ``D H D``.

        The top ``n_directions`` eigenvectors ``u`` of ``D H D`` (see
        :class:`~flatgen.landscape.LossHessian`), by Lanczos from a start
        drawn with ``seed``, mapped to weights as ``D u`` and each rescaled
        to the norm of a random filter-normalized direction (the norm of the
        perturbed weights), so steps along them read on the same scale.

        Returns
        -------
        eigenvalues : ndarray of shape (n_directions,)
            Descending eigenvalues of ``D H D``.
        directions : torch.Tensor of shape (n_directions, n_params)
        residuals : ndarray of shape (n_directions,)
            Relative residual of each eigenpair (see
            :func:`~flatgen.landscape.top_hessian_eigenpairs`); a pair above
            the solver's tolerance also raised a ConvergenceWarning.
        """
        eigenvalues, vectors, residuals = top_hessian_eigenpairs(
            self.module,
            self.X,
            self.y,
            n_directions,
            seed=seed,
            filter_normalized=True,
            include_bias=self.include_bias,
            tol=HESSIAN_DIRECTION_TOL,
            return_residuals=True,
        )
        theta0 = self.theta0
        scale = self.evaluator.layout.group_norms(theta0, self.include_bias)
        d = (scale[:, None] * vectors.to(theta0.device, theta0.dtype)).double()
        # Every filter of a random filter-normalized direction has the norm
        # of its weights, so the whole direction has the norm of the
        # perturbed weights.
        target = (theta0.double() * (scale != 0)).norm()
        d = d * (target / d.norm(dim=0, keepdim=True))
        return eigenvalues, d.T.to(theta0.dtype).contiguous(), residuals
