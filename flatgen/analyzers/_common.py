"""Hyperparameters and computation shared by the flatness analyzers."""

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils._param_validation import Interval, StrOptions

from ..landscape import TrainingObjective
from ._radii import radii_along_directions
from ._seeds import analysis_seeds


class FlatnessAnalyzer(BaseEstimator):
    """Base class: analyzers measure a fitted estimator, they are not fitted models.

    ``fit(estimator, X, y)`` computes and stores results in ``*_``
    attributes; calling the analyzer, ``analyzer(estimator, X, y)``,
    returns its ``score_`` computed on a fresh clone, so the analyzer can be
    passed to ``GridSearchCV(scoring=...)``. Every flatness scorer points the
    same way, **larger is flatter**: measures of sharpness (curvature,
    sharpness, PAC-Bayes flatness, norms) score their negative, as
    scikit-learn's ``neg_*`` scorers do, so a search picks the flattest
    model whichever analyzer scores it.
    """

    _parameter_constraints = {
        "n_directions": [Interval(Integral, 1, None, closed="left")],
        "cutoff_type": [StrOptions({"absolute", "relative"})],
        "max_radius": [Interval(Real, 0, None, closed="neither")],
        "include_bias": ["boolean"],
        "rtol": [Interval(Real, 0, 1, closed="neither")],
        "random_state": ["random_state"],
        "n_jobs": [Integral, None],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "verbose": ["verbose"],
    }

    def __call__(self, estimator, X, y):
        """Return the headline number for ``estimator`` on ``X, y``.

        Parameters
        ----------
        estimator : fitted network model
            A flatgen classifier, a skorch net, an sklearn ``MLPClassifier``, a
            ``torch.nn.Module`` returning logits, or a Pipeline ending in one
            (see :ref:`any-model`).
            It is not modified.
        X : array-like of shape (n_samples, ...)
            Data of the loss (the training set, for the paper's basins).
        y : array-like of shape (n_samples,)
            Labels.

        Returns
        -------
        score : float
            The analyzer's ``score_``: larger is flatter.
        """
        return float(clone(self).fit(estimator, X, y).score_)

    def _absolute_cutoffs(self, cutoffs, loss0):
        try:
            values = np.atleast_1d(np.asarray(cutoffs, dtype=float))
        except (TypeError, ValueError):
            values = None
        if (
            values is None
            or values.ndim != 1
            or len(values) == 0
            or not np.all(np.isfinite(values) & (values > 0))
        ):
            raise ValueError(
                "cutoff must be a positive finite number or a non-empty list of "
                f"them. Got {cutoffs!r} instead."
            )
        cutoffs = values
        absolute = cutoffs * loss0 if self.cutoff_type == "relative" else cutoffs
        if self.cutoff_type == "relative" and not np.all(cutoffs > 1):
            raise ValueError(
                "A relative cutoff is a multiple of the loss at the minimum and must "
                f"exceed 1. Got {cutoffs.tolist()!r} instead."
            )
        too_low = absolute <= loss0
        if np.any(too_low):
            raise ValueError(
                f"The training loss at the minimum ({loss0:.4g}) already reaches "
                f"cutoff {absolute[too_low][0]:.4g}: no basin to measure. Use a "
                "larger cutoff, cutoff_type='relative', or check that the estimator "
                "was fitted on this X, y."
            )
        return absolute

    def _prepare(self, estimator, X, y, cutoffs):
        """Landscape of the estimator; sets the loss, accuracy and cutoffs."""
        landscape = TrainingObjective.from_model(
            estimator, X, y, include_bias=self.include_bias, n_threads=self.n_threads
        )
        with landscape.threads():
            loss0, accuracy0 = landscape.base_loss()
        if not np.isfinite(loss0):
            raise ValueError(
                f"The training loss of the estimator is not finite ({loss0}); "
                "flatness cannot be measured."
            )
        self.base_loss_, self.base_accuracy_ = loss0, accuracy0
        self.cutoffs_ = self._absolute_cutoffs(cutoffs, loss0)
        return landscape

    def _measure(self, estimator, X, y, cutoffs):
        """Radii for ``cutoffs`` along seeded directions; sets common attributes.

        Also returns the landscape and the direction seed, for follow-up
        computations on the same directions.
        """
        landscape = self._prepare(estimator, X, y, cutoffs)
        self.n_dims_ = landscape.n_perturbed
        (seed,) = analysis_seeds(self.random_state)
        radii, capped, self.n_evaluations_ = radii_along_directions(
            landscape,
            n_directions=self.n_directions,
            seed=seed,
            n_jobs=self.n_jobs,
            verbose=self.verbose,
            cutoffs=self.cutoffs_.tolist(),
            loss0=self.base_loss_,
            max_radius=float(self.max_radius),
            rtol=float(self.rtol),
        )
        return radii, capped, landscape, seed
