"""Check after a fit that the network reached what the method assumes.

The paper compares minima that fit their training set perfectly; a network
that does not, or one that collapsed to a (near-)constant output (the poison
term can outweigh the training loss where classes overlap), would make every
flatness number misleading. The check is recorded in fitted attributes and
raised as a ConvergenceWarning, never silently passed.
"""

import warnings

import torch
from sklearn.exceptions import ConvergenceWarning

# A model whose class probabilities vary by less than this over the whole
# training set answers (almost) the same for every input.
COLLAPSE_SPREAD = 0.01


def training_fit_report(module, X, y_encoded, n_classes, weight=None, chunk=256):
    """Training accuracy and output spread of a trained module.

    Parameters
    ----------
    module : torch.nn.Module
        Trained network, in eval mode.
    X : torch.Tensor
        Training inputs on the module's device.
    y_encoded : torch.Tensor of int64
        Encoded labels.
    n_classes : int
        Number of classes.
    weight : torch.Tensor or None, default=None
        Sample weights of the rows; None weighs them equally.
    chunk : int, default=256
        Samples per forward pass.

    Returns
    -------
    accuracy : float
        Fraction of training points predicted right.
    spread : float
        Largest range, over classes, of the predicted probability across the
        training points.
    n_predicted_classes : int
        Number of distinct predicted classes.
    """
    with torch.no_grad():
        proba = torch.cat(
            [
                torch.softmax(module(X[start : start + chunk]).double(), dim=1)
                for start in range(0, len(X), chunk)
            ]
        )
    predicted = proba.argmax(dim=1)
    correct = (predicted == y_encoded).double()
    if weight is None:
        accuracy = float(correct.mean())
    else:
        weight = weight.double()
        accuracy = float((correct * weight).sum() / weight.sum())
    spread = float((proba.max(dim=0).values - proba.min(dim=0).values).max())
    return accuracy, spread, int(len(torch.unique(predicted)))


def warn_if_unfitted(
    name,
    accuracy,
    spread,
    n_predicted,
    n_classes,
    poison_factor,
    stopped_early=False,
):
    """Raise a ConvergenceWarning that says what went wrong and what to try.

    ``stopped_early`` says early stopping ended the fit (and then kept the
    weights of its best held-out block), which the advice names first.

    Returns
    -------
    collapsed : bool
        Whether the model is (near-)constant on its training set.
    """
    collapsed = spread < COLLAPSE_SPREAD or (n_predicted == 1 and n_classes > 1)
    if collapsed:
        advice = (
            "The poison term outweighs the training loss: lower poison_factor, "
            "or draw the poison set from the true distribution (poison_source)."
            if poison_factor > 0
            else "Raise max_iter or learning_rate_init, or check the data."
        )
        warnings.warn(
            f"{name} collapsed to a (near-)constant model: over the training set "
            f"its class probabilities vary by at most {spread:.3g} and it predicts "
            f"{n_predicted} of {n_classes} classes ({accuracy:.1%} training "
            f"accuracy). Its flatness and margins describe no real fit. {advice}",
            ConvergenceWarning,
            stacklevel=5,
        )
    elif accuracy < 1.0:
        early = (
            "Early stopping ended the fit and kept the weights of its best "
            "held-out block: set early_stopping=False (or raise "
            "n_iter_no_change), or "
            if stopped_early
            else ""
        )
        warnings.warn(
            f"{name} fits {accuracy:.1%} of its training set, not all of it; the "
            "method compares minima that fit the training set perfectly, so its "
            f"flatness is not comparable with theirs. {early}"
            + ("raise" if early else "Raise")
            + " max_iter or max_polish_iter"
            + (", or lower poison_factor." if poison_factor > 0 else ".")
            + " Points of different classes at the same input cannot all be fitted.",
            ConvergenceWarning,
            stacklevel=5,
        )
    return collapsed


__all__ = ["COLLAPSE_SPREAD", "training_fit_report", "warn_if_unfitted"]
