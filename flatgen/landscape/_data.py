"""Training data given as batches: a DataLoader, or any re-iterable of pairs.

The loss landscape is that of the mean loss over the *whole* training set.
When the set does not fit in one pass, it comes as batches of ``(X, y)``
(a ``torch.utils.data.DataLoader``, a list of pairs, ...): every product
then accumulates the batches' sums and divides by the number of samples, so
memory is bounded by one batch, and the result is the full-data quantity,
not one batch's noisy estimate.
"""

import copy
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from ._criterion import CriterionEvaluator
from ._evaluate import BatchedEvaluator

__all__ = ["BatchesEvaluator", "DataBatches", "batches_loss", "is_batches"]


def is_batches(X):
    """Tell whether ``X`` is data given as batches rather than one array.

    Parameters
    ----------
    X : object
        Training inputs as passed by a user.

    Returns
    -------
    batches : bool
        True for a ``DataLoader``, a :class:`DataBatches` or another iterable
        whose items are ``(X, y)`` pairs; False for arrays, tensors and
        lists of numbers.
    """
    if isinstance(X, (DataBatches, torch.utils.data.DataLoader)):
        return True
    if isinstance(X, (np.ndarray, torch.Tensor, str, bytes)) or not isinstance(
        X, Iterable
    ):
        return False
    if isinstance(X, Iterator):
        return True  # refused by DataBatches with the reason
    if isinstance(X, (list, tuple)):
        first = X[0] if len(X) else None
    elif isinstance(X, dict):
        return False
    else:
        # Another re-iterable (a custom batch source): look at its first item.
        try:
            first = next(iter(X), None)
        except Exception:  # noqa: BLE001 - not iterable as batches
            return False
    return (
        isinstance(first, (list, tuple))
        and len(first) == 2
        and all(isinstance(part, (np.ndarray, torch.Tensor)) for part in first)
    )


class DataBatches:
    """A re-iterable source of ``(X, y)`` batches with a known sample count.

    Parameters
    ----------
    batches : DataLoader or iterable of (X, y) pairs
        Each item a pair of inputs and integer labels (tensors or arrays) of
        equal length. Iterated once here to count the samples and check the
        pairs, and once per pass afterwards: it must be re-iterable (a
        DataLoader, a list), not a generator. A DataLoader that shuffles is
        fine (sums do not depend on the order, up to rounding).
    transform : callable, default=None
        Applied to every batch's inputs (e.g. a model's own preparation).
    encode : callable, default=None
        Applied to every batch's labels (e.g. a model's label encoding).
    classification : bool, default=True
        Whether labels are class indices (checked, yielded as int64);
        otherwise they are regression targets, yielded as they come.

    Attributes
    ----------
    n_samples : int
        Number of samples over all batches.
    n_batches : int
        Number of batches in one pass.
    """

    def __init__(self, batches, transform=None, encode=None, classification=True):
        if isinstance(batches, DataBatches):
            transform = transform or batches.transform
            encode = encode or batches.encode
            classification = classification and batches.classification
            batches = batches.batches
        if getattr(batches, "drop_last", False):
            raise ValueError(
                "The DataLoader drops its last incomplete batch (drop_last=True): "
                "every pass would leave samples out (other ones when it shuffles), "
                "so the loss would not be the full training set's. Use "
                "drop_last=False."
            )
        if isinstance(batches, Iterator):
            raise TypeError(
                "Training data given as batches must be re-iterable (a DataLoader "
                "or a list of (X, y) pairs): every measurement passes over it "
                f"several times, and a {type(batches).__name__} is consumed by "
                "the first pass."
            )
        self.batches = batches
        self.classification = bool(classification)
        self.transform = transform
        self.encode = encode
        self.n_samples = None
        n_samples = n_batches = 0
        for X, y in self:
            n_samples += len(y)
            n_batches += 1
        if n_samples == 0:
            raise ValueError("The training data batches hold no samples.")
        self.n_samples, self.n_batches = n_samples, n_batches

    def __iter__(self):
        """Yield ``(X, y)`` of each batch as tensors (``y`` as int64).

        A pass that yields another number of samples than the first raises
        ValueError at its end: the mean would be over another set.
        """
        seen = 0
        for index, item in enumerate(self.batches):
            if not isinstance(item, (list, tuple)) or len(item) != 2:
                raise ValueError(
                    f"Batch {index} of the training data is not an (X, y) pair; "
                    f"got {type(item).__name__}. Batches must hold inputs and "
                    "labels."
                )
            X, y = item
            if self.transform is not None:
                X = self.transform(X)
            if self.encode is not None:
                y = self.encode(y.cpu().numpy() if isinstance(y, torch.Tensor) else y)
            X = torch.as_tensor(X)
            y = torch.as_tensor(y)
            if not self.classification:
                if len(y) != len(X):
                    raise ValueError(
                        f"Batch {index}: y must hold one target per sample; got "
                        f"{len(y)} for {len(X)} inputs."
                    )
                seen += len(y)
                yield X, y
                continue
            if y.ndim != 1 or len(y) != len(X):
                raise ValueError(
                    f"Batch {index}: y must be 1-D with one label per sample; got "
                    f"shape {tuple(y.shape)} for {len(X)} inputs."
                )
            if y.dtype.is_floating_point:
                if torch.any(y != torch.round(y)):
                    raise ValueError(
                        f"Batch {index}: labels must be class indices; got "
                        f"non-integer values."
                    )
            seen += len(y)
            yield X, y.to(torch.int64)
        if self.n_samples is not None and seen != self.n_samples:
            raise ValueError(
                f"A pass over the training batches gave {seen} samples, the first "
                f"gave {self.n_samples}: the data changed between passes, and a "
                "mean over them would not be one loss."
            )


