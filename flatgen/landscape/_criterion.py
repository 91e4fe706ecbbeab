"""The loss a training objective averages: cross-entropy, or any torch criterion.

flatgen's fast paths (the fused and patches evaluators, the analytic
Hessian) are written for the mean cross-entropy of logits with class-index
labels, the loss of every classifier it measures. Any other criterion with a
mean reduction (``nn.MSELoss`` of a regressor, sklearn's half squared error,
a custom module) goes through :class:`CriterionEvaluator` and automatic
differentiation: slower, the same everywhere else.
"""

import copy
import threading

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from ._parameters import ParameterLayout

__all__ = ["CriterionEvaluator", "HalfSquaredError", "SampleLoss", "sample_loss"]


class HalfSquaredError(nn.Module):
    """Half the mean squared error, scikit-learn's ``MLPRegressor`` loss.

    ``((output - target) ** 2).mean() / 2`` over every sample and output.

    Parameters
    ----------
    reduction : {'mean', 'none'}, default='mean'
        ``'none'`` returns the elementwise terms.
    """

    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, output, target):
        """Return the loss of ``output`` against ``target``.

        Parameters
        ----------
        output, target : torch.Tensor
            Of the same shape.

        Returns
        -------
        loss : torch.Tensor
            A scalar, or the elementwise terms when ``reduction='none'``.
        """
        terms = 0.5 * (output - target).square()
        return terms if self.reduction == "none" else terms.mean()


class SampleLoss:
    """Per-sample losses of a criterion whose mean is the training loss.

    Parameters
    ----------
    criterion : torch.nn.Module or None
        A loss module with ``reduction='mean'`` (read by its ``reduction``
        attribute, set to ``'none'`` on a private copy); None is the
        cross-entropy of logits with class-index labels.

    Attributes
    ----------
    classification : bool
        Whether labels are class indices (the cross-entropy); otherwise
        targets are floats of the network's dtype.
    name : str
        The criterion's name, for messages.
    """

    def __init__(self, criterion=None):
        self.criterion = criterion
        self.classification = criterion is None
        if criterion is None:
            self.name = "cross-entropy"
            self._terms = None
            return
        if not callable(criterion):
            raise TypeError(
                "criterion must be a torch loss module (e.g. nn.MSELoss()) or "
                f"None for the cross-entropy; got {type(criterion).__name__}."
            )
        self.name = type(criterion).__name__
        reduction = getattr(criterion, "reduction", None)
        if reduction not in ("mean", None):
            raise ValueError(
                f"The criterion {self.name} has reduction={reduction!r}; the "
                "training objective is a mean loss (reduction='mean')."
            )
        if reduction is None:
            raise ValueError(
                f"The criterion {self.name} has no 'reduction' attribute, so its "
                "per-sample losses cannot be read; use a torch loss module with "
                "reduction='mean'."
            )
        terms = copy.deepcopy(criterion)
        terms.reduction = "none"
        self._terms = terms

    def per_sample(self, outputs, targets):
        """Return the loss of every sample.

        Parameters
        ----------
        outputs : torch.Tensor of shape (n_samples, ...)
            The network's outputs.
        targets : torch.Tensor of shape (n_samples, ...)
            Labels or targets.

        Returns
        -------
        losses : torch.Tensor of shape (n_samples,)
            Each sample's loss; their mean is the criterion's mean loss.
        """
        if self._terms is None:
            return nn.functional.cross_entropy(outputs, targets, reduction="none")
        terms = self._terms(outputs, targets.reshape(outputs.shape))
        return terms.reshape(len(outputs), -1).mean(dim=1)

    def total(self, outputs, targets):
        """Return the sum of the per-sample losses (a scalar tensor)."""
        if self._terms is None:
            return nn.functional.cross_entropy(outputs, targets, reduction="sum")
        return self.per_sample(outputs, targets).sum()

    def targets(self, y, device, dtype):
        """Return ``y`` as a tensor of labels or targets for this loss."""
        y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
        if self.classification:
            return y.to(device, torch.int64)
        return y.to(device, dtype)


def sample_loss(criterion):
    """Return the :class:`SampleLoss` of ``criterion`` (None: cross-entropy)."""
    return criterion if isinstance(criterion, SampleLoss) else SampleLoss(criterion)


