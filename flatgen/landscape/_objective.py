"""A trained network's training loss as a function of its weights.

Every flatness measurement evaluates the same function: the mean training
loss of a network at weights ``theta* + perturbation``. A
:class:`TrainingObjective` owns what that takes, once, for any model
(see :mod:`flatgen.landscape._models`): the network in eval mode, its data
(arrays, or batches for data that do not fit in one pass), the layout of the
flat weights, the perturbed set, seeded filter-normalized directions,
batched losses, gradients and the Hessian as a linear operator. Radii,
volumes, curvature, slices, paths, sharpness and norms are all computed from
it, so a model measured one way is measured the same way by every analyzer.
"""

from functools import cached_property

import numpy as np
import torch

from .._torch_utils import torch_threads
from ._criterion import CriterionEvaluator, sample_loss
from ._curvature import LossHessian, top_hessian_eigenpairs
from ._data import BatchesEvaluator, DataBatches, is_batches
from ._directions import filter_normalized_directions
from ._evaluate import BatchedEvaluator
from ._parameters import ParameterLayout, flatten_parameters
from ._sharpness import NetworkLoss

__all__ = ["TrainingObjective"]

# Relative residual at which a Hessian direction's eigenpair is accepted
# (top_hessian_eigenpairs' default).
HESSIAN_DIRECTION_TOL = 1e-4

# Evaluators and Hessians are rebuilt where the objective is unpickled (a
# joblib or dask worker): they hold thread-local buffers and locks.
_CACHES = ("evaluator", "hessian", "network_loss", "perturbed_index")