def batches_loss(module, batches):
    """Mean cross-entropy and accuracy of ``module`` over all the batches.

    Parameters
    ----------
    module : torch.nn.Module
        Network returning logits; evaluated as it is (put it in eval mode).
    batches : DataBatches
        The training data.

    Returns
    -------
    loss : float
        Mean cross-entropy over every sample of every batch.
    accuracy : float
        Share of the samples whose largest logit is their label's.
    """
    total, hits = 0.0, 0
    parameter = next(module.parameters())
    with torch.no_grad():
        for X, y in batches:
            X = X.to(parameter.device)
            X = X.to(parameter.dtype) if X.is_floating_point() else X
            logits = module(X)
            y = y.to(parameter.device)
            loss = torch.nn.functional.cross_entropy(logits, y, reduction="sum")
            total += float(loss.double())
            hits += int((logits.argmax(dim=1) == y).sum())
    return total / batches.n_samples, hits / batches.n_samples


class BatchesEvaluator:
    """:class:`BatchedEvaluator` over training data given as batches.

    Every call passes once over the batches, evaluates all the weight
    vectors on each batch (with the fast path a
    :class:`BatchedEvaluator` chooses for that batch) and returns the
    sample-weighted means: the full-data loss and accuracy, with memory
    bounded by one batch's activations. The interface is the evaluator's
    (``evaluate``, ``loss``, ``evaluate_along``, ``loss_along``,
    ``evaluate_combinations``), so every measurement runs on either.

    Parameters
    ----------
    module : torch.nn.Module
        Network mapping a batch's inputs to logits; copied, not modified.
    batches : DataBatches
        The training data.
    loss : SampleLoss, default=None
        The criterion; None (or the cross-entropy) evaluates each batch
        with a :class:`BatchedEvaluator`, any other one with a
        :class:`CriterionEvaluator`.
    **options
        Passed to each batch's :class:`BatchedEvaluator`
        (``max_batch_bytes``, ``chunk_size``, ``path``).

    Attributes
    ----------
    layout : ParameterLayout
    device : torch.device
    n_samples : int
    chunk_size : int
        The first batch's chunk size: how many vectors one chunk holds.
    """

    def __init__(self, module, batches, loss=None, **options):
        self._module = copy.deepcopy(module).eval()
        self.batches = batches
        self.n_samples = batches.n_samples
        self._loss = loss
        self._options = options
        X, y = next(iter(batches))
        first = self._batch_evaluator(X, y)
        self.layout, self.device = first.layout, first.device
        self.chunk_size, self.path = first.chunk_size, first.path

    def _batch_evaluator(self, X, y):
        if self._loss is not None and not self._loss.classification:
            return CriterionEvaluator(self._module, X, y, self._loss, copy_module=False)
        return BatchedEvaluator(self._module, X, y, copy_module=False, **self._options)

    def _accumulate(self, call):
        """Sample-weighted sums of ``call(evaluator)`` over the batches.

        ``call`` returns a batch's (loss, accuracy or None).
        """
        loss = accuracy = None
        for X, y in self.batches:
            evaluator = self._batch_evaluator(X, y)
            batch_loss, batch_accuracy = call(evaluator)
            weight = evaluator.n_samples / self.n_samples
            loss = batch_loss * weight if loss is None else loss + batch_loss * weight
            if batch_accuracy is not None:
                batch_accuracy = batch_accuracy * weight
                accuracy = (
                    batch_accuracy if accuracy is None else accuracy + batch_accuracy
                )
        return loss, accuracy

    def evaluate(self, thetas):
        """Mean loss and accuracy over all batches at each vector.

        Parameters
        ----------
        thetas : torch.Tensor of shape (B, n_params)
            Flat weight vectors.

        Returns
        -------
        loss, accuracy : ndarray of shape (B,), dtype float64
            Sample-weighted means over the batches.
        """
        return self._accumulate(lambda evaluator: evaluator.evaluate(thetas))

    def loss(self, thetas):
        """Mean loss over all batches at each vector.

        Parameters
        ----------
        thetas : torch.Tensor of shape (B, n_params)
            Flat weight vectors.

        Returns
        -------
        loss : ndarray of shape (B,), dtype float64
            Sample-weighted mean over the batches.
        """
        return self._accumulate(lambda evaluator: (evaluator.loss(thetas), None))[0]

    def evaluate_along(self, theta0, directions, rows, steps):
        """Mean loss and accuracy at ``theta0 + steps[i] * directions[rows[i]]``.

        Parameters
        ----------
        theta0, directions, rows, steps
            See :meth:`BatchedEvaluator.evaluate_along`.

        Returns
        -------
        loss, accuracy : ndarray of shape (B,), dtype float64
            See :meth:`BatchedEvaluator.evaluate_along`.
        """
        return self._accumulate(
            lambda evaluator: evaluator.evaluate_along(theta0, directions, rows, steps)
        )

    def loss_along(self, theta0, directions, rows, steps):
        """Mean loss alone at ``theta0 + steps[i] * directions[rows[i]]``.

        Parameters
        ----------
        theta0, directions, rows, steps
            See :meth:`evaluate_along`.

        Returns
        -------
        loss : ndarray of shape (B,), dtype float64
            Sample-weighted mean over the batches.
        """
        return self._accumulate(
            lambda evaluator: (
                evaluator.loss_along(theta0, directions, rows, steps),
                None,
            )
        )[0]

    def evaluate_combinations(self, theta0, directions, coefficients):
        """Mean loss and accuracy at ``theta0 + coefficients[i] @ directions``.

        Parameters
        ----------
        theta0, directions, coefficients
            See :meth:`BatchedEvaluator.evaluate_combinations`.

        Returns
        -------
        loss, accuracy : ndarray of shape (B,), dtype float64
            Sample-weighted means over the batches.
        """
        return self._accumulate(
            lambda evaluator: evaluator.evaluate_combinations(
                theta0, directions, coefficients
            )
        )