class CriterionEvaluator:
    """Mean loss of a criterion at many weight vectors, one vector at a time.

    The evaluator for losses off flatgen's cross-entropy fast paths: each
    vector's weights are put into a private copy of the module (eval mode)
    by ``functional_call``. Same interface as
    :class:`~flatgen.landscape.BatchedEvaluator`; the accuracy is NaN (a
    regression has none).

    Parameters
    ----------
    module : torch.nn.Module
        The network; copied, not modified.
    X : array-like or torch.Tensor
        Inputs shaped for the network.
    y : array-like or torch.Tensor
        Targets.
    loss : SampleLoss
        The criterion.
    copy_module : bool, default=True
        Whether to work on a deep copy of ``module``.
    """

    path = "criterion"
    chunk_size = 16

    def __init__(self, module, X, y, loss, *, copy_module=True):
        self._module = (copy.deepcopy(module) if copy_module else module).eval()
        self._lock = threading.Lock()
        self.layout = ParameterLayout.from_module(self._module)
        first = next(self._module.parameters())
        self.device, self._dtype = first.device, first.dtype
        X = torch.as_tensor(X).to(self.device)
        self._X = X.to(self._dtype) if X.is_floating_point() else X
        self._loss = loss
        self._y = loss.targets(y, self.device, self._dtype)
        self.n_samples = len(self._X)
        if self.n_samples == 0 or len(self._y) != self.n_samples:
            raise ValueError(
                f"X and y must hold the same positive number of samples; got "
                f"{self.n_samples} and {len(self._y)}."
            )

    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _losses(self, vectors):
        out = np.empty(len(vectors))
        with torch.no_grad():
            for i, theta in enumerate(vectors):
                params = self.layout.unflatten(theta.to(self.device, self._dtype))
                outputs = functional_call(self._module, params, (self._X,))
                total = self._loss.total(outputs, self._y)
                out[i] = float(total.double()) / self.n_samples
        return out

    def _result(self, vectors, accuracy=True):
        losses = self._losses(vectors)
        return losses, (np.full(len(losses), np.nan) if accuracy else None)

    def evaluate(self, thetas):
        """Mean loss and (NaN) accuracy at each weight vector.

        Parameters
        ----------
        thetas : torch.Tensor of shape (B, n_params)
            Flat weight vectors.

        Returns
        -------
        loss, accuracy : ndarray of shape (B,), dtype float64
            Mean loss over the samples; accuracy NaN (no classes).
        """
        thetas = torch.as_tensor(thetas)
        return self._result(thetas[None] if thetas.ndim == 1 else thetas)

    def loss(self, thetas):
        """Mean loss at each weight vector.

        Parameters
        ----------
        thetas : torch.Tensor of shape (B, n_params)
            Flat weight vectors.

        Returns
        -------
        loss : ndarray of shape (B,), dtype float64
            Mean loss over the samples.
        """
        return self.evaluate(thetas)[0]

    def _along(self, theta0, directions, rows, steps):
        theta0 = torch.as_tensor(theta0)
        rows = np.asarray(rows, dtype=np.int64)
        steps = np.asarray(steps, dtype=float)
        return (
            theta0 + float(step) * directions[int(row)]
            for row, step in zip(rows, steps)
        )

    def evaluate_along(self, theta0, directions, rows, steps):
        """Mean loss and (NaN) accuracy at ``theta0 + steps[i] * directions[rows[i]]``.

        Parameters
        ----------
        theta0, directions, rows, steps
            See :meth:`BatchedEvaluator.evaluate_along`.

        Returns
        -------
        loss, accuracy : ndarray of shape (B,), dtype float64
            Mean loss over the samples; accuracy NaN (no classes).
        """
        return self._result(list(self._along(theta0, directions, rows, steps)))

    def loss_along(self, theta0, directions, rows, steps):
        """Mean loss at ``theta0 + steps[i] * directions[rows[i]]``.

        Parameters
        ----------
        theta0, directions, rows, steps
            See :meth:`evaluate_along`.

        Returns
        -------
        loss : ndarray of shape (B,), dtype float64
            Mean loss over the samples.
        """
        return self.evaluate_along(theta0, directions, rows, steps)[0]

    def evaluate_combinations(self, theta0, directions, coefficients):
        """Mean loss and (NaN) accuracy at ``theta0 + coefficients[i] @ directions``.

        Parameters
        ----------
        theta0, directions, coefficients
            See :meth:`BatchedEvaluator.evaluate_combinations`.

        Returns
        -------
        loss, accuracy : ndarray of shape (B,), dtype float64
            Mean loss over the samples; accuracy NaN (no classes).
        """
        theta0 = torch.as_tensor(theta0)
        directions = torch.as_tensor(directions).to(theta0.dtype)
        coefficients = torch.as_tensor(coefficients, dtype=theta0.dtype)
        return self._result([theta0 + c @ directions for c in coefficients])
