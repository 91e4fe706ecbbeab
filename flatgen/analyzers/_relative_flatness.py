"""RelativeFlatnessAnalyzer: Petzka et al.'s relative flatness of a layer."""

from numbers import Integral

from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval

from ..landscape import TrainingObjective
from ..landscape._relative_flatness import layer_weight_name, relative_flatness
from ._common import FlatnessAnalyzer
from ._seeds import analysis_seeds


class RelativeFlatnessAnalyzer(FlatnessAnalyzer):
    """Relative flatness of one layer: ``sum_{s,s'} <w_s, w_s'> Tr(H_{s,s'})``.

    Petzka, Kamp, Adilova, Sminchisescu and Boley (NeurIPS 2021) weigh the
    curvature of the loss in a layer's weights by the weights themselves:
    for the rows ``w_s`` of the layer's matrix and the Hessian blocks
    ``H_{s,s'}`` between rows, ``kappa = sum_{s,s'} <w_s, w_s'> Tr(H_{s,s'})
    = Tr(S H_W S)`` with ``S = (W W^T)^{1/2} (x) I``. Unlike the Hessian's
    trace it does not change when a ReLU network moves a factor between
    consecutive layers (the same function), and applied to the layer whose
    inputs are the network's features (the last one, by default) it bounds
    the gap to the loss under feature perturbations. Computed from exact
    Hessian-vector products: one per weight of the layer, or ``n_probes``
    Rademacher probes for large layers.

    Parameters
    ----------
    layer : int or str, default=-1
        Which ``nn.Linear`` layer: an index in definition order (``-1``: the
        last) or its module name.
    n_probes : int or None, default=None
        None: the exact trace (as many products as the layer has weights);
        an integer: Hutchinson's estimate from that many probes, with
        ``std_error_``.
    random_state : int, RandomState instance or None, default=None
        Seeds the probes.
    n_threads : int, default=1
        Number of torch threads.

    Attributes
    ----------
    relative_flatness_ : float
        ``kappa``; smaller is flatter.
    std_error_ : float
        Standard error of a Hutchinson estimate; 0 when exact.
    layer_name_ : str
        The measured weight matrix's parameter name.
    base_loss_ : float
        Training loss at the minimum.
    score_ : float
        ``-relative_flatness_``: larger is flatter, like every flatness
        scorer.

    References
    ----------
    .. [1] H. Petzka, M. Kamp, L. Adilova, C. Sminchisescu and M. Boley,
       "Relative Flatness and Generalization", NeurIPS 2021.

    Examples
    --------
    >>> from flatgen import PoisonedMLPClassifier, RelativeFlatnessAnalyzer
    >>> from flatgen import make_spirals
    >>> X, y = make_spirals(100, random_state=0)
    >>> clf = PoisonedMLPClassifier(max_iter=300, random_state=0).fit(X, y)
    >>> flatness = RelativeFlatnessAnalyzer().fit(clf, X, y)
    >>> flatness.relative_flatness_ >= 0
    True
    """

    _parameter_constraints = {
        "layer": [Integral, str],
        "n_probes": [Interval(Integral, 2, None, closed="left"), None],
        "random_state": ["random_state"],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(self, layer=-1, *, n_probes=None, random_state=None, n_threads=1):
        self.layer = layer
        self.n_probes = n_probes
        self.random_state = random_state
        self.n_threads = n_threads

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, estimator, X, y):
        """Compute the relative flatness of ``estimator``'s layer on ``X, y``.

        Parameters
        ----------
        estimator : fitted network model
            A flatgen classifier, a skorch net, an sklearn MLP, a
            ``torch.nn.Module``, a Pipeline ending in one or a
            :class:`~flatgen.landscape.TrainingObjective` (see
            :ref:`any-model`). It is not modified.
        X : array-like of shape (n_samples, ...) or DataLoader
            Training inputs, or batches of inputs and labels.
        y : array-like of shape (n_samples,) or None
            Training labels; None when ``X`` holds batches.

        Returns
        -------
        self : RelativeFlatnessAnalyzer
            The analyzer, with results in its ``*_`` attributes.
        """
        objective = TrainingObjective.from_model(
            estimator, X, y, n_threads=self.n_threads
        )
        self.layer_name_ = layer_weight_name(objective.module, self.layer)
        (seed,) = analysis_seeds(self.random_state)
        with objective.threads():
            self.base_loss_ = objective.base_loss()[0]
            self.relative_flatness_, self.std_error_ = relative_flatness(
                objective.hessian,
                objective.theta0,
                self.layer_name_,
                n_probes=self.n_probes,
                seed=seed,
            )
        self.score_ = -self.relative_flatness_
        return self
