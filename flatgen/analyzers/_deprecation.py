"""Renamed hyperparameters: the former name still works, with a FutureWarning."""

import warnings

from sklearn.utils._param_validation import Hidden, StrOptions

# Default of a former name: never a valid value of the new one.
DEPRECATED = "deprecated"


def former_name(constraints):
    """Return the constraints of a former name: the new one's, or the sentinel."""
    return [*constraints, Hidden(StrOptions({DEPRECATED}))]


def renamed(estimator, new, old):
    """Return the value of ``new``, or of its former name ``old`` if that was set.

    Parameters
    ----------
    estimator : BaseEstimator
        The estimator whose hyperparameters are read.
    new, old : str
        The current name and the former one.

    Returns
    -------
    value : object
        ``getattr(estimator, old)`` with a FutureWarning when the former name
        was set, else ``getattr(estimator, new)``.
    """
    value = getattr(estimator, old)
    if isinstance(value, str) and value == DEPRECATED:
        return getattr(estimator, new)
    warnings.warn(
        f"{type(estimator).__name__}'s '{old}' parameter was renamed '{new}' "
        f"(one name for the same setting across flatgen's analyzers); got "
        f"{old}={value!r}. '{old}' will be removed in a later release.",
        FutureWarning,
        stacklevel=3,
    )
    return value