class TrainingObjective:
    """Mean training loss of a trained network around its weights.

    Parameters
    ----------
    module : torch.nn.Module
        The trained network, mapping inputs to logits of shape
        ``(n_samples, n_classes)``. It is never modified: losses are
        evaluated functionally, on private copies in eval mode.
    X : array-like, torch.Tensor, DataLoader or re-iterable of (X, y) pairs
        Training inputs shaped for the network, or the whole training set
        as batches (then ``y`` must be None): every quantity is then
        accumulated over all batches, so memory is bounded by one batch and
        the result is the full-data one.
    y : array-like of shape (n_samples,) or (n_samples, n_outputs), default=None
        Labels as indices of the logits (targets for a regression
        criterion); None when ``X`` holds batches.
    criterion : torch.nn.Module, default=None
        The loss whose mean over the samples is the objective, with
        ``reduction='mean'`` (e.g. ``nn.MSELoss()`` for a regressor). None
        is the cross-entropy of logits, which takes flatgen's fast paths;
        any other criterion is evaluated one weight vector at a time and
        differentiated by autograd.
    include_bias : bool, default=False
        Whether perturbations move biases and normalization parameters as
        well as weight matrices and convolution kernels.
    n_threads : int or None, default=None
        torch threads for the work done inside :meth:`threads`.

    Attributes
    ----------
    module : torch.nn.Module
        The network, as given.
    criterion : torch.nn.Module or None
        The criterion, as given.
    X, y : ndarray, or DataBatches and None
        The training data.
    layout : ParameterLayout
        Order and shapes of the flat weight vector.
    theta0 : torch.Tensor of shape (n_params,)
        The trained weights, flat, on the network's device.

    See Also
    --------
    TrainingObjective.from_model : the objective of any fitted model.

    Examples
    --------
    >>> import torch
    >>> from flatgen.landscape import TrainingObjective
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(),
    ...                           torch.nn.Linear(8, 2))
    >>> X, y = torch.randn(40, 2), torch.randint(0, 2, (40,))
    >>> objective = TrainingObjective(net, X, y)
    >>> objective.n_perturbed  # the two weight matrices
    32
    >>> losses = objective.losses(objective.theta0[None] * torch.tensor([[1.0], [0.0]]))
    >>> losses.shape
    (2,)
    """

    def __init__(
        self, module, X, y=None, *, criterion=None, include_bias=False, n_threads=None
    ):
        self.loss = sample_loss(criterion)
        self.criterion = self.loss.criterion
        if is_batches(X):
            if y is not None:
                raise ValueError(
                    "y must be None when X holds (X, y) batches (a DataLoader): "
                    "the labels come with the batches."
                )
            X = DataBatches(X, classification=self.loss.classification)
        elif y is None:
            raise ValueError(
                "y is required: the objective is the training loss of labelled data."
            )
        self.module, self.X, self.y = module, X, y
        self.include_bias = bool(include_bias)
        self.n_threads = n_threads

    @classmethod
    def from_model(cls, model, X, y=None, *, include_bias=False, n_threads=None):
        """Return the training objective of a fitted model.

        Parameters
        ----------
        model : fitted model or TrainingObjective
            A flatgen classifier, a skorch net (classifier or regressor), an
            sklearn ``MLPClassifier`` or ``MLPRegressor``, a
            ``torch.nn.Module`` returning logits, or a Pipeline ending in one
            (see :ref:`any-model`). Not modified: its network is copied. A
            ``TrainingObjective`` (with ``X`` and ``y`` None) is returned as
            a fresh copy with these options, so every analyzer measures an
            objective built by hand (a custom criterion, say).
        X : array-like, DataLoader or re-iterable of (X, y) pairs
            Training inputs as passed to the model's ``predict`` (a
            Pipeline's transformers and the model's own preparation are
            applied), or batches of inputs and labels.
        y : array-like of shape (n_samples,), default=None
            Labels as the model knows them; None when ``X`` holds batches.
        include_bias : bool, default=False
            Whether perturbations move biases too.
        n_threads : int or None, default=None
            torch threads for the work done inside :meth:`threads`.

        Returns
        -------
        objective : TrainingObjective
            The model's network with its own training criterion.
        """
        from ._models import model_objective_parts

        if isinstance(model, TrainingObjective):
            if X is not None or y is not None:
                raise ValueError(
                    "X and y must be None when the model is a TrainingObjective: "
                    "it holds its own data."
                )
            objective = model.fresh()
            objective.include_bias = bool(include_bias)
            objective.n_threads = n_threads
            return objective
        module, X, y, criterion = model_objective_parts(model, X, y)
        return cls(
            module,
            X,
            y,
            criterion=criterion,
            include_bias=include_bias,
            n_threads=n_threads,
        )

    def __getstate__(self):
        state = self.__dict__.copy()
        for name in _CACHES:
            state.pop(name, None)
        return state

    def fresh(self):
        """Return a copy of this objective with its own evaluator and Hessian.

        Threads that share one objective share its evaluator's module copy;
        each task of a parallel measurement works on a fresh one instead.
        """
        clone = self.__class__.__new__(self.__class__)
        clone.__dict__.update(self.__getstate__())
        return clone

    @property
    def batched(self):
        """Whether the training data come as batches."""
        return isinstance(self.X, DataBatches)

    @property
    def n_samples(self):
        """Number of training samples."""
        return self.X.n_samples if self.batched else len(self.y)

    def threads(self):
        """Context manager: run torch with this objective's thread count."""
        return torch_threads(self.n_threads)

    # -- weights and directions ---------------------------------------------
    @cached_property
    def layout(self):
        """The :class:`~flatgen.landscape.ParameterLayout` of the flat weights."""
        return ParameterLayout.from_module(self.module)

    @cached_property
    def theta0(self):
        """The trained weights as one flat tensor on the network's device."""
        return flatten_parameters(self.module).to(self.evaluator.device)

    @cached_property
    def perturbed_index(self):
        """Flat indices of the parameters a perturbation moves, ascending.

        Weight matrices and convolution kernels (filters); biases and
        normalization parameters too with ``include_bias``.
        """
        index, active = self.layout.groups(self.include_bias)
        return torch.nonzero(active[index]).reshape(-1)

    @property
    def n_perturbed(self):
        """Number of parameters a perturbation moves."""
        return int(len(self.perturbed_index))

    def directions(self, n_directions, seed, *, start=0):
        """Filter-normalized directions ``start .. start + n_directions - 1``.

        Direction ``k`` depends only on ``(seed, k)``, so any chunking draws
        the same vectors (see
        :func:`~flatgen.landscape.filter_normalized_directions`).

        Parameters
        ----------
        n_directions : int
            How many directions.
        seed : int
            Seed of the directions.
        start : int, default=0
            Index of the first direction.

        Returns
        -------
        directions : torch.Tensor of shape (n_directions, n_params)
            Every filter of each direction has the norm of its filter in
            ``theta0``; entries left alone (biases, unless
            ``include_bias``) are zero.
        """
        return filter_normalized_directions(
            self.layout,
            self.theta0,
            n_directions,
            seed,
            start=start,
            include_bias=self.include_bias,
        )

    # -- losses -------------------------------------------------------------
    @cached_property
    def evaluator(self):
        """Batched losses and accuracies at many weight vectors.

        A :class:`~flatgen.landscape.BatchedEvaluator` on arrays (its fast
        paths chosen for the network), a
        :class:`~flatgen.landscape.BatchesEvaluator` on batches.
        """
        if self.batched:
            return BatchesEvaluator(self.module, self.X, self.loss)
        if not self.loss.classification:
            return CriterionEvaluator(self.module, self.X, self.y, self.loss)
        return BatchedEvaluator(self.module, self.X, self.y)

    def losses(self, thetas):
        """Mean training loss at each weight vector.

        Parameters
        ----------
        thetas : torch.Tensor of shape (B, n_params)
            Flat weight vectors.

        Returns
        -------
        losses : ndarray of shape (B,), dtype float64
            Mean loss over every training sample.
        """
        return self.evaluator.loss(thetas)

    @property
    def classification(self):
        """Whether the objective is the cross-entropy of class labels."""
        return self.loss.classification

    def base_loss(self):
        """Return the training loss and accuracy at the trained weights.

        The accuracy is NaN for a regression criterion.
        """
        loss, accuracy = self.evaluator.evaluate(self.theta0[None])
        return float(loss[0]), float(accuracy[0])

    def loss_and_grad(self, theta):
        """Return the mean training loss at ``theta`` and its gradient.

        Parameters
        ----------
        theta : torch.Tensor of shape (n_params,)
            Flat weights.

        Returns
        -------
        loss : float
            Mean loss over every training sample.
        grad : torch.Tensor of shape (n_params,)
            Its gradient.
        """
        return self.network_loss.loss_and_grad(theta)

    def losses_and_grads(self, thetas):
        """Return the mean training loss and its gradient at many weight vectors.

        Parameters
        ----------
        thetas : torch.Tensor of shape (B, n_params)
            Flat weight vectors (e.g. the current points of B chains).

        Returns
        -------
        losses : torch.Tensor of shape (B,)
            Mean loss over every training sample at each vector.
        grads : torch.Tensor of shape (B, n_params)
            Their gradients.
        """
        return self.network_loss.losses_and_grads(thetas)

    @cached_property
    def network_loss(self):
        """The :class:`~flatgen.landscape.NetworkLoss`: autograd at one vector.

        Gradients, per-sample losses and directional derivatives, for the
        measurements that follow gradients (worst-case sharpness, the
        Fisher-Rao norm).
        """
        return NetworkLoss(self.module, self.X, self.y, criterion=self.loss)

    # -- curvature ----------------------------------------------------------
    @cached_property
    def hessian(self):
        """The :class:`~flatgen.landscape.LossHessian` at the trained weights."""
        return LossHessian(self.module, self.X, self.y, criterion=self.loss)

    def as_linear_operator(self):
        """Return the Hessian as a ``scipy.sparse.linalg.LinearOperator`` (float64)."""
        return self.hessian.as_linear_operator()

    def hessian_directions(self, n_directions, seed):
        """Return the sharpest directions: top eigenvectors of ``D H D``.

        The top ``n_directions`` eigenvectors ``u`` of ``D H D`` (see
        :class:`~flatgen.landscape.LossHessian`), by Lanczos from a start
        drawn with ``seed``, mapped to weights as ``D u`` and each rescaled
        to the norm of a random filter-normalized direction (the norm of the
        perturbed weights), so steps along them read on the same scale.

        Parameters
        ----------
        n_directions : int
            How many of the sharpest directions.
        seed : int
            Seed of the Lanczos start vector.

        Returns
        -------
        eigenvalues : ndarray of shape (n_directions,)
            Descending eigenvalues of ``D H D``.
        directions : torch.Tensor of shape (n_directions, n_params)
            The eigenvectors mapped to weights, rescaled as above.
        residuals : ndarray of shape (n_directions,)
            Relative residual of each eigenpair (see
            :func:`~flatgen.landscape.top_hessian_eigenpairs`); a pair above
            the solver's tolerance also raised a ConvergenceWarning.
        """
        eigenvalues, vectors, residuals = top_hessian_eigenpairs(
            self.module,
            self.X,
            self.y,
            n_directions,
            seed=seed,
            filter_normalized=True,
            include_bias=self.include_bias,
            tol=HESSIAN_DIRECTION_TOL,
            criterion=self.loss,
            return_residuals=True,
        )
        theta0 = self.theta0
        scale = self.layout.group_norms(theta0, self.include_bias)
        d = (scale[:, None] * vectors.to(theta0.device, theta0.dtype)).double()
        # Every filter of a random filter-normalized direction has the norm
        # of its weights, so the whole direction has the norm of the
        # perturbed weights.
        target = (theta0.double() * (scale != 0)).norm()
        d = d * (target / d.norm(dim=0, keepdim=True))
        return eigenvalues, d.T.to(theta0.dtype).contiguous(), residuals

    def basin_loss(self, space="filter_normalized"):
        """Return the loss as a function of a displacement of the perturbed weights.

        Parameters
        ----------
        space : {'filter_normalized', 'raw'}, default='filter_normalized'
            Coordinates of the displacement.

        Returns
        -------
        loss : NetworkBasinLoss
            Shares this objective's evaluator and Hessian.
        """
        from ._network_loss import NetworkBasinLoss

        return NetworkBasinLoss.from_objective(self, space=space)

    def __repr__(self):
        data = (
            f"{self.X.n_batches} batches"
            if self.batched
            else f"X of shape {tuple(np.shape(self.X))}"
        )
        return (
            f"{type(self).__name__}({type(self.module).__name__}, {data}, "
            f"n_samples={self.n_samples}, include_bias={self.include_bias})"
        )
