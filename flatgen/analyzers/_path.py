"""PerturbationPath: the paper's animation path through weight space."""

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from torch.func import functional_call
from tqdm.auto import tqdm

from ..landscape import ParameterLayout, TrainingObjective, is_batches
from ..landscape._models import model_classes, network_inputs
from ..landscape._objective import HESSIAN_DIRECTION_TOL
from ._seeds import analysis_seeds

# Grid points per forward pass of one frame; bounds the activations of large
# grids. A loop over frames, each one pass over the whole grid, was faster on
# CPU than vmap over chunks of frames (swiss-roll MLP, 60 frames of 100 x 100
# points: 0.24 s vs 0.41 s or more).
_GRID_BLOCK = 65536


def path_parameter(n_frames):
    """Return the animation's ``t``: 0 -> 1 -> -1 -> 0, piecewise linear.

    Frame ``i`` sits at ``s = 4 i / n_frames`` along the loop; the last frame
    stops one step short of the start, so the GIF loops seamlessly.
    """
    s = 4 * np.arange(n_frames) / n_frames
    return np.where(s <= 1, s, np.where(s <= 3, 2 - s, s - 4))


class PerturbationPath(BaseEstimator):
    """Decision regions, loss, accuracy and curvature along a path in weights.

    The perturbation animation of Huang et al. (2019): the weights walk
    ``theta* + c d`` with ``c = (span / 2) t^5`` and ``t`` going
    0 -> 1 -> -1 -> 0 over ``n_frames`` frames (the fifth power spends most
    frames near the minimum, where a sharp minimum already falls apart).
    Along the path the analyzer records the training cross-entropy, the
    training accuracy and the curvature, and, for 2-D inputs, the network's
    prediction on a grid covering the data at every frame. Everything is
    stored as arrays, so :class:`flatgen.plotting.PerturbationAnimation`
    only draws.

    The curvature at ``c`` is the second derivative of the training loss
    along the path, ``d^2/dc^2 L(theta* + c d) = d^T H(theta* + c d) d``,
    computed exactly by double backpropagation (a Hessian-vector product
    along ``d``), many frames per batched call.
    Because ``d`` is filter-normalized it is in filter-normalized units.
    For ReLU networks the loss is only piecewise smooth along the path:
    this is the curvature of the piece around each point (activation
    patterns held fixed), as every Hessian-vector product gives it; the
    kinks between pieces are not counted.

    Parameters
    ----------
    direction : {'random', 'hessian'}, default='random'
        ``'random'``: a random filter-normalized direction (Gaussian per
        filter, scaled to the filter's norm), the same as direction 0 of
        :class:`BasinAnalyzer` or :class:`LossSlice` with the same
        ``random_state``. ``'hessian'``: the top eigenvector ``u`` of the
        filter-normalized Hessian ``D H D`` at the minimum (Lanczos; see
        :class:`flatgen.landscape.LossHessian`), mapped to
        weights as ``D u`` and rescaled to the norm of a filter-normalized
        direction (the norm of the perturbed weights), so that ``c`` has the
        same scale for both kinds.
    span : float, default=1.0
        Width of the range of ``c``: the path reaches ``c = +-span / 2``.
    n_frames : int, default=60
        Number of frames of the loop (at least 4).
    grid_resolution : int or None, default=100
        Grid points per axis of the decision regions; None skips them (for
        inputs that are not 2-D).
    grid_margin : float, default=0.05
        Margin of the grid around the data, as a fraction of the data's
        range along each axis.
    response_method : {'predict', 'predict_proba'}, default='predict'
        What the frames hold: the predicted class (an index into
        ``classes_``) or, for binary problems, the probability of
        ``classes_[1]``.
    include_bias : bool, default=False
        Perturb biases too. By default only weights move.
    random_state : int, RandomState instance or None, default=None
        Seeds the random direction, or the start vector of the power
        iteration.
    n_threads : int, default=1
        Number of torch threads; results are bit-for-bit reproducible at a
        fixed count.
    verbose : int, default=0
        Progress bar over the frames when positive.

    Attributes
    ----------
    t_ : ndarray of shape (n_frames,)
        Path parameter of each frame.
    coefficients_ : ndarray of shape (n_frames,)
        Step ``c`` of each frame, in filter-normalized units.
    losses_ : ndarray of shape (n_frames,)
        Training cross-entropy at each frame.
    accuracies_ : ndarray of shape (n_frames,)
        Training accuracy at each frame.
    curvatures_ : ndarray of shape (n_frames,)
        ``d^T H d`` at each frame.
    grid_x_ : ndarray of shape (grid_resolution,) or None
        First input coordinate of the grid columns.
    grid_y_ : ndarray of shape (grid_resolution,) or None
        Second input coordinate of the grid rows.
    frames_ : ndarray of shape (n_frames, grid_resolution, grid_resolution) or None
        ``frames_[i, j, k]``: prediction of frame ``i`` at
        ``(grid_x_[k], grid_y_[j])``; class indices (int) or probabilities.
    classes_ : ndarray of shape (n_classes,)
        The estimator's classes.
    direction_ : ndarray of shape (n_params,)
        The direction ``d``, ordered as the network's flat parameter vector.
    eigenvalue_ : float
        Top eigenvalue of ``D H D`` for ``direction='hessian'``, else nan.
    eigenvalue_residual_ : float
        Relative residual ``||H u - lambda u|| / |lambda|`` of that
        eigenpair, else nan.
    converged_ : bool
        False when that eigenpair did not reach its tolerance (1e-4; a
        ConvergenceWarning also says so): the path then runs along an
        approximate eigenvector. True for a random direction.
    base_loss_ : float
        Training cross-entropy at the minimum.
    base_accuracy_ : float
        Training accuracy at the minimum.
    n_perturbed_ : int
        Number of parameters the direction moves.

    See Also
    --------
    flatgen.plotting.PerturbationAnimation : Draws the frames, saves a GIF.
    LossSlice : Loss on a line or plane through the minimum.

    References
    ----------
    .. [1] W. R. Huang et al., "Understanding Generalization through
       Visualizations", arXiv:1906.03291, 2019.

    Examples
    --------
    >>> from flatgen import PerturbationPath, PoisonedMLPClassifier, make_spirals
    >>> X, y = make_spirals(100, random_state=0)
    >>> clf = PoisonedMLPClassifier(max_iter=300, random_state=0).fit(X, y)
    >>> path = PerturbationPath(n_frames=8, grid_resolution=20, random_state=0)
    >>> path.fit(clf, X, y).frames_.shape
    (8, 20, 20)
    >>> path.t_
    array([ 0. ,  0.5,  1. ,  0.5,  0. , -0.5, -1. , -0.5])
    >>> float(path.coefficients_[2])  # span / 2
    0.5
    """

    _parameter_constraints = {
        "direction": [StrOptions({"random", "hessian"})],
        "span": [Interval(Real, 0, None, closed="neither")],
        "n_frames": [Interval(Integral, 4, None, closed="left")],
        "grid_resolution": [Interval(Integral, 2, None, closed="left"), None],
        "grid_margin": [Interval(Real, 0, None, closed="left")],
        "response_method": [StrOptions({"predict", "predict_proba"})],
        "include_bias": ["boolean"],
        "random_state": ["random_state"],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        direction="random",
        span=1.0,
        n_frames=60,
        *,
        grid_resolution=100,
        grid_margin=0.05,
        response_method="predict",
        include_bias=False,
        random_state=None,
        n_threads=1,
        verbose=0,
    ):
        self.direction = direction
        self.span = span
        self.n_frames = n_frames
        self.grid_resolution = grid_resolution
        self.grid_margin = grid_margin
        self.response_method = response_method
        self.include_bias = include_bias
        self.random_state = random_state
        self.n_threads = n_threads
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, estimator, X, y):
        """Walk the path from ``estimator``'s weights and record every frame.

        Parameters
        ----------
        estimator : fitted network model
            A flatgen classifier, a skorch net, an sklearn ``MLPClassifier``, a
            ``torch.nn.Module`` returning logits, or a Pipeline ending in one
            (see :ref:`any-model`).
            It is not modified.
        X : array-like of shape (n_samples, 2)
            Training inputs; with ``grid_resolution=None`` any shape the
            estimator accepts.
        y : array-like of shape (n_samples,)
            Training labels (class indices for skorch nets and modules).

        Returns
        -------
        self : PerturbationPath
            The analyzer, with results in its ``*_`` attributes.
        """
        if is_batches(X):
            raise TypeError(
                "PerturbationPath follows the loss and the decision regions of the "
                "training inputs frame by frame and needs X, y as arrays; training "
                "data given as batches (a DataLoader) are measured by every other "
                "flatness analyzer."
            )
        raw_X = X
        if self.grid_resolution is not None:
            shape = np.shape(raw_X)
            if len(shape) != 2 or shape[1] != 2:
                raise ValueError(
                    "PerturbationPath draws decision regions in the input plane and "
                    f"needs X of shape (n_samples, 2). Got X of shape {shape} "
                    "instead; use grid_resolution=None to record the path without "
                    "decision regions."
                )
        landscape = TrainingObjective.from_model(
            estimator, X, y, include_bias=self.include_bias, n_threads=self.n_threads
        )
        if not landscape.classification:
            raise TypeError(
                "PerturbationPath follows a classifier's decision regions and "
                f"cross-entropy; this model is trained with {landscape.loss.name} "
                "(a regressor). Its basin is measured by the other analyzers."
            )
        module = landscape.module
        self.classes_ = np.asarray(model_classes(estimator, raw_X))
        if self.response_method == "predict_proba" and len(self.classes_) != 2:
            raise ValueError(
                "response_method='predict_proba' draws the probability of the "
                f"second class and needs 2 classes. Got {len(self.classes_)} "
                "classes instead; use response_method='predict'."
            )
        self.t_ = path_parameter(self.n_frames)
        self.coefficients_ = float(self.span) / 2 * self.t_**5
        with landscape.threads():
            evaluator, theta0 = landscape.evaluator, landscape.theta0
            direction = self._direction(landscape)
            loss0, accuracy0 = evaluator.evaluate(theta0)
            steps = torch.as_tensor(self.coefficients_, dtype=theta0.dtype)
            self.losses_, self.accuracies_ = evaluator.evaluate_along(
                theta0, direction[None], np.zeros(self.n_frames, dtype=int), steps
            )
            self.curvatures_ = landscape.network_loss.curvatures_along(
                direction, self.coefficients_, evaluator.chunk_size
            )
            self.grid_x_ = self.grid_y_ = self.frames_ = None
            if self.grid_resolution is not None:
                self._decision_frames(estimator, module, raw_X, theta0, direction)
        self.base_loss_, self.base_accuracy_ = float(loss0[0]), float(accuracy0[0])
        self.direction_ = direction.cpu().numpy()
        self.n_perturbed_ = landscape.n_perturbed
        return self

    def _direction(self, landscape):
        (seed,) = analysis_seeds(self.random_state)
        self.eigenvalue_ = self.eigenvalue_residual_ = np.nan
        self.converged_ = True
        if self.direction == "random":
            return landscape.directions(1, seed)[0]
        eigenvalues, directions, residuals = landscape.hessian_directions(1, seed)
        self.eigenvalue_ = float(eigenvalues[0])
        self.eigenvalue_residual_ = float(residuals[0])
        self.converged_ = self.eigenvalue_residual_ <= HESSIAN_DIRECTION_TOL
        return directions[0]

    def _decision_frames(self, estimator, module, X, theta0, direction):
        X = np.asarray(X, dtype=float)
        low, high = X.min(axis=0), X.max(axis=0)
        margin = self.grid_margin * np.where(high > low, high - low, 1.0)
        res = self.grid_resolution
        self.grid_x_ = np.linspace(low[0] - margin[0], high[0] + margin[0], res)
        self.grid_y_ = np.linspace(low[1] - margin[1], high[1] + margin[1], res)
        xx, yy = np.meshgrid(self.grid_x_, self.grid_y_)
        grid = network_inputs(estimator, np.c_[xx.ravel(), yy.ravel()])
        grid = torch.as_tensor(grid).to(theta0.device, theta0.dtype)
        layout = ParameterLayout.from_module(module)
        proba = self.response_method == "predict_proba"
        frames = np.empty(
            (self.n_frames, res * res), dtype=np.float64 if proba else np.int64
        )
        frame_iter = tqdm(
            range(self.n_frames),
            disable=not self.verbose,
            desc="frames",
            unit="frame",
            leave=False,
        )
        with torch.no_grad():
            for i in frame_iter:
                theta = theta0 + float(self.coefficients_[i]) * direction
                params = layout.unflatten(theta)
                for start in range(0, len(grid), _GRID_BLOCK):
                    block = slice(start, start + _GRID_BLOCK)
                    logits = functional_call(module, params, (grid[block],))
                    if proba:
                        values = torch.softmax(logits.double(), dim=1)[:, 1]
                    else:
                        values = logits.argmax(dim=1)
                    frames[i, block] = values.cpu().numpy()
        self.frames_ = frames.reshape(self.n_frames, res, res)
