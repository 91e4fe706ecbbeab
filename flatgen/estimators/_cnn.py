"""Poisoned convolutional classifier for images."""

import numpy as np
from sklearn.utils.validation import validate_data

from ..networks import SmallCNN
from ._base import BasePoisonedClassifier, _check_layer_sizes
from ._docs import fill


class PoisonedCNNClassifier(BasePoisonedClassifier):
    __doc__ = fill(
        """Small convolutional network trained with a poison objective.

    The image counterpart of :class:`PoisonedMLPClassifier`, over a
    :class:`~flatgen.networks.SmallCNN`. ``X`` may be images of shape
    ``(n_samples, channels, height, width)`` or ``(n_samples, height,
    width)``, or flattened rows of shape ``(n_samples, n_features)`` together
    with ``image_shape`` (so it works after a ``StandardScaler`` in a
    Pipeline). Flattened rows without ``image_shape`` are treated as
    one-pixel-high images.

    Parameters
    ----------
    image_shape : tuple of int, default=None
        ``(channels, height, width)`` of one image when ``X`` holds flattened
        rows; ignored for image-shaped ``X``.
    conv_channels : tuple of int, default=(16, 32)
        Output channels of the 3x3 convolutional blocks.
    hidden_layer_sizes : tuple of int, default=(64,)
        Widths of the dense layers after the convolutions.
    activation : {{'relu', 'tanh', 'gelu', 'logistic'}}, default='relu'
        Nonlinearity used throughout.
    {poison}
    {training}

    Attributes
    ----------
    {attributes}
    image_shape_ : tuple of int
        ``(channels, height, width)`` of the network's input.

    See Also
    --------
    PoisonedMLPClassifier : The same for feature vectors.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from flatgen import PoisonedCNNClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = PoisonedCNNClassifier(image_shape=(1, 8, 8), max_iter=5, random_state=0)
    >>> clf.fit(X[:100], y[:100]).predict(X[:2]).shape
    (2,)
    """,
        lr=0.05,
        max_iter=1000,
    )

    _parameter_constraints = {
        **BasePoisonedClassifier._parameter_constraints,
        "image_shape": ["array-like", None],
        "conv_channels": ["array-like"],
        "hidden_layer_sizes": ["array-like"],
    }

    def __init__(
        self,
        image_shape=None,
        conv_channels=(16, 32),
        hidden_layer_sizes=(64,),
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
        learning_rate_init=0.05,
        momentum=0.9,
        alpha=0.0,
        max_iter=1000,
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
        self.image_shape = image_shape
        self.conv_channels = conv_channels
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

    def _image_shape_from(self, given_shape, n_features):
        if given_shape is not None:
            shape = given_shape
        elif self.image_shape is not None:
            shape = _check_layer_sizes("image_shape", self.image_shape)
            if len(shape) != 3 or int(np.prod(shape)) != n_features:
                raise ValueError(
                    "image_shape must be (channels, height, width) with "
                    f"channels*height*width == n_features ({n_features}). Got "
                    f"{self.image_shape!r} instead."
                )
        else:
            shape = (1, 1, n_features)
        return tuple(int(s) for s in shape)

    def _prepare_X(self, X, *, reset):
        given_shape = None
        ndim = getattr(X, "ndim", None)
        if ndim in (3, 4):
            X = np.asarray(X)
            given_shape = X.shape[1:] if ndim == 4 else (1,) + X.shape[1:]
            X = X.reshape(len(X), -1)
        X = validate_data(self, X, reset=reset, dtype=np.float32)
        if reset:
            self.image_shape_ = self._image_shape_from(given_shape, X.shape[1])
        elif given_shape is not None and tuple(given_shape) != self.image_shape_:
            raise ValueError(
                f"X has images of shape {tuple(given_shape)}, but "
                f"{type(self).__name__} was fitted on images of shape "
                f"{self.image_shape_}."
            )
        return X.reshape((len(X),) + self.image_shape_)

    def _build_module(self, n_classes):
        return SmallCNN(
            self.image_shape_,
            n_classes,
            _check_layer_sizes("conv_channels", self.conv_channels),
            _check_layer_sizes("hidden_layer_sizes", self.hidden_layer_sizes),
            self.activation,
        )
