"""Data sets of the paper's experiments and samplers of their true distributions."""

from numbers import Integral, Real

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, validate_params

__all__ = ["make_spirals", "SpiralSampler"]

# The curve parameter runs to 600 degrees: a bit under two turns per arm.
_MAX_ANGLE = np.deg2rad(600.0)
_ARM_SCALE = 1.5


def _spiral_arm(n_points, rng):
    # sqrt(U) spreads points evenly along the arm's length, not its angle.
    t = np.sqrt(rng.uniform(size=n_points)) * _MAX_ANGLE
    return np.column_stack([-_ARM_SCALE * t * np.cos(t), _ARM_SCALE * t * np.sin(t)])


@validate_params(
    {
        "n_samples": [Interval(Integral, 1, None, closed="left")],
        "noise": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_spirals(n_samples=400, *, noise=0.5, random_state=None):
    """Generate the paper's two interleaved spirals (the "swiss roll").

    Class 0 lies along the curve ``t -> (-1.5 t cos t, 1.5 t sin t)`` with
    ``t = sqrt(U) * 600 degrees``; class 1 is its point reflection through the
    origin. Isotropic Gaussian noise of standard deviation ``noise`` is added
    to every point. The classes alternate in rings only a few units apart, so
    a classifier must follow the arms to generalize.

    Parameters
    ----------
    n_samples : int, default=400
        Total number of points. Class 0 gets the extra point when odd.
    noise : float, default=0.5
        Standard deviation of the Gaussian noise added to each coordinate.
    random_state : int, RandomState instance or None, default=None
        Seed of the draw; pass an int for reproducible output.

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
        The points, in shuffled order.
    y : ndarray of shape (n_samples,)
        The class of each point, 0 or 1.

    References
    ----------
    .. [1] W. R. Huang, Z. Emam, M. Goldblum, L. Fowl, J. K. Terry, F. Huang
       and T. Goldstein, "Understanding Generalization through
       Visualizations", arXiv:1906.03291, 2019.

    Examples
    --------
    >>> from flatgen.datasets import make_spirals
    >>> X, y = make_spirals(400, noise=0.5, random_state=0)
    >>> X.shape, y.shape, int(y.sum())
    ((400, 2), (400,), 200)
    """
    rng = check_random_state(random_state)
    n_class0 = (n_samples + 1) // 2
    n_class1 = n_samples // 2
    arm0 = _spiral_arm(n_class0, rng)
    arm1 = -_spiral_arm(n_class1, rng)
    X = np.vstack([arm0, arm1])
    X += noise * rng.standard_normal(size=X.shape)
    y = np.concatenate(
        [np.zeros(n_class0, dtype=np.int64), np.ones(n_class1, np.int64)]
    )
    order = rng.permutation(n_samples)
    return X[order], y[order]


class SpiralSampler:
    """Sampler of the true spiral distribution, usable as a poison source.

    Calling it draws fresh points from the same distribution as
    :func:`make_spirals`, with their true labels. Pass it as
    ``poison_source`` to a poisoned classifier so that the poison set is new
    data from the training distribution rather than jitter around the
    training points.

    Parameters
    ----------
    noise : float, default=0.5
        Standard deviation of the Gaussian noise, as in :func:`make_spirals`.

    Examples
    --------
    >>> from flatgen.datasets import SpiralSampler
    >>> X, y = SpiralSampler(noise=0.5)(5, random_state=0)
    >>> X.shape, y.shape
    ((5, 2), (5,))
    """

    def __init__(self, noise=0.5):
        self.noise = noise

    def __call__(self, n_samples, random_state=None):
        """Draw ``n_samples`` points and their true labels.

        Parameters
        ----------
        n_samples : int
            Number of points to draw.
        random_state : int, RandomState instance or None, default=None
            Seed of the draw.

        Returns
        -------
        X : ndarray of shape (n_samples, 2)
            The points.
        y : ndarray of shape (n_samples,)
            Their true classes.
        """
        return make_spirals(n_samples, noise=self.noise, random_state=random_state)

    def __repr__(self):
        return f"SpiralSampler(noise={self.noise!r})"
