"""Reach the torch network and the training data inside any fitted model.

Every flatness analyzer measures the mean training loss of a network: the
cross-entropy of its *logits* on labelled data for a classifier, its own
criterion for a regressor. This module turns each kind of model a user may
bring into that one form, a :class:`NetworkView`:

- a flatgen classifier (``PoisonedMLPClassifier``, ``PoisonedCNNClassifier``),
  through its public ``module_``, ``network_inputs`` and ``encode_labels``;
- a fitted skorch ``NeuralNetClassifier`` (its ``module_`` returns
  probabilities for the default ``NLLLoss``, logits for ``CrossEntropyLoss``),
  ``NeuralNetBinaryClassifier`` (one logit, ``BCEWithLogitsLoss``) or plain
  ``NeuralNet`` trained with ``CrossEntropyLoss`` (logits) or ``NLLLoss``
  (log-probabilities);
- a fitted scikit-learn ``MLPClassifier``, whose weights become an
  ``nn.Sequential`` of the same activations, exactly (float64 stays float64),
  or ``MLPRegressor`` (identity output, half the mean squared error);
- a fitted skorch ``NeuralNetRegressor`` or ``NeuralNet`` with another
  criterion, measured under that criterion on float targets;
- a plain ``torch.nn.Module`` returning logits, with integer labels;
- a Pipeline ending in any of these (its transformers are applied first).

A network with one output (a binary logit ``z``, probability ``sigmoid(z)``)
is measured through the logits ``(0, z)``, whose softmax is the same
probability, so one loss serves every model.
"""

import copy
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d
from torch import nn

from ..estimators._base import BasePoisonedClassifier
from ._criterion import HalfSquaredError
from ._data import DataBatches, is_batches

SUPPORTED = (
    "PoisonedMLPClassifier, PoisonedCNNClassifier, a fitted skorch "
    "NeuralNetClassifier, NeuralNetBinaryClassifier or NeuralNet, a fitted "
    "sklearn MLPClassifier, a torch.nn.Module returning logits, or a Pipeline "
    "ending in one"
)
# sklearn's MLP activations as torch layers ('identity' adds none).
_SKLEARN_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "logistic": nn.Sigmoid}
# Layers that behave differently in training and eval mode.
_MODE_DEPENDENT = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)


class TwoClassLogits(nn.Module):
    """Logits ``(0, z)`` of a network with one output ``z`` (a binary logit).

    The softmax of ``(0, z)`` is ``(1 - sigmoid(z), sigmoid(z))``, so the
    cross-entropy of these logits is the binary cross-entropy of ``z``.

    Parameters
    ----------
    network : torch.nn.Module
        Returns ``z`` of shape ``(n_samples,)`` or ``(n_samples, 1)``.
    """

    def __init__(self, network):
        super().__init__()
        self.network = network

    def forward(self, x):
        """Return logits of shape ``(n_samples, 2)``."""
        z = self.network(x).reshape(len(x))
        return torch.stack([torch.zeros_like(z), z], dim=1)


class LogProbabilities(nn.Module):
    """Logits ``log(p + eps)`` of a network that returns probabilities ``p``.

    skorch's ``NeuralNetClassifier`` trains such a network with
    ``-log(p_y + eps)`` (``eps`` the dtype's machine epsilon); the softmax
    cross-entropy of these logits differs from that by ``log(1 + C eps)``
    for ``C`` classes, below float rounding of the loss.

    Parameters
    ----------
    network : torch.nn.Module
        Returns class probabilities of shape ``(n_samples, n_classes)``.
    """

    def __init__(self, network):
        super().__init__()
        self.network = network

    def forward(self, x):
        """Return the logits ``log(p + eps)``."""
        p = self.network(x)
        return torch.log(p + torch.finfo(p.dtype).eps)


@dataclass
class NetworkView:
    """A model seen as a torch network of logits and the data it takes.

    Attributes
    ----------
    module : torch.nn.Module
        A deep copy of the model's network, in eval mode, returning logits
        of shape ``(n_samples, n_classes)``; the caller's model is untouched.
    classes : ndarray
        The label of each logit.
    prepare : callable
        ``prepare(X)`` returns inputs shaped and typed for ``module``.
    encode : callable
        ``encode(y)`` returns the labels as int64 indices of ``classes``
        (a regressor's targets as floats of the network's dtype).
    criterion : torch.nn.Module or None
        The training loss of a regressor (``classes`` is then None); None
        for classifiers, whose loss is the cross-entropy of the logits.
    """

    module: nn.Module
    classes: np.ndarray
    prepare: object
    encode: object
    criterion: object = None


