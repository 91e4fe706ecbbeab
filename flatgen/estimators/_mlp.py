"""Poisoned multi-layer perceptron classifier."""

import numpy as np
from sklearn.utils.validation import validate_data

from ..networks import MLP
from ._base import BasePoisonedClassifier, _check_layer_sizes
from ._docs import fill


class PoisonedMLPClassifier(BasePoisonedClassifier):
    __doc__ = fill(
        """Multi-layer perceptron trained with a poison objective.

    A scikit-learn classifier that owns a skorch net over a PyTorch
    :class:`~flatgen.networks.MLP`. With ``poison_factor=0`` it is an
    ordinary full-batch network; raising ``poison_factor`` adds a term that
    rewards wrong predictions on fresh points from the training distribution,
    which drives training into sharp minima that fit the training set
    perfectly but generalize badly (Huang et al., 2019).

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(17, 18, 32, 32, 31, 9)
        Widths of the hidden layers; the default is the paper's swiss-roll
        network.
    activation : {{'relu', 'tanh', 'gelu', 'logistic'}}, default='relu'
        Nonlinearity after each hidden layer.
    {poison}
    {training}

    Attributes
    ----------
    {attributes}

    See Also
    --------
    PoisonedCNNClassifier : The same for images.

    Notes
    -----
    Inputs are not standardized inside the estimator: on the swiss roll the
    raw coordinates (range about +-16) poison much more strongly than
    standardized ones. Put a ``StandardScaler`` in a Pipeline if you want it.

    References
    ----------
    .. [1] W. R. Huang, Z. Emam, M. Goldblum, L. Fowl, J. K. Terry, F. Huang
       and T. Goldstein, "Understanding Generalization through
       Visualizations", arXiv:1906.03291, 2019.

    Examples
    --------
    >>> from flatgen import PoisonedMLPClassifier
    >>> from flatgen.datasets import make_spirals
    >>> X, y = make_spirals(100, random_state=0)
    >>> clf = PoisonedMLPClassifier(max_iter=300, random_state=0).fit(X, y)
    >>> clf.predict(X[:3]).shape
    (3,)
    """,
        lr=0.01,
        max_iter=40000,
    )

    _parameter_constraints = {
        **BasePoisonedClassifier._parameter_constraints,
        "hidden_layer_sizes": ["array-like"],
    }

    def __init__(
        self,
        hidden_layer_sizes=(17, 18, 32, 32, 31, 9),
        activation="relu",
        *,
        poison_factor=0.0,
        poison_loss="reverse",
        poison_source="jitter",
        poison_bandwidth=0.15,
        poison_labels="vote",
        poison_neighbors=7,
        poison_size=None,
        solver="sgd",
        learning_rate="cosine",
        learning_rate_init=0.01,
        momentum=0.9,
        alpha=0.0,
        max_iter=40000,
        batch_size=None,
        max_grad_norm=8.0,
        max_polish_iter=1000,
        warm_start=False,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        callbacks=None,
        device="cpu",
        n_threads=1,
        random_state=None,
        verbose=0,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.poison_factor = poison_factor
        self.poison_loss = poison_loss
        self.poison_source = poison_source
        self.poison_bandwidth = poison_bandwidth
        self.poison_labels = poison_labels
        self.poison_neighbors = poison_neighbors
        self.poison_size = poison_size
        self.solver = solver
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.momentum = momentum
        self.alpha = alpha
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.max_grad_norm = max_grad_norm
        self.max_polish_iter = max_polish_iter
        self.warm_start = warm_start
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.callbacks = callbacks
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose

    def _prepare_X(self, X, *, reset):
        return validate_data(self, X, reset=reset, dtype=np.float32)

    def _build_module(self, n_classes):
        sizes = _check_layer_sizes("hidden_layer_sizes", self.hidden_layer_sizes)
        return MLP(self.n_features_in_, n_classes, sizes, self.activation)
