"""Data sets of the paper's experiments and samplers of their true distributions."""

import os
import zlib
from numbers import Integral, Real

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

__all__ = ["make_spirals", "SpiralSampler", "load_digit_images", "load_svhn"]

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


def load_digit_images():
    """Load scikit-learn's 8x8 handwritten digits as images for a CNN.

    The 1,797 images of :func:`sklearn.datasets.load_digits` (16 grey
    levels), reshaped to ``(n, 1, 8, 8)`` and scaled to ``[0, 1]``. Ships
    with scikit-learn: nothing is downloaded.

    Returns
    -------
    X : ndarray of shape (1797, 1, 8, 8), dtype float32
        Images with one channel, values in ``[0, 1]``.
    y : ndarray of shape (1797,), dtype int64
        Digit of each image, 0 to 9.

    Examples
    --------
    >>> from flatgen.datasets import load_digit_images
    >>> X, y = load_digit_images()
    >>> X.shape, float(X.max()), sorted(set(y.tolist())) == list(range(10))
    ((1797, 1, 8, 8), 1.0, True)
    """
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    return X, y.astype(np.int64)


_SVHN_SPLITS = ("train", "test", "extra")
_SVHN_EXPECTED = (
    "SVHN's format 2 file {name} (from http://ufldl.stanford.edu/housenumbers/) "
    "holding X of shape (32, 32, 3, N) and y of shape (N, 1) with labels 1-10"
)


def _read_svhn_mat(path, name):
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    expected = _SVHN_EXPECTED.format(name=name)
    try:
        contents = loadmat(path, variable_names=("X", "y"))
    except (
        MatReadError,
        ValueError,
        TypeError,
        OSError,
        EOFError,
        zlib.error,
        NotImplementedError,
    ) as exc:
        # scipy raises all of these for truncated, corrupt, HDF5 (v7.3) or
        # non-MATLAB files.
        raise ValueError(
            f"{path!r} is not a readable MATLAB .mat file "
            f"({type(exc).__name__}: {exc}); expected {expected}."
        ) from exc
    missing = [key for key in ("X", "y") if key not in contents]
    if missing:
        raise ValueError(
            f"{path!r} has no variable {missing[0]!r}; expected {expected}."
        )
    X, y = contents["X"], np.asarray(contents["y"]).reshape(-1)
    if X.ndim != 4 or X.shape[:3] != (32, 32, 3):
        raise ValueError(f"{path!r} holds X of shape {X.shape}; expected {expected}.")
    if len(y) != X.shape[3]:
        raise ValueError(
            f"{path!r} holds {X.shape[3]} images but {len(y)} labels; "
            f"expected {expected}."
        )
    if len(y) == 0:
        raise ValueError(f"{path!r} holds no images; expected {expected}.")
    valid = np.issubdtype(y.dtype, np.number) and np.all(np.isin(y, np.arange(1, 11)))
    if not valid:
        bad = [value for value in y.tolist() if value not in range(1, 11)][:5]
        raise ValueError(
            f"{path!r} holds labels {bad} outside 1-10; expected {expected}."
        )
    return X, y


@validate_params(
    {
        "data_dir": [str, os.PathLike],
        "split": [StrOptions(set(_SVHN_SPLITS))],
        "subset": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def load_svhn(data_dir, split="train", *, subset=None, random_state=None):
    """Load one split of SVHN from the standard ``.mat`` files.

    Reads ``{split}_32x32.mat`` (the "cropped digits" format of the Street
    View House Numbers data set) from ``data_dir``. Nothing is downloaded:
    fetch the files yourself. Label 10 stands for the digit 0 in the files
    and is returned as 0. The whole file is read into memory before the
    subset is taken (about 1.3 GB for ``extra``).

    Parameters
    ----------
    data_dir : str or path-like
        Folder holding ``train_32x32.mat``, ``test_32x32.mat`` and (for the
        paper's poison set) ``extra_32x32.mat``.
    split : {'train', 'test', 'extra'}, default='train'
        Which file to read. The paper draws its poison set from ``extra``.
    subset : int, default=None
        Number of images drawn at random without replacement, for CPUs;
        all images when None.
    random_state : int, RandomState instance or None, default=None
        Seed of the subset draw.

    Returns
    -------
    X : ndarray of shape (n_images, 3, 32, 32), dtype float32
        Images, channels first, values in ``[0, 1]``.
    y : ndarray of shape (n_images,), dtype int64
        Digits 0-9.

    Raises
    ------
    FileNotFoundError
        If the file is missing; the message names the path expected.
    ValueError
        If the file is not a readable ``.mat`` file, lacks ``X`` or ``y``,
        has the wrong shapes or labels, or holds fewer images than
        ``subset``.

    References
    ----------
    .. [1] Y. Netzer, T. Wang, A. Coates, A. Bissacco, B. Wu and A. Y. Ng,
       "Reading Digits in Natural Images with Unsupervised Feature
       Learning", NIPS Workshop on Deep Learning, 2011.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from scipy.io import savemat
    >>> from flatgen.datasets import load_svhn
    >>> folder = tempfile.mkdtemp()
    >>> images = np.zeros((32, 32, 3, 4), dtype=np.uint8)
    >>> savemat(os.path.join(folder, "train_32x32.mat"),
    ...         {"X": images, "y": np.array([[10], [1], [2], [3]])})
    >>> X, y = load_svhn(folder, "train")
    >>> X.shape, y.tolist()
    ((4, 3, 32, 32), [0, 1, 2, 3])
    """
    name = f"{split}_32x32.mat"
    path = os.path.join(os.fspath(data_dir), name)
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(
            f"SVHN folder {os.fspath(data_dir)!r} does not exist; expected a "
            f"folder holding {name} ({_SVHN_EXPECTED.format(name=name)})."
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"SVHN file {path!r} not found; expected "
            f"{_SVHN_EXPECTED.format(name=name)}. flatgen downloads nothing."
        )
    X, y = _read_svhn_mat(path, name)
    n_images = len(y)
    if subset is None:
        index = np.arange(n_images)
    else:
        if subset > n_images:
            raise ValueError(
                f"subset={subset} exceeds the {n_images} images in {path!r}."
            )
        index = np.sort(check_random_state(random_state).permutation(n_images)[:subset])
    # Take the subset before converting: extra holds half a million images.
    images = np.transpose(X[..., index], (3, 2, 0, 1))
    X = images.astype(np.float32) / 255.0
    return X, np.where(y[index] == 10, 0, y[index]).astype(np.int64)