def _module_dtype(module):
    for tensor in module.parameters():
        return tensor.dtype
    raise ValueError("The network has no parameters to measure.")


def _array_inputs(module, what):
    """``prepare`` for networks that take one array of the module's dtype."""
    dtype = torch.empty((), dtype=_module_dtype(module)).numpy().dtype

    def prepare(X):
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu().numpy()
        return check_array(X, dtype=dtype, allow_nd=True, input_name="X")

    prepare.__doc__ = f"Inputs for {what}: an array of its dtype."
    return prepare


def _index_labels(n_classes, what):
    """``encode`` for networks whose labels are the logits' indices."""

    def encode(y):
        y = column_or_1d(y)
        codes = np.asarray(y)
        if codes.dtype.kind == "f" and np.all(np.isfinite(codes)):
            if np.all(codes == np.round(codes)):
                codes = codes.astype(np.int64)
        if codes.dtype.kind not in "iub" or (
            len(codes) and (codes.min() < 0 or codes.max() >= n_classes)
        ):
            raise ValueError(
                f"y must hold class indices 0 .. {n_classes - 1} for {what} with "
                f"{n_classes} outputs; got values {np.unique(y)[:5]!r}."
            )
        return codes.astype(np.int64)

    return encode


def _float_targets(module, what):
    """``encode`` for regressors: finite float targets of the network's dtype."""
    dtype = torch.empty((), dtype=_module_dtype(module)).numpy().dtype

    def encode(y):
        if isinstance(y, torch.Tensor):
            y = y.detach().cpu().numpy()
        targets = np.asarray(y, dtype=dtype)
        if not np.all(np.isfinite(targets)):
            raise ValueError(f"y holds NaN or infinite targets for {what}.")
        return targets

    return encode


def _n_outputs(module, X_example):
    with torch.no_grad():
        device = next(module.parameters()).device
        out = module(torch.as_tensor(X_example[:1]).to(device))
    return 1 if out.ndim == 1 else int(out.shape[1])


def _warn_if_mode_matters(network, what):
    if network.training and any(
        isinstance(layer, _MODE_DEPENDENT) for layer in network.modules()
    ):
        warnings.warn(
            f"{what} is in training mode and has batch-norm or dropout layers; "
            "flatness is measured in eval mode (batch norm with its running "
            "statistics, no dropout), on a copy. Call .eval() first to silence "
            "this.",
            UserWarning,
            stacklevel=4,
        )


def _flatgen_view(classifier):
    check_is_fitted(classifier)
    return NetworkView(
        copy.deepcopy(classifier.module_).eval(),
        np.asarray(classifier.classes_),
        classifier.network_inputs,
        classifier.encode_labels,
    )


def _skorch_view(net):
    from skorch import NeuralNetBinaryClassifier, NeuralNetClassifier

    name = type(net).__name__
    if not getattr(net, "initialized_", False) or not hasattr(net, "module_"):
        from sklearn.exceptions import NotFittedError

        raise NotFittedError(
            f"This {name} instance is not fitted yet. Call 'fit' with appropriate "
            "arguments before measuring it."
        )
    criterion = net.criterion_
    _check_plain_criterion(criterion, name)
    network = copy.deepcopy(net.module_)
    _warn_if_mode_matters(net.module_, f"The {name}'s module_")
    if isinstance(net, NeuralNetBinaryClassifier) or isinstance(
        criterion, nn.BCEWithLogitsLoss
    ):
        module = TwoClassLogits(network)
    elif isinstance(criterion, nn.CrossEntropyLoss):
        module = network
    elif isinstance(criterion, nn.NLLLoss) and isinstance(net, NeuralNetClassifier):
        # The module returns probabilities; a final Softmax is dropped (its
        # input are the logits), anything else gets log(p + eps).
        last = network[-1] if isinstance(network, nn.Sequential) else None
        if isinstance(last, nn.Softmax) and last.dim in (1, -1, None):
            module = network[:-1]
        else:
            module = LogProbabilities(network)
    elif isinstance(criterion, nn.NLLLoss):
        module = network  # log-probabilities are logits already
    elif isinstance(net, NeuralNetClassifier):
        raise TypeError(
            f"Flatness analyzers measure the cross-entropy of classifiers; this "
            f"{name} was trained with {type(criterion).__name__}. Supported "
            "criteria: CrossEntropyLoss, NLLLoss, BCEWithLogitsLoss (any criterion "
            "with a mean reduction for a NeuralNetRegressor or NeuralNet)."
        )
    else:
        # A regressor (or a NeuralNet with another loss): its own criterion,
        # on float targets.
        module = network.eval()
        prepare = _array_inputs(module, f"this {name}")
        return NetworkView(
            module, None, prepare, _float_targets(module, name), criterion
        )
    module.eval()
    prepare = _array_inputs(module, f"this {name}")
    return module, prepare, name


