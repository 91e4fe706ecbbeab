"""LossSlice: training loss on a line or plane through the minimum."""

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils._param_validation import Interval, Options, StrOptions
from tqdm.auto import tqdm

from ..landscape import TrainingObjective
from ..landscape._objective import HESSIAN_DIRECTION_TOL
from ._deprecation import DEPRECATED, former_name, renamed
from ._seeds import analysis_seeds


class LossSlice(BaseEstimator):
    """Training loss and accuracy on a 1-D or 2-D slice through a minimum.

    Draws ``n_dims`` random filter-normalized directions ``d_1 (, d_2)``
    (Gaussian per filter, scaled to the filter's norm; Li et al., 2018), or
    takes the sharpest ones (top eigenvectors of the filter-normalized
    Hessian), and evaluates the training cross-entropy and accuracy at
    ``theta* + a d_1`` (1-D) or ``theta* + a d_1 + b d_2`` (2-D) for ``a, b``
    on an even grid from ``-span / 2`` to ``span / 2``. All grid points go
    through the batched landscape engine, many parameter vectors per call.
    Distances are in filter-normalized units: ``a = 1`` moves every filter
    by its own norm, so slices of different networks share one scale.

    Parameters
    ----------
    n_dims : {1, 2}, default=1
        Dimension of the slice: a line or a plane.
    span : float, default=1.0
        Width of the grid along each direction, centred on the minimum.
    grid_resolution : int, default=51
        Points per axis; an odd number puts a grid point on the minimum.
    directions : {'random', 'hessian'}, default='random'
        ``'random'``: random filter-normalized directions. ``'hessian'``:
        the top ``n_dims`` eigenvectors ``u`` of the filter-normalized
        Hessian ``D H D`` at the minimum (Lanczos, each pair checked on its
        residual; see :func:`flatgen.landscape.top_hessian_eigenpairs`),
        mapped to weights as ``D u`` and rescaled to the norm of a random
        filter-normalized direction, so both kinds share one scale. The
        slice then shows the minimum along its sharpest directions.
    include_bias : bool, default=False
        Perturb biases too (each bias vector scaled to its own norm). By
        default only weights move.
    random_state : int, RandomState instance or None, default=None
        Seeds the directions. Direction ``k`` is the same as direction ``k``
        of :class:`BasinAnalyzer` with the same ``random_state``, so the
        first direction of a 2-D slice is the one of the 1-D slice.
    n_threads : int, default=1
        Number of torch threads; results are bit-for-bit reproducible at a
        fixed count.
    verbose : int, default=0
        Progress bar over blocks of grid points when positive.
    resolution : int, default='deprecated'
        Former name of ``grid_resolution`` (the name every analyzer now
        uses for points per grid axis); still accepted, with a FutureWarning.

    Attributes
    ----------
    distances_ : ndarray of shape (grid_resolution,)
        Grid values along each direction.
    losses_ : ndarray of shape (grid_resolution,) or (grid_resolution, grid_resolution)
        Training cross-entropy; in 2-D, ``losses_[i, j]`` is at
        ``distances_[i]`` along the first direction and ``distances_[j]``
        along the second.
    accuracies_ : ndarray of the same shape as ``losses_``
        Training accuracy at the same points.
    directions_ : ndarray of shape (n_dims, n_params)
        The directions, in the order of the network's flat parameter vector
        (see :class:`flatgen.landscape.ParameterLayout`).
    eigenvalues_ : ndarray of shape (n_dims,)
        With ``directions='hessian'``, the eigenvalues of ``D H D`` along
        the directions (descending); nan for random directions.
    eigenvalue_residuals_ : ndarray of shape (n_dims,)
        Relative residual ``||H u - lambda u|| / |lambda|`` of each of those
        eigenpairs; nan for random directions.
    converged_ : bool
        False when some Hessian direction's eigenpair did not reach its
        tolerance (1e-4; a ConvergenceWarning also says so): the slice then
        runs along approximate eigenvectors. True for random directions.
    base_loss_ : float
        Training loss at the minimum.
    loss_name_ : str
        The training loss evaluated: ``'cross-entropy'`` for classifiers,
        otherwise the criterion's class name (e.g. ``'MSELoss'``).
    base_accuracy_ : float
        Training accuracy at the minimum.
    n_perturbed_ : int
        Number of parameters the directions move.

    See Also
    --------
    BasinAnalyzer : Radius of the basin along many directions.
    flatgen.plotting.LossSliceDisplay : Draws the slice.

    References
    ----------
    .. [1] H. Li, Z. Xu, G. Taylor, C. Studer and T. Goldstein, "Visualizing
       the Loss Landscape of Neural Nets", NeurIPS 2018.
    .. [2] W. R. Huang et al., "Understanding Generalization through
       Visualizations", arXiv:1906.03291, 2019.

    Examples
    --------
    >>> from flatgen import LossSlice, PoisonedMLPClassifier, make_spirals
    >>> X, y = make_spirals(100, random_state=0)
    >>> clf = PoisonedMLPClassifier(max_iter=300, random_state=0).fit(X, y)
    >>> slice_ = LossSlice(n_dims=2, span=0.5, grid_resolution=11, random_state=0)
    >>> slice_.fit(clf, X, y).losses_.shape
    (11, 11)
    >>> bool(slice_.losses_[5, 5] == slice_.losses_.min())
    True
    """

    _parameter_constraints = {
        "n_dims": [Options(Integral, {1, 2})],
        "span": [Interval(Real, 0, None, closed="neither")],
        "grid_resolution": [Interval(Integral, 2, None, closed="left")],
        "resolution": former_name([Interval(Integral, 2, None, closed="left")]),
        "directions": [StrOptions({"random", "hessian"})],
        "include_bias": ["boolean"],
        "random_state": ["random_state"],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_dims=1,
        span=1.0,
        grid_resolution=51,
        *,
        directions="random",
        include_bias=False,
        random_state=None,
        n_threads=1,
        verbose=0,
        resolution=DEPRECATED,
    ):
        self.n_dims = n_dims
        self.span = span
        self.grid_resolution = grid_resolution
        self.directions = directions
        self.include_bias = include_bias
        self.random_state = random_state
        self.n_threads = n_threads
        self.verbose = verbose
        self.resolution = resolution

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, estimator, X, y):
        """Evaluate the training loss of ``estimator`` on the slice.

        Parameters
        ----------
        estimator : fitted network model
            A flatgen classifier, a skorch net, an sklearn ``MLPClassifier``, a
            ``torch.nn.Module`` returning logits, or a Pipeline ending in one
            (see :ref:`any-model`).
            It is not modified.
        X : array-like of shape (n_samples, ...)
            Training inputs.
        y : array-like of shape (n_samples,)
            Training labels (class indices for skorch nets and modules).

        Returns
        -------
        self : LossSlice
            The analyzer, with results in its ``*_`` attributes.
        """
        landscape = TrainingObjective.from_model(
            estimator, X, y, include_bias=self.include_bias, n_threads=self.n_threads
        )
        (seed,) = analysis_seeds(self.random_state)
        half = float(self.span) / 2
        resolution = renamed(self, "grid_resolution", "resolution")
        self.distances_ = np.linspace(-half, half, resolution)
        with landscape.threads():
            evaluator, theta0 = landscape.evaluator, landscape.theta0
            self.eigenvalues_ = np.full(self.n_dims, np.nan)
            self.eigenvalue_residuals_ = np.full(self.n_dims, np.nan)
            if self.directions == "hessian":
                self.eigenvalues_, directions, self.eigenvalue_residuals_ = (
                    landscape.hessian_directions(self.n_dims, seed)
                )
            else:
                directions = landscape.directions(self.n_dims, seed)
            self.converged_ = bool(
                np.all(
                    np.isnan(self.eigenvalue_residuals_)
                    | (self.eigenvalue_residuals_ <= HESSIAN_DIRECTION_TOL)
                )
            )
            loss0, accuracy0 = evaluator.evaluate(theta0)
            steps = torch.as_tensor(self.distances_, dtype=theta0.dtype)
            steps = steps.to(evaluator.device)
            if self.n_dims == 1:
                losses, accuracies = evaluator.evaluate_along(
                    theta0, directions, np.zeros(resolution, dtype=int), steps
                )
            else:
                losses, accuracies = self._plane(evaluator, theta0, directions, steps)
        if not np.isfinite(loss0[0]):
            raise ValueError(
                f"The training loss of the estimator is not finite ({loss0[0]}); "
                "there is no minimum to slice through."
            )
        self.base_loss_, self.base_accuracy_ = float(loss0[0]), float(accuracy0[0])
        self.losses_, self.accuracies_ = losses, accuracies
        self.directions_ = directions.cpu().numpy()
        self.n_perturbed_ = landscape.n_perturbed
        self.loss_name_ = landscape.loss.name
        return self

    def _plane(self, evaluator, theta0, directions, steps):
        """Loss and accuracy on the 2-D grid, in chunks formed as they go."""
        res = len(steps)
        # Row-major grid: point (i, j) is theta0 + a_i d_1 + b_j d_2.
        a, b = torch.meshgrid(steps, steps, indexing="ij")
        coefficients = torch.stack([a.reshape(-1), b.reshape(-1)], dim=1)
        losses = np.empty(res * res)
        accuracies = np.empty(res * res)
        # Blocks of grid rows for the progress bar, each at least one of the
        # evaluator's chunks (small networks evaluate many vectors at once).
        rows_per_block = max(-(-res // 20), -(-evaluator.chunk_size // res))
        starts = range(0, res, rows_per_block)
        for start in tqdm(
            starts, disable=not self.verbose, desc="slice", unit="block", leave=False
        ):
            block = slice(start * res, min(res, start + rows_per_block) * res)
            losses[block], accuracies[block] = evaluator.evaluate_combinations(
                theta0, directions, coefficients[block]
            )
        return losses.reshape(res, res), accuracies.reshape(res, res)

    def plot(self, ax=None, **kwargs):
        """Draw the slice: a loss curve (1-D) or filled contours (2-D).

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        **kwargs
            Passed to :meth:`flatgen.plotting.LossSliceDisplay.plot`.

        Returns
        -------
        display : flatgen.plotting.LossSliceDisplay
            The display, with ``ax_`` and ``figure_`` set.
        """
        from ..plotting import LossSliceDisplay

        return LossSliceDisplay.from_analyzer(self).plot(ax=ax, **kwargs)
