"""NormAnalyzer: norm-based complexity measures of a trained network."""

from numbers import Integral

from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval, StrOptions

from ..landscape import (
    TrainingObjective,
    fisher_rao_norm,
    log10_norm_products,
    log10_path_norm,
)
from ._common import FlatnessAnalyzer

NORMS = (
    "fisher_rao",
    "log10_path_norm",
    "log10_spectral_product",
    "log10_frobenius_product",
)


class NormAnalyzer(FlatnessAnalyzer):
    """Norm-based measures of a trained network (Jiang et al., 2020).

    Computes them all at once (each costs at most one pass over the data):

    - Fisher-Rao norm (Liang et al., 2019): ``E_i <theta, grad loss_i>**2``,
      by one forward-mode pass along the weights;
    - path norm: the sum over input-output paths of the product of the
      squared weights (a forward pass of the squared network on an input of
      ones, biases zeroed), as log10;
    - products of the squared spectral and Frobenius norms of the weight
      matrices (kernels reshaped to ``(out, in * kernel size)``), as log10.

    Parameters
    ----------
    norm : {'fisher_rao', 'log10_path_norm', 'log10_spectral_product', \
'log10_frobenius_product'}, default='fisher_rao'
        The measure whose negative is ``score_`` (and the scorer's value).
    include_bias : bool, default=False
        Whether the Fisher-Rao norm's ``theta`` includes the biases.
    n_threads : int, default=1
        Number of torch threads.

    Attributes
    ----------
    fisher_rao_ : float
        Squared Fisher-Rao norm.
    log10_path_norm_ : float
        log10 of the squared path norm.
    log10_spectral_product_ : float
        ``sum_l log10 ||W_l||_2**2``.
    log10_frobenius_product_ : float
        ``sum_l log10 ||W_l||_F**2``.
    base_loss_ : float
        Training loss at the minimum.
    score_ : float
        Minus the measure named by ``norm``, returned when called as a
        scorer: larger is flatter (a smaller norm), like every flatness
        scorer.

    Examples
    --------
    >>> from flatgen import NormAnalyzer, PoisonedMLPClassifier, make_spirals
    >>> X, y = make_spirals(100, random_state=0)
    >>> clf = PoisonedMLPClassifier(max_iter=300, random_state=0).fit(X, y)
    >>> norms = NormAnalyzer().fit(clf, X, y)
    >>> norms.log10_spectral_product_ <= norms.log10_frobenius_product_
    True
    """

    _parameter_constraints = {
        "norm": [StrOptions(set(NORMS))],
        "include_bias": ["boolean"],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(self, norm="fisher_rao", *, include_bias=False, n_threads=1):
        self.norm = norm
        self.include_bias = include_bias
        self.n_threads = n_threads

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, estimator, X, y):
        """Compute the norms of ``estimator``'s network; the data enter Fisher-Rao.

        Parameters
        ----------
        estimator : fitted network model
            A flatgen classifier, a skorch net, an sklearn ``MLPClassifier``, a
            ``torch.nn.Module`` returning logits, or a Pipeline ending in one
            (see :ref:`any-model`).
            It is not modified.
        X : array-like of shape (n_samples, ...)
            Training inputs.
        y : array-like of shape (n_samples,)
            Training labels (class indices for skorch nets and modules).

        Returns
        -------
        self : NormAnalyzer
            The analyzer, with results in its ``*_`` attributes.
        """
        landscape = TrainingObjective.from_model(
            estimator, X, y, n_threads=self.n_threads
        )
        module = landscape.module
        with landscape.threads():
            self.base_loss_ = landscape.base_loss()[0]
            self.fisher_rao_ = fisher_rao_norm(
                landscape.network_loss, self.include_bias
            )
            self.log10_path_norm_ = log10_path_norm(module, _input_shape(landscape))
            frobenius, spectral = log10_norm_products(module)
        self.log10_frobenius_product_ = frobenius
        self.log10_spectral_product_ = spectral
        self.score_ = -getattr(self, f"{self.norm}_")
        return self


def _input_shape(objective):
    """Shape of one input as the network takes it (arrays or batches)."""
    if objective.batched:
        X, _ = next(iter(objective.X))
        return tuple(X.shape[1:])
    return tuple(objective.X.shape[1:])