def _check_plain_criterion(criterion, name):
    # A weighted or smoothed loss is another objective than the cross-entropy
    # the analyzers evaluate: refuse rather than measure the wrong one.
    weight = getattr(criterion, "weight", None)
    smoothing = getattr(criterion, "label_smoothing", 0.0)
    pos_weight = getattr(criterion, "pos_weight", None)
    if weight is not None or pos_weight is not None or smoothing:
        raise ValueError(
            f"This {name}'s criterion {type(criterion).__name__} has class "
            "weights or label smoothing; flatness analyzers measure the plain "
            "mean cross-entropy and would not measure its training loss."
        )
    if getattr(criterion, "reduction", "mean") != "mean":
        raise ValueError(
            f"This {name}'s criterion has reduction={criterion.reduction!r}; "
            "flatness analyzers measure the mean loss (reduction='mean')."
        )


def _sklearn_mlp_view(mlp):
    check_is_fitted(mlp)
    regressor = isinstance(mlp, MLPRegressor)
    if regressor and getattr(mlp, "loss", "squared_error") != "squared_error":
        raise TypeError(
            f"This MLPRegressor is trained with loss={mlp.loss!r}; flatness "
            "analyzers measure MLPRegressor's squared error (loss='squared_error')."
        )
    if not regressor and (
        mlp.out_activation_ not in ("softmax", "logistic")
        or (mlp.out_activation_ == "logistic" and mlp.n_outputs_ != 1)
    ):
        raise TypeError(
            "Flatness analyzers measure single-label classifiers; this "
            f"MLPClassifier has out_activation_={mlp.out_activation_!r} with "
            f"{mlp.n_outputs_} outputs (multi-label)."
        )
    dtype = torch.float64 if mlp.coefs_[0].dtype == np.float64 else torch.float32
    layers = []
    for i, (W, b) in enumerate(zip(mlp.coefs_, mlp.intercepts_)):
        linear = nn.Linear(W.shape[0], W.shape[1], dtype=dtype)
        with torch.no_grad():
            linear.weight.copy_(torch.as_tensor(W.T))
            linear.bias.copy_(torch.as_tensor(b))
        layers.append(linear)
        if i < len(mlp.coefs_) - 1 and mlp.activation in _SKLEARN_ACTIVATIONS:
            layers.append(_SKLEARN_ACTIVATIONS[mlp.activation]())
    module = nn.Sequential(*layers)
    name = type(mlp).__name__

    def prepare(X):
        X = check_array(X, dtype=mlp.coefs_[0].dtype, input_name="X")
        if X.shape[1] != mlp.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but {name} is expecting "
                f"{mlp.n_features_in_} features as input."
            )
        return X

    if regressor:
        # Identity output; sklearn's loss is half the mean squared error.
        module.eval()
        return NetworkView(
            module, None, prepare, _float_targets(module, name), HalfSquaredError()
        )
    if mlp.n_outputs_ == 1:
        module = TwoClassLogits(module)
    module.eval()
    classes = np.asarray(mlp.classes_)

    def encode(y):
        y = column_or_1d(y)
        codes = np.searchsorted(classes, y)
        codes = np.clip(codes, 0, len(classes) - 1)
        unknown = classes[codes] != y
        if np.any(unknown):
            raise ValueError(
                f"y contains labels the MLPClassifier was not fitted on: "
                f"{np.unique(np.asarray(y)[unknown])[:5]!r}; its classes_ are "
                f"{classes!r}."
            )
        return codes.astype(np.int64)

    return NetworkView(module, classes, prepare, encode)


