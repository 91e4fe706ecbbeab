"""CurvatureAnalyzer: sharpness of the minimum from Hessian-vector products."""

from numbers import Integral, Real

import numpy as np
from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval, StrOptions

from .._torch_utils import torch_threads
from ..landscape import (
    TrainingObjective,
    hessian_trace,
    top_hessian_eigenvalue,
)
from ._common import FlatnessAnalyzer
from ._deprecation import DEPRECATED, former_name, renamed
from ._seeds import analysis_seeds


class CurvatureAnalyzer(FlatnessAnalyzer):
    """Top eigenvalue and trace of the training-loss Hessian at the minimum.

    Hessian-vector products are exact (an analytic R-operator for plain
    sequential networks, double backpropagation otherwise, see
    :class:`flatgen.landscape.LossHessian`); the top eigenvalue comes from
    Lanczos iteration, accepted on its residual, and the trace from Hutch++
    (or Hutchinson's estimator) with Rademacher vectors. By default the Hessian is
    filter-normalized, ``D H D`` with ``D`` scaling each filter's
    coordinates by the filter's norm, so it measures curvature in the same
    units as :class:`BasinAnalyzer`'s radii (the paper's "curv").

    Parameters
    ----------
    filter_normalized : bool, default=True
        Measure ``D H D`` instead of the raw Hessian ``H``.
    include_bias : bool, default=False
        Include biases in the filter-normalized Hessian (unscaled biases are
        left out by default, as in the directions).
    n_iter : int, default=200
        Maximum Hessian-vector products of the Lanczos iteration; when the
        residual has not reached ``tol`` by then, a ConvergenceWarning says so.
    tol : float, default=1e-4
        Relative residual at which the top eigenpair is accepted (see
        :func:`flatgen.landscape.top_hessian_eigenvalue`).
    n_probes : int, default=50
        Random probe vectors (Hessian-vector products) for the trace; 0
        skips the trace.
    trace_method : {'hutch++', 'hutchinson'}, default='hutch++'
        Trace estimator (see :func:`flatgen.landscape.hessian_trace`):
        Hutch++ deflates a sketch of the dominant eigenspace and is far more
        accurate on the same products at trained minima (digits CNN, 50
        products: 0.6 % RMS error against Hutchinson's 7 %).
    random_state : int, RandomState instance or None, default=None
        Seeds the start vector and the Rademacher vectors.
    n_threads : int, default=1
        Number of torch threads.

    n_trace_samples : int, default='deprecated'
        Former name of ``n_probes`` (the name of random probe vectors across
        analyzers); still accepted, with a FutureWarning.

    Attributes
    ----------
    top_eigenvalue_ : float
        Largest eigenvalue (larger means sharper).
    trace_ : float
        Estimate of the trace (nan if skipped).
    trace_std_error_ : float
        Standard error of ``trace_`` (for Hutch++, of its random part given
        the sketch).
    base_loss_ : float
        Training loss at the minimum.
    score_ : float
        ``-top_eigenvalue_``, returned when called as a scorer: larger is
        flatter, like every flatness scorer (as scikit-learn's ``neg_*``
        scorers).

    Examples
    --------
    >>> from flatgen import CurvatureAnalyzer, PoisonedMLPClassifier, make_spirals
    >>> X, y = make_spirals(100, random_state=0)
    >>> clf = PoisonedMLPClassifier(max_iter=300, random_state=0).fit(X, y)
    >>> curvature = CurvatureAnalyzer(n_probes=5, random_state=0)
    >>> curvature.fit(clf, X, y).top_eigenvalue_ > 0
    True
    """

    _parameter_constraints = {
        "filter_normalized": ["boolean"],
        "include_bias": ["boolean"],
        "n_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="neither")],
        "n_probes": [Interval(Integral, 0, None, closed="left")],
        "n_trace_samples": former_name([Interval(Integral, 0, None, closed="left")]),
        "trace_method": [StrOptions({"hutch++", "hutchinson"})],
        "random_state": ["random_state"],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(
        self,
        filter_normalized=True,
        include_bias=False,
        *,
        n_iter=200,
        tol=1e-4,
        n_probes=50,
        trace_method="hutch++",
        random_state=None,
        n_threads=1,
        n_trace_samples=DEPRECATED,
    ):
        self.filter_normalized = filter_normalized
        self.include_bias = include_bias
        self.n_iter = n_iter
        self.tol = tol
        self.n_probes = n_probes
        self.trace_method = trace_method
        self.random_state = random_state
        self.n_threads = n_threads
        self.n_trace_samples = n_trace_samples

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, estimator, X, y):
        """Measure the curvature of ``estimator``'s training loss on ``X, y``.

        Parameters
        ----------
        estimator : fitted network model
            A flatgen classifier, a skorch net, an sklearn ``MLPClassifier``, a
            ``torch.nn.Module`` returning logits, or a Pipeline ending in one
            (see :ref:`any-model`).
            It is not modified.
        X : array-like of shape (n_samples, ...), DataLoader or list of (X, y)
            Training inputs, or the training set as batches of inputs and
            labels (then ``y=None``): the Hessian is that of the mean loss
            over all batches, accumulated one batch at a time (memory bounded
            by a batch; every product passes over the data once).
        y : array-like of shape (n_samples,) or None
            Training labels (class indices for skorch nets and modules);
            None when ``X`` holds batches.

        Returns
        -------
        self : CurvatureAnalyzer
            The analyzer, with results in its ``*_`` attributes.
        """
        # On batches, the full-data Hessian, accumulated batch by batch.
        objective = TrainingObjective.from_model(
            estimator, X, y, n_threads=self.n_threads
        )
        module, X, y = objective.module, objective.X, objective.y
        with objective.threads():
            self.base_loss_ = objective.base_loss()[0]
        eig_seed, trace_seed = analysis_seeds(self.random_state, 2)
        options = {
            "filter_normalized": self.filter_normalized,
            "include_bias": self.include_bias,
            "criterion": objective.loss,
        }
        with torch_threads(self.n_threads):
            self.top_eigenvalue_ = float(
                top_hessian_eigenvalue(
                    module,
                    X,
                    y,
                    n_iter=self.n_iter,
                    tol=self.tol,
                    seed=eig_seed,
                    **options,
                )
            )
            self.trace_, self.trace_std_error_ = np.nan, np.nan
            n_probes = renamed(self, "n_probes", "n_trace_samples")
            if n_probes:
                self.trace_, self.trace_std_error_ = hessian_trace(
                    module,
                    X,
                    y,
                    n_samples=n_probes,
                    seed=trace_seed,
                    method=self.trace_method,
                    return_std=True,
                    **options,
                )
        if not np.isfinite(self.top_eigenvalue_):
            raise ValueError(
                "The Hessian's top eigenvalue is not finite; the training loss of "
                "the estimator is not finite near its weights."
            )
        self.score_ = -self.top_eigenvalue_
        return self
