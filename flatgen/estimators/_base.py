"""Shared machinery of the poisoned classifiers."""

from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, column_or_1d

from .._torch_utils import resolve_device, seeded_torch, torch_threads
from ..networks import ACTIVATIONS
from ..poison import POISON_LOSSES, JitterSource, SamplerSource
from ._fit_check import training_fit_report, warn_if_unfitted
from ._training import (
    PoisonTrainer,
    PoisonTrainingNet,
    ProgressBar,
    ValidationStopping,
)
from ._weights import canonical_training_set

_SOLVERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}
_INFERENCE_CHUNK = 256


def _check_layer_sizes(name, sizes):
    sizes = tuple(np.atleast_1d(sizes).tolist()) if sizes is not None else ()
    if not all(isinstance(s, Integral) and s >= 1 for s in sizes):
        raise ValueError(f"{name} must hold positive integers. Got {sizes!r} instead.")
    return tuple(int(s) for s in sizes)


@dataclass
class TrainingRun:
    """A fit prepared by :meth:`~flatgen.PoisonedMLPClassifier.start_training`.

    Attributes
    ----------
    module : torch.nn.Module
        The initialized (or, with ``warm_start``, previous) network.
    trainer : PoisonTrainer
        Batches, poison draws, step sizes and the objective of every step.
    solver : type
        The torch optimizer class ``fit`` uses.
    optimizer_settings : dict
        Its settings other than ``lr`` (prefixed ``optimizer__``).
    device : torch.device
        Where the data and the network live.
    warm : bool
        Whether the run continues a previous fit.
    """

    module: torch.nn.Module
    trainer: object
    solver: type
    optimizer_settings: dict
    device: torch.device
    warm: bool


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
        "poison_labels": [StrOptions({"vote", "source"})],
        "poison_neighbors": [Interval(Integral, 1, None, closed="left")],
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
        "warm_start": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
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

    def _poison_source(self, X, y, weight, rng, generator, points_per_step, device):
        if self.poison_source == "jitter":
            return JitterSource(
                X,
                y,
                weight,
                len(self.classes_),
                points_per_step,
                self.poison_bandwidth,
                generator,
                labels=self.poison_labels,
                n_neighbors=self.poison_neighbors,
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
    def fit(self, X, y, sample_weight=None):
        """Train the network on ``X, y`` with the poison objective.

        The loss is ``CE(X, y) + poison_factor * P(poison set)`` where the
        poison set is drawn anew at every step from ``poison_source`` and ``P``
        rewards wrong predictions on it. Every point passed here is a
        training point, fitted to its own label.

        The fit sees the training data as a weighted set: identical rows are
        merged (their weights summed), rows of weight 0 are dropped and rows
        are taken in one canonical order. So a weight of ``k`` trains exactly
        as ``k`` copies of the row, and the order of the rows does not change
        the result.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs (see the class docstring for image shapes).
        y : array-like of shape (n_samples,)
            Class labels: any values, at least two distinct.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each sample in the training loss (a
            weighted mean of the cross-entropies); None weighs all equally.
            The ``'jitter'`` poison source draws its source points in
            proportion to these weights too. Classes whose samples all have
            weight 0 are not learned (not in ``classes_``).

        Returns
        -------
        self : object
            The fitted classifier.
        """
        prepared = self._fit_setup(X, y, sample_weight)
        with torch_threads(self.n_threads):
            self._fit_network(*prepared)
        return self

    def start_training(self, X, y, sample_weight=None):
        """Prepare a fit without running it: the network, its trainer and optimizer.

        The seam for tools that train several classifiers together
        (:class:`~flatgen.BatchedPoisonFitter`): the same parameter checks,
        data preparation, seeds, initialization and poison source as
        :meth:`fit`. Drive the returned run's ``trainer`` on its ``module``,
        then record the result with :meth:`end_training`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs.
        y : array-like of shape (n_samples,)
            Class labels.
        sample_weight : array-like of shape (n_samples,), default=None
            As in :meth:`fit`.

        Returns
        -------
        run : TrainingRun
            The network and how :meth:`fit` would train it.

        Raises
        ------
        ValueError
            If the classifier holds out a validation set (``early_stopping``),
            which only :meth:`fit` runs.
        """
        self._validate_params()
        X, y, w, validation, device, seeds, rng, warm = self._fit_setup(
            X, y, sample_weight
        )
        if validation is not None:
            raise ValueError(
                "start_training does not run early stopping (its validation "
                "checks run inside fit); set early_stopping=False."
            )
        module, solver, settings, trainer = self._training_parts(
            X, y, w, device, seeds, rng, warm
        )
        return TrainingRun(module, trainer, solver, settings, device, warm)

    def end_training(self, run, loss_curve, n_polish_steps):
        """Record a run driven outside :meth:`fit` as this classifier's fit.

        Sets every fitted attribute as :meth:`fit` does (and warns as it
        does when the training set is not fitted).

        Parameters
        ----------
        run : TrainingRun
            From :meth:`start_training`, its module trained.
        loss_curve : sequence of float
            Mean training loss of each block of steps, as ``loss_curve_``.
        n_polish_steps : int
            Polish steps taken after training (``n_polish_iter_``).

        Returns
        -------
        self : object
            The fitted classifier.
        """
        net = self._make_net(
            run.module,
            run.trainer,
            run.solver,
            run.optimizer_settings,
            run.device,
            None,
        )
        net.initialize()
        for block, loss in enumerate(loss_curve, start=1):
            net.history.new_epoch()
            net.history.record("epoch", block)
            net.history.record("train_loss", loss)
        net.trainer = None  # the net keeps no training data
        self._record_fit(net, run.trainer, n_polish_steps, None, run.warm)
        return self

    def _fit_setup(self, X, y, sample_weight):
        """Validate the data; return the arguments of :meth:`_fit_network`."""
        warm = bool(self.warm_start) and hasattr(self, "net_")
        X = self._prepare_X(X, reset=not warm)
        y = self._validate_y(y, n_samples=len(X))
        sample_weight = _check_sample_weight(
            sample_weight, X, dtype=np.float64, ensure_non_negative=True
        )
        positive = sample_weight > 0
        classes, y_encoded = np.unique(y[positive], return_inverse=True)
        if len(classes) < 2:
            raise ValueError(
                "The classifier needs samples of at least 2 classes in y (with "
                f"positive sample_weight); got 1 class: {classes[0]!r}."
            )
        if warm and not np.array_equal(classes, self.classes_):
            raise ValueError(
                "warm_start can only continue a fit on the same classes: the "
                f"previous fit saw {self.classes_!r}, this one {classes!r}."
            )
        if warm:
            self._check_same_architecture()
        self.classes_ = classes
        X_rows, y_rows, w_rows = canonical_training_set(
            X[positive], y_encoded, sample_weight[positive]
        )
        device = resolve_device(self.device)
        rng = check_random_state(self.random_state)
        seeds = rng.randint(np.iinfo(np.int32).max, size=3)
        validation = None
        if self.early_stopping:
            X_rows, y_rows, w_rows, validation = self._hold_out(
                X_rows, y_rows, w_rows, rng
            )
        return X_rows, y_rows, w_rows, validation, device, seeds, rng, warm

    def _check_same_architecture(self):
        """Refuse to warm-start a network whose architecture was changed since.

        ``set_params(hidden_layer_sizes=...)`` or ``activation=...`` after a
        fit describes another network than ``module_``; continuing to train
        ``module_`` would silently ignore the new values.
        """
        # Built on the meta device: shapes and layer types only, no weights
        # drawn (the global torch RNG is left alone).
        with torch.device("meta"):
            wanted = self._build_module(len(self.classes_))
        if repr(wanted) != repr(self.module_):
            raise ValueError(
                "warm_start continues training the fitted network, but the "
                "architecture parameters changed since it was fitted: the "
                f"parameters now describe\n{wanted}\nwhile the fitted network "
                f"is\n{self.module_}\nSet warm_start=False to train the new "
                "architecture from scratch."
            )

    def _hold_out(self, X, y, w, rng):
        """Split the validation set off for early stopping (stratified)."""
        counts = np.bincount(y)
        stratify = y if counts.min() >= 2 else None
        try:
            train, valid = train_test_split(
                np.arange(len(y)),
                test_size=self.validation_fraction,
                random_state=rng,
                stratify=stratify,
            )
        except ValueError as exc:
            raise ValueError(
                f"early_stopping cannot hold out validation_fraction="
                f"{self.validation_fraction} of {len(y)} distinct training "
                f"rows: {exc}"
            ) from exc
        train, valid = np.sort(train), np.sort(valid)
        if len(np.unique(y[train])) < len(counts):
            raise ValueError(
                "early_stopping held out every sample of a class; lower "
                "validation_fraction or pass more samples."
            )
        return X[train], y[train], w[train], (X[valid], y[valid], w[valid])

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

    def _training_parts(self, X, y_encoded, weight, device, seeds, rng, warm):
        """Return the module (initialized or warm), optimizer and trainer of a fit."""
        init_seed, poison_seed, order_seed = (int(s) for s in seeds)
        n_classes = len(self.classes_)
        if warm:
            module = self.net_.module_
        else:
            with seeded_torch(init_seed):
                module = self._build_module(n_classes)
        solver, optimizer_settings = self._optimizer_settings()
        X_t = torch.as_tensor(X, device=device)
        y_t = torch.as_tensor(y_encoded, dtype=torch.int64, device=device)
        w_t = torch.as_tensor(weight, dtype=X_t.dtype, device=device)

        def generator(seed):
            return torch.Generator(device=device).manual_seed(int(seed))

        batch_size = (
            len(X_t) if self.batch_size is None else min(self.batch_size, len(X_t))
        )
        poison_source = None
        if self.poison_factor > 0:
            poison_source = self._poison_source(
                X_t,
                y_t,
                w_t,
                rng,
                generator(poison_seed),
                self.poison_size or 2 * batch_size,
                device,
            )
        trainer = PoisonTrainer(
            X_t,
            y_t,
            w_t,
            n_epochs=self.max_iter,
            batch_size=self.batch_size,
            poison_factor=self.poison_factor,
            poison_kind=self.poison_loss,
            poison_source=poison_source,
            learning_rate=self.learning_rate,
            learning_rate_init=self.learning_rate_init,
            max_grad_norm=self.max_grad_norm,
            generator=generator(order_seed),
            n_classes=n_classes,
        )
        return module, solver, optimizer_settings, trainer

    def _make_net(self, module, trainer, solver, optimizer_settings, device, stopping):
        """Return the skorch net that drives ``trainer`` on ``module``."""
        callbacks = [("progress_bar", ProgressBar(disable=not self.verbose))]
        if stopping is not None:
            callbacks.append(("validation_stopping", stopping))
        return PoisonTrainingNet(
            module=module,
            criterion=torch.nn.CrossEntropyLoss,
            optimizer=solver,
            lr=self.learning_rate_init,
            max_epochs=trainer.n_blocks,
            batch_size=trainer.batch_size,
            iterator_valid__batch_size=_INFERENCE_CHUNK,
            train_split=None,
            callbacks=callbacks + list(self.callbacks or []),
            classes=list(range(len(self.classes_))),
            verbose=0,
            device=str(device),
            trainer=trainer,
            **optimizer_settings,
        )

    def _fit_network(self, X, y_encoded, weight, validation, device, seeds, rng, warm):
        module, solver, optimizer_settings, trainer = self._training_parts(
            X, y_encoded, weight, device, seeds, rng, warm
        )
        stopping = None
        if validation is not None:
            stopping = ValidationStopping(
                torch.as_tensor(validation[0], device=device),
                torch.as_tensor(validation[1], dtype=torch.int64, device=device),
                torch.as_tensor(validation[2], dtype=torch.float64, device=device),
                self.n_iter_no_change,
                self.tol,
            )
        net = self._make_net(
            module, trainer, solver, optimizer_settings, device, stopping
        )
        try:
            net.initialize()
            net.partial_fit(trainer.X, trainer.y)
            if trainer.interrupted:
                raise KeyboardInterrupt
            n_polish = trainer.polish(net.module_, self.max_polish_iter)
        finally:
            net.trainer = None  # the net keeps no training data
        self._record_fit(net, trainer, n_polish, stopping, warm)

    def _record_fit(self, net, trainer, n_polish, stopping, warm):
        """Set the fitted attributes; warn when the training set is not fitted."""
        X_t, y_t, w_t = trainer.X, trainer.y, trainer.sample_weight
        n_classes = len(self.classes_)
        net.module_.eval()
        previous_iter = self.n_iter_ if warm else 0
        previous_curve = self.loss_curve_ if warm else np.empty(0)
        self.net_ = net
        self.n_polish_iter_ = n_polish
        self.n_iter_ = previous_iter + trainer.steps_done // trainer.steps_per_epoch
        self.loss_curve_ = np.concatenate(
            [previous_curve, np.asarray(net.history[:, "train_loss"], dtype=float)]
        )
        if stopping is not None:
            self.validation_scores_ = np.asarray(
                net.history[:, "valid_acc"], dtype=float
            )
            self.best_validation_score_ = stopping.best_score_
            self.stopped_early_ = stopping.stopped_early_
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
            self.stopped_early_ = False
        accuracy, spread, n_predicted = training_fit_report(
            net.module_, X_t, y_t, n_classes, weight=w_t
        )
        self.train_accuracy_ = accuracy
        self.fitted_training_set_ = accuracy == 1.0
        self.collapsed_ = warn_if_unfitted(
            type(self).__name__,
            accuracy,
            spread,
            n_predicted,
            n_classes,
            self.poison_factor,
            stopped_early=self.stopped_early_,
        )

    # -- the trained network, for analyzers --------------------------------
    @property
    def module_(self):
        """The trained torch network (``net_.module_``), in eval mode.

        Analyzers measure a deep copy of it; change it in place only if you
        mean to change the classifier.
        """
        check_is_fitted(self)
        return self.net_.module_

    def network_inputs(self, X):
        """Return ``X`` as the network receives it in ``predict``.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Inputs, as passed to ``predict``.

        Returns
        -------
        X_network : ndarray of float32
            Validated inputs, shaped for :attr:`module_` (images keep their
            channel and pixel axes).
        """
        check_is_fitted(self)
        return self._prepare_X(X, reset=False)

    def encode_labels(self, y):
        """Return the index of each label in ``classes_`` (the network's targets).

        Parameters
        ----------
        y : array-like of shape (n_samples,)
            Labels from ``classes_``.

        Returns
        -------
        codes : ndarray of int64, shape (n_samples,)
            Class indices, the targets of the network's cross-entropy.

        Raises
        ------
        ValueError
            If ``y`` holds a label the classifier was not fitted on.
        """
        check_is_fitted(self)
        y = column_or_1d(y)
        codes = np.clip(np.searchsorted(self.classes_, y), 0, len(self.classes_) - 1)
        unknown = self.classes_[codes] != y
        if np.any(unknown):
            raise ValueError(
                "y holds labels the estimator was not fitted on: "
                f"{np.unique(y[unknown])[:5].tolist()}; known classes are "
                f"{self.classes_.tolist()}."
            )
        return codes.astype(np.int64)

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