def network_view(model, X_example=None):
    """Return the network of ``model`` as logits, and how to prepare its data.

    Parameters
    ----------
    model : fitted model
        Any model named in :data:`SUPPORTED` (see the module docstring).
    X_example : array-like, default=None
        Inputs for the network (after a Pipeline's transformers); needed for
        skorch nets and torch modules, whose number of outputs is read from
        one forward pass.

    Returns
    -------
    view : NetworkView

    Raises
    ------
    TypeError
        If ``model`` is none of the supported kinds.
    sklearn.exceptions.NotFittedError
        If it is not fitted.
    """
    try:
        from skorch import NeuralNet
    except ImportError:  # pragma: no cover - skorch is a dependency
        NeuralNet = ()
    if isinstance(model, BasePoisonedClassifier):
        return _flatgen_view(model)
    if isinstance(model, MLPClassifier):
        return _sklearn_mlp_view(model)
    if isinstance(model, MLPRegressor):
        return _sklearn_mlp_view(model)
    if isinstance(model, NeuralNet):
        view = _skorch_view(model)
        if isinstance(view, NetworkView):
            return view
        module, prepare, name = view
        return _indexed_view(module, prepare, X_example, f"this {name}")
    if isinstance(model, nn.Module):
        _warn_if_mode_matters(model, "The module")
        module = copy.deepcopy(model).eval()
        prepare = _array_inputs(module, "this module")
        view = _indexed_view(module, prepare, X_example, "this module")
        if len(view.classes) == 1:
            view.module = TwoClassLogits(module).eval()
            view.classes = np.arange(2)
            view.encode = _index_labels(2, "this module")
        return view
    raise TypeError(
        f"Flatness analyzers need a torch network classifier ({SUPPORTED}); got "
        f"{type(model).__name__}. Margins of any classifier, SVC included, are "
        "measured in input space instead."
    )


def _indexed_view(module, prepare, X_example, what):
    if X_example is None:
        raise ValueError(f"X is required to read the outputs of {what}.")
    n_outputs = _n_outputs(module, prepare(X_example[:1]))
    return NetworkView(
        module, np.arange(n_outputs), prepare, _index_labels(n_outputs, what)
    )


def _split_pipeline(model):
    """Return the Pipeline's transformers and its last step (or none and model)."""
    if isinstance(model, Pipeline):
        return [s for _, s in model.steps[:-1] if s not in (None, "passthrough")], (
            model.steps[-1][1]
        )
    return [], model


def _transform(transformers, X):
    for step in transformers:
        X = step.transform(X)
    return X


def model_network(model, X):
    """Return the view of ``model``'s network and a function preparing inputs.

    Parameters
    ----------
    model : fitted model
        Any supported model (see the module docstring).
    X : array-like
        Inputs as passed to the model (a Pipeline's transformers run first).

    Returns
    -------
    view : NetworkView
        Its ``prepare`` takes raw inputs (it applies the Pipeline's
        transformers too).
    X_network : ndarray
        ``X`` prepared for the network.
    """
    if model is None:
        raise TypeError(
            f"Flatness analyzers need a torch network classifier ({SUPPORTED}); "
            "got NoneType."
        )
    transformers, last = _split_pipeline(model)
    if isinstance(model, Pipeline):
        check_is_fitted(model)
    X_t = _transform(transformers, X)
    view = network_view(last, X_t)
    prepare_network = view.prepare
    view.prepare = lambda X_raw: prepare_network(_transform(transformers, X_raw))
    return view, prepare_network(X_t)


def network_inputs(estimator, X):
    """Return ``X`` as the network sees it: the Pipeline's transformers, then its own.

    Parameters
    ----------
    estimator : fitted model
        Any supported model (see the module docstring).
    X : array-like of shape (n_samples, ...)
        Inputs, as passed to the estimator's ``predict``.

    Returns
    -------
    X_network : ndarray
        Inputs shaped and typed for the network.
    """
    return model_network(estimator, X)[1]


