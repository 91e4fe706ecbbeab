"""Shared machinery of the poisoned classifiers."""

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from .._torch_utils import resolve_device, seeded_torch, torch_threads
from ..networks import ACTIVATIONS
from ..poison import POISON_LOSSES, JitterSource, SamplerSource
from ._fit_check import training_fit_report, warn_if_unfitted
from ._training import PoisonTrainer, PoisonTrainingNet, ProgressBar

_SOLVERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}
_INFERENCE_CHUNK = 256


def _check_layer_sizes(name, sizes):
    sizes = tuple(np.atleast_1d(sizes).tolist()) if sizes is not None else ()
    if not all(isinstance(s, Integral) and s >= 1 for s in sizes):
        raise ValueError(f"{name} must hold positive integers. Got {sizes!r} instead.")
    return tuple(int(s) for s in sizes)


class BasePoisonedClassifier(ClassifierMixin, BaseEstimator):
    """Base class: fit with the poison objective, predict, validate.

    Subclasses define ``__init__`` (explicit hyperparameters), how raw ``X``
    becomes network input (``_prepare_X``) and which module to build
    (``_build_module``).
    """

    _parameter_constraints = {
        "activation": [StrOptions(set(ACTIVATIONS))],
        "poison_factor": [Interval(Real, 0, None, closed="left")],
        "poison_loss": [StrOptions(set(POISON_LOSSES))],
        "poison_source": [StrOptions({"jitter"}), callable],
        "poison_bandwidth": [Interval(Real, 0, None, closed="neither")],
        "poison_size": [Interval(Integral, 1, None, closed="left"), None],
        "solver": [StrOptions(set(_SOLVERS)), callable],
        "learning_rate": [StrOptions({"cosine", "constant"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "max_grad_norm": [Interval(Real, 0, None, closed="neither"), None],
        "max_polish_iter": [Interval(Integral, 0, None, closed="left")],
        "callbacks": [list, None],
        "device": [str, torch.device],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    # -- hooks for subclasses ------------------------------------------------
    def _prepare_X(self, X, *, reset):
        """Validate ``X`` and return a float32 array shaped for the network."""
        raise NotImplementedError

    def _build_module(self, n_classes):
        """Return a freshly initialized torch module."""
        raise NotImplementedError

    # -- fitting -------------------------------------------------------------
    def _optimizer_settings(self):
        solver = _SOLVERS.get(self.solver, self.solver)
        settings = {"optimizer__weight_decay": self.alpha}
        if self.solver in _SOLVERS:
            # The multi-tensor update saves ~15 % of a step on tiny networks,
            # whose steps are dominated by per-tensor overhead.
            settings["optimizer__foreach"] = True
        if solver is torch.optim.SGD:
            settings["optimizer__momentum"] = self.momentum
        return solver, settings

    def _poison_source(self, X, y, rng, generator, points_per_step, device):
        if self.poison_source == "jitter":
            return JitterSource(
                X,
                y,
                len(self.classes_),
                points_per_step,
                self.poison_bandwidth,
                generator,
            )
        return SamplerSource(
            self.poison_source,
            self.classes_,
            X.shape[1:],
            points_per_step,
            rng,
            device,
            X.dtype,
        )

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Train the network on ``X, y`` with the poison objective.

        The loss is ``CE(X, y) + poison_factor * P(poison set)`` where the
        poison set is drawn anew at every step from ``poison_source`` and ``P``
        rewards wrong predictions on it. Every point passed here is a
        training point, fitted to its own label.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs (see the class docstring for image shapes).
        y : array-like of shape (n_samples,)
            Class labels: any values, at least two distinct.

        Returns
        -------
        self : object
            The fitted classifier.
        """
        X = self._prepare_X(X, reset=True)
        y = self._validate_y(y, n_samples=len(X))
        self.classes_, y_encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                "The classifier needs samples of at least 2 classes in y; got 1 "
                f"class: {self.classes_[0]!r}."
            )
        device = resolve_device(self.device)
        rng = check_random_state(self.random_state)
        init_seed, poison_seed, order_seed = rng.randint(np.iinfo(np.int32).max, size=3)
        with torch_threads(self.n_threads):
            self._fit_network(
                X, y_encoded, device, init_seed, poison_seed, order_seed, rng
            )
        return self

    def _validate_y(self, y, n_samples):
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y "
                "is None."
            )
        y = column_or_1d(y, warn=True)
        if len(y) != n_samples:
            raise ValueError(
                f"X and y have inconsistent numbers of samples: {n_samples} and "
                f"{len(y)}."
            )
        check_classification_targets(y)
        return y

    def _fit_network(
        self, X, y_encoded, device, init_seed, poison_seed, order_seed, rng
    ):
        n_classes = len(self.classes_)
        with seeded_torch(int(init_seed)):
            module = self._build_module(n_classes)
        solver, optimizer_settings = self._optimizer_settings()
        X_t = torch.as_tensor(X, device=device)
        y_t = torch.as_tensor(y_encoded, dtype=torch.int64, device=device)

        def generator(seed):
            return torch.Generator(device=device).manual_seed(int(seed))

        trainer = PoisonTrainer(
            X_t,
            y_t,
            n_epochs=self.max_iter,
            batch_size=self.batch_size,
            poison_factor=self.poison_factor,
            poison_kind=self.poison_loss,
            poison_source=None,
            learning_rate=self.learning_rate,
            max_grad_norm=self.max_grad_norm,
            generator=generator(order_seed),
            n_classes=n_classes,
        )
        if self.poison_factor > 0:
            points_per_step = self.poison_size or 2 * trainer.batch_size
            trainer.poison_source = self._poison_source(
                X_t, y_t, rng, generator(poison_seed), points_per_step, device
            )
        net = PoisonTrainingNet(
            module=module,
            criterion=torch.nn.CrossEntropyLoss,
            optimizer=solver,
            lr=self.learning_rate_init,
            max_epochs=trainer.n_blocks,
            batch_size=trainer.batch_size,
            iterator_valid__batch_size=_INFERENCE_CHUNK,
            train_split=None,
            callbacks=[("progress_bar", ProgressBar(disable=not self.verbose))]
            + list(self.callbacks or []),
            classes=list(range(n_classes)),
            verbose=0,
            device=str(device),
            **optimizer_settings,
        )
        net._trainer = trainer
        try:
            net.initialize()
            net.partial_fit(X_t, y_t)
            if trainer.interrupted:
                raise KeyboardInterrupt
            self.n_polish_iter_ = trainer.polish(net.module_, self.max_polish_iter)
        finally:
            del net._trainer
        net.module_.eval()
        self.net_ = net
        self.n_iter_ = trainer.steps_done // trainer.steps_per_epoch
        self.loss_curve_ = np.asarray(net.history[:, "train_loss"], dtype=float)
        accuracy, spread, n_predicted = training_fit_report(
            net.module_, X_t, y_t, n_classes
        )
        self.train_accuracy_ = accuracy
        self.fitted_training_set_ = accuracy == 1.0
        self.collapsed_ = warn_if_unfitted(
            type(self).__name__, accuracy, spread, n_predicted, n_classes,
            self.poison_factor,
        )

    # -- prediction ----------------------------------------------------------
    def _logits(self, X):
        check_is_fitted(self)
        X = torch.as_tensor(self._prepare_X(X, reset=False))
        # Evaluate in zero-padded chunks of one fixed size: float kernels pick
        # different summation orders for different batch sizes, and a
        # sample's prediction must not depend on what else is in the batch.
        n = len(X)
        n_padded = -(-n // _INFERENCE_CHUNK) * _INFERENCE_CHUNK
        padded = X.new_zeros((n_padded,) + X.shape[1:])
        padded[:n] = X
        module, device = self.net_.module_, self.net_.device
        pieces = []
        # The module is called directly: skorch's forward builds a Dataset
        # and collates sample by sample, ~30x slower on small networks.
        with torch_threads(self.n_threads), torch.no_grad():
            for start in range(0, len(padded), _INFERENCE_CHUNK):
                chunk = padded[start : start + _INFERENCE_CHUNK].to(device)
                pieces.append(module(chunk).cpu())
        return torch.cat(pieces)[:n].double().numpy()

    def predict_proba(self, X):
        """Class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Softmax of the network's logits, columns ordered as ``classes_``.
        """
        logits = self._logits(X)
        logits -= logits.max(axis=1, keepdims=True)
        proba = np.exp(logits)
        return proba / proba.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X):
        """Logarithm of the class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Log-softmax of the network's logits.
        """
        logits = self._logits(X)
        logits -= logits.max(axis=1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))

    def predict(self, X):
        """Predicted class of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            The class with the largest logit.
        """
        logits = self._logits(X)
        return self.classes_[np.argmax(logits, axis=1)]