def network_and_data(estimator, X, y):
    """Return a copy of the fitted network (logits) and ``X, y`` prepared for it.

    Parameters
    ----------
    estimator : fitted model
        The model to analyze (see the module docstring for the kinds). It is
        not modified: the network is deep-copied.
    X : array-like of shape (n_samples, ...)
        Data, as passed to the model's ``predict`` (a Pipeline's
        transformers are applied first).
    y : array-like of shape (n_samples,)
        Labels: from the model's ``classes_`` (flatgen and sklearn models),
        or class indices (skorch nets and torch modules).

    Returns
    -------
    module : torch.nn.Module
        A deep copy of the trained network, in eval mode, returning logits.
    X : ndarray
        Inputs shaped for the network.
    y : ndarray of int64
        Labels encoded as indices of the logits.

    Raises
    ------
    TypeError
        If ``estimator`` is not a supported model.
    sklearn.exceptions.NotFittedError
        If it is not fitted.
    ValueError
        If ``X`` does not fit the network or ``y`` holds unknown labels.
    """
    if is_batches(X):
        raise TypeError(
            "This measurement needs the training set as arrays X, y; training data "
            "given as batches (a DataLoader) are measured through "
            "TrainingObjective.from_model, as every flatness analyzer but "
            "PerturbationPath does."
        )
    module, X, y, _ = _array_parts(estimator, X, y)
    return module, X, y


def _array_parts(estimator, X, y):
    view, X = model_network(estimator, X)
    if y is None:
        raise ValueError("y is required: the basin is measured on the training loss.")
    if view.criterion is None:
        y = column_or_1d(y)
    if len(y) != len(X):
        raise ValueError(
            f"X and y have inconsistent numbers of samples: {len(X)} and {len(y)}."
        )
    return view.module, X, view.encode(y), view.criterion


def model_objective_parts(model, X, y=None):
    """Return the network, data and criterion of a fitted model's training loss.

    Parameters
    ----------
    model : fitted model
        Any supported model (see the module docstring), regressors included.
    X : array-like, DataLoader or re-iterable of (X, y) pairs
        Inputs as passed to the model, or batches of inputs and labels.
    y : array-like or None
        Labels or targets; None when ``X`` holds batches.

    Returns
    -------
    module : torch.nn.Module
        A deep copy of the trained network, in eval mode.
    X : ndarray or DataBatches
        The inputs prepared for ``module`` (each batch's, for batches).
    y : ndarray or None
        Encoded labels or targets; None for batches.
    criterion : torch.nn.Module or None
        A regressor's loss; None for the cross-entropy of a classifier.
    """
    if is_batches(X):
        module, data, criterion = _batch_parts(model, X, y)
        return module, data, None, criterion
    return _array_parts(model, X, y)


def model_classes(estimator, X):
    """Return the label of each logit of ``estimator``'s network.

    Parameters
    ----------
    estimator : fitted model
        Any supported model.
    X : array-like
        Inputs as passed to the model (needed by skorch nets and modules).

    Returns
    -------
    classes : ndarray
    """
    return model_network(estimator, X)[0].classes


def network_and_batches(estimator, batches, y=None):
    """Return a copy of the fitted network (logits) and its data as batches.

    Parameters
    ----------
    estimator : fitted model
        Any supported model (see the module docstring).
    batches : DataLoader or re-iterable of (X, y) pairs
        The training data, one batch at a time; each batch's inputs and
        labels are prepared as :func:`network_and_data` prepares arrays.
    y : None
        Must be None: the labels come with the batches.

    Returns
    -------
    module : torch.nn.Module
        A deep copy of the trained network, in eval mode, returning logits.
    data : flatgen.landscape.DataBatches
        The batches, prepared for ``module``.
    """
    module, data, _ = _batch_parts(estimator, batches, y)
    return module, data


def _batch_parts(estimator, batches, y):
    if y is not None:
        raise ValueError(
            "y must be None when X holds (X, y) batches (a DataLoader): the labels "
            "come with the batches."
        )
    data = DataBatches(batches, classification=False)  # labels checked below
    first_X = next(iter(data.batches))[0]
    view, _ = model_network(estimator, first_X[:1])
    prepared = DataBatches(
        data.batches,
        transform=view.prepare,
        encode=view.encode,
        classification=view.criterion is None,
    )
    return view.module, prepared, view.criterion
