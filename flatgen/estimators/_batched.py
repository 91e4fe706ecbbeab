"""Many small networks of one shape trained together: one batched step for all.

A poisoned step of the paper's MLP on 200 points is a few thousand
multiply-adds per layer: its time is the fixed cost of launching ~40 small
operations, not arithmetic. Stacking K networks' weights into (K, out, in)
tensors makes one ``baddbmm`` per layer do the work of K steps, so K models
train in little more than the time of one.

Each model keeps everything a separate fit gives it: its own initial weights
and poison draws (from its own ``random_state``), its own objective (poison
factor) and step size, the same schedule and the same polish, and it is
returned as an ordinary fitted estimator. The arithmetic is the same but
batched, so results agree with a separate fit statistically, not bit for bit
(summation order differs).
"""

import math
from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.utils._param_validation import Interval

from .._torch_utils import torch_threads
from ..exceptions import TrainingDivergedError
from ..poison import share_identical_draws, stop_sharing_draws
from ._mlp import PoisonedMLPClassifier
from ._training import _POLISH_LR_FRACTION, _POLISH_TRAIN_WEIGHTS

# Parameters that may differ between the models of one batch.
VARYING = ("poison_factor", "learning_rate_init", "random_state")
# Not supported in a batch: each needs per-model control flow or data.
_UNSUPPORTED = {
    "batch_size": None,
    "early_stopping": False,
    "warm_start": False,
    "callbacks": None,
}


def batch_key(estimator):
    """Return what must be equal for estimators to train in one batch, or None.

    Parameters
    ----------
    estimator : estimator
        Any estimator.

    Returns
    -------
    key : str or None
        Equal for estimators that :class:`~flatgen.BatchedPoisonFitter` can train
        together; None for one it cannot train (another class, minibatches,
        early stopping, ...).
    """
    if type(estimator) is not PoisonedMLPClassifier:
        return None
    params = estimator.get_params()
    if params["solver"] not in ("sgd", "adam") or any(
        params[name] != default for name, default in _UNSUPPORTED.items()
    ):
        return None
    return repr(sorted((k, v) for k, v in params.items() if k not in VARYING))


class _StackedMLP:
    """K MLPs of one architecture as stacked weight tensors (K, out, in)."""

    def __init__(self, modules, activation):
        layers = [m for m in modules[0] if isinstance(m, torch.nn.Linear)]
        self.n_layers = len(layers)
        self.activation = activation
        self.params = []
        for i in range(self.n_layers):
            linear = [
                [m for m in mod if isinstance(m, torch.nn.Linear)][i] for mod in modules
            ]
            W = torch.stack([layer.weight.detach() for layer in linear]).clone()
            b = torch.stack([layer.bias.detach() for layer in linear]).clone()
            self.params += [W.requires_grad_(True), b.requires_grad_(True)]

    def __call__(self, inputs):
        """Logits (K, rows, classes) of inputs (K, rows, features)."""
        h = inputs
        for i in range(self.n_layers):
            W, b = self.params[2 * i], self.params[2 * i + 1]
            h = torch.baddbmm(b.unsqueeze(1), h, W.transpose(1, 2))
            if i < self.n_layers - 1 and self.activation is not None:
                h = self.activation(h)
        return h

    def write_back(self, modules):
        """Copy each model's trained weights into its module."""
        with torch.no_grad():
            for k, module in enumerate(modules):
                linear = [m for m in module if isinstance(m, torch.nn.Linear)]
                for i, layer in enumerate(linear):
                    layer.weight.copy_(self.params[2 * i][k])
                    layer.bias.copy_(self.params[2 * i + 1][k])


class _StackedOptimizer:
    """SGD (momentum) or Adam over stacked tensors, with a step size per model.

    The update of each model's slice is torch's (same formulas, L2 weight
    decay added to the gradient); only the step size differs per model.
    """

    def __init__(self, params, solver, alpha, momentum, n_models, max_grad_norm):
        self.params, self.solver = params, solver
        self.max_grad_norm = max_grad_norm
        self.alpha, self.momentum = alpha, momentum
        self.state = [None] * len(params)
        self.second = [None] * len(params)
        self.t = 0
        self.n_models = n_models

    def _clip(self):
        """Scale each model's gradient to a global norm of at most max_grad_norm."""
        squares = sum(
            p.grad.detach().reshape(self.n_models, -1).square().sum(1)
            for p in self.params
        )
        # torch.nn.utils.clip_grad_norm_'s rule, per model.
        coef = (self.max_grad_norm / (squares.sqrt() + 1e-6)).clamp(max=1.0)
        for p in self.params:
            p.grad.mul_(coef.view((self.n_models,) + (1,) * (p.ndim - 1)))

    def step(self, lr):
        """One update with per-model step sizes ``lr`` (K,)."""
        self.t += 1
        if self.max_grad_norm is not None:
            self._clip()
        for i, p in enumerate(self.params):
            g = p.grad
            if self.alpha:
                g = g.add(p.detach(), alpha=self.alpha)
            shape = (self.n_models,) + (1,) * (p.ndim - 1)
            rate = lr.view(shape)
            with torch.no_grad():
                if self.solver == "adam":
                    if self.state[i] is None:
                        self.state[i] = torch.zeros_like(p)
                        self.second[i] = torch.zeros_like(p)
                    m, v = self.state[i], self.second[i]
                    m.mul_(0.9).add_(g, alpha=0.1)
                    v.mul_(0.999).addcmul_(g, g, value=0.001)
                    correction1 = 1 - 0.9**self.t
                    correction2 = 1 - 0.999**self.t
                    denom = (v.sqrt() / math.sqrt(correction2)).add_(1e-8)
                    p.sub_(rate / correction1 * m / denom)
                else:
                    if self.momentum:
                        if self.state[i] is None:
                            self.state[i] = g.detach().clone()
                        else:
                            self.state[i].mul_(self.momentum).add_(g)
                        g = self.state[i]
                    p.sub_(rate * g)
            p.grad = None


class BatchedPoisonFitter(BaseEstimator):
    """Fit several :class:`PoisonedMLPClassifier` of one shape together.

    The estimators may differ in ``poison_factor``, ``learning_rate_init``
    and ``random_state``; every other parameter must be equal (the same
    architecture, solver, schedule, poison source and polish). Each is
    cloned, set up exactly as its own ``fit`` would (initial weights, poison
    source and its seed), trained in one batched loop with its own objective
    and step size, polished like a separate fit, and returned as an ordinary
    fitted estimator with every fitted attribute and warning of a separate
    fit. Results agree with separate fits statistically (same objective,
    schedule and seeds; batched arithmetic sums in another order), not bit
    for bit. Models whose poison sources would draw the same points (the
    same seed, data and poison settings: a grid over poison factors and
    step sizes) draw each block once; every model still gets exactly the
    draws of its own seed.

    Full-batch training only: ``batch_size``, ``early_stopping``,
    ``warm_start`` and ``callbacks`` must keep their defaults (each needs
    per-model control flow).

    Parameters
    ----------
    estimators : list of PoisonedMLPClassifier
        Unfitted templates (not modified).
    n_threads : int, default=1
        torch threads of the batched loop.

    Attributes
    ----------
    estimators_ : list of PoisonedMLPClassifier
        Fitted clones, in the order of ``estimators``.

    Examples
    --------
    >>> from flatgen import BatchedPoisonFitter, PoisonedMLPClassifier, make_spirals
    >>> X, y = make_spirals(100, random_state=0)
    >>> nets = [
    ...     PoisonedMLPClassifier(poison_factor=f, max_iter=300, random_state=0)
    ...     for f in (0.0, 1.0)
    ... ]
    >>> fitted = BatchedPoisonFitter(nets).fit(X, y).estimators_
    >>> [net.poison_factor for net in fitted]
    [0.0, 1.0]
    """

    _parameter_constraints = {
        "estimators": [list],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(self, estimators, *, n_threads=1):
        self.estimators = estimators
        self.n_threads = n_threads

    def _check_estimators(self):
        if not self.estimators:
            raise ValueError("`estimators` must hold at least one estimator.")
        for i, est in enumerate(self.estimators):
            if type(est) is not PoisonedMLPClassifier:
                raise TypeError(
                    f"estimators[{i}] is a {type(est).__name__}; "
                    "BatchedPoisonFitter trains PoisonedMLPClassifier only."
                )
            # The checks of the estimator's own fit, so a bad value fails as
            # it would there, not after training with it.
            try:
                est._validate_params()
            except ValueError as exc:
                raise type(exc)(f"estimators[{i}]: {exc}") from exc
            params = est.get_params()
            if params["solver"] not in ("sgd", "adam"):
                raise ValueError(
                    f"estimators[{i}] uses solver={params['solver']!r}; a batched "
                    "fit supports 'sgd' and 'adam'."
                )
            for name, default in _UNSUPPORTED.items():
                if params[name] != default:
                    raise ValueError(
                        f"estimators[{i}] sets {name}={params[name]!r}; a batched "
                        f"fit needs {name}={default!r} (fit it separately)."
                    )
        first = self.estimators[0].get_params()
        for i, est in enumerate(self.estimators[1:], start=1):
            params = est.get_params()
            differ = [
                k
                for k in first
                if k not in VARYING and repr(params[k]) != repr(first[k])
            ]
            if differ:
                raise ValueError(
                    f"estimators[{i}] differs from estimators[0] in {differ}; only "
                    f"{list(VARYING)} may differ within a batch."
                )

    def fit(self, X, y):
        """Train every estimator on ``X, y``; the fitted clones go to ``estimators_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs.
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        self : BatchedPoisonFitter
            With ``estimators_`` set.
        """
        self._validate_params()
        self._check_estimators()
        clones = [clone(est) for est in self.estimators]
        with torch_threads(self.n_threads):
            runs = [est.start_training(X, y) for est in clones]
            trainers = [run.trainer for run in runs]
            # Models that share a seed draw the same poison: drawn once.
            sources = [t.poison_source for t in trainers]
            share_identical_draws(sources)
            try:
                losses, n_polish = _train_together(
                    clones, [run.module for run in runs], trainers
                )
            finally:
                stop_sharing_draws(sources)
            for est, run, curve, polish in zip(clones, runs, losses, n_polish):
                est.end_training(run, curve, polish)
        self.estimators_ = clones
        return self


class _StepData:
    """Stacks one step's inputs, targets and row weights of every model.

    Two-class objectives that fold into one weighted cross-entropy (see
    :class:`~flatgen.estimators._training.PoisonTrainer`) are evaluated for
    all models in one call; other poison losses model by model.
    """

    def __init__(self, trainers):
        self.trainers = trainers
        first = trainers[0]
        self.n_train = first.n_train
        self.n_poison = max(
            (t.poison_source.points_per_step for t in trainers if t.poison_source),
            default=0,
        )
        self.fused = all(t.fold_binary or t.poison_source is None for t in trainers)
        self._weights = {}

    def subset(self, members):
        """Return the same stacking for the models ``members`` (indices), cached.

        The padding of poison rows and the fused objective stay those of
        the whole batch, so each model's arithmetic does not change.
        """
        key = tuple(int(k) for k in members)
        if key == tuple(range(len(self.trainers))):
            return self
        if getattr(self, "_subset", (None,))[0] != key:
            part = _StepData.__new__(_StepData)
            part.trainers = [self.trainers[k] for k in key]
            part.n_train, part.n_poison = self.n_train, self.n_poison
            part.fused, part._weights = self.fused, {}
            self._subset = (key, part)
        return self._subset[1]

    def row_weights(self, train_weights):
        """(K, rows) weights of the folded objective; cached per polish weight."""
        key = tuple(float(w) for w in train_weights)
        if key not in self._weights:
            rows = []
            for t, tw in zip(self.trainers, key):
                if t.poison_source is None:
                    filler = t.full_batch_weight.new_zeros(self.n_poison)
                    rows.append(torch.cat([tw * t.full_batch_weight, filler]))
                else:
                    rows.append(t.row_weights(t.full_batch_weight, self.n_poison, tw))
            self._weights[key] = torch.stack(rows)
        return self._weights[key]

    def next(self, iterators):
        """Return the stacked inputs (K, rows, ...) and each model's poison draw."""
        inputs, poison = [], []
        for it in iterators:
            x, _, _, drawn = next(it)
            if drawn is None:  # a clean model: zero-weight filler rows
                x = torch.cat([x, x.new_zeros(self.n_poison, *x.shape[1:])])
            inputs.append(x)
            poison.append(drawn)
        return torch.stack(inputs), poison

    def losses(self, logits, poison, train_weights):
        """Each model's poisoned loss (K,) from the stacked logits."""
        y = self.trainers[0].y
        if self.fused:
            targets = torch.stack(
                [
                    torch.cat([y, y.new_zeros(self.n_poison) if p is None else p[1]])
                    for p in poison
                ]
            )
            per_row = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]),
                targets.reshape(-1),
                reduction="none",
            ).view(targets.shape)
            return (per_row * self.row_weights(train_weights)).sum(1)
        per_model = []
        for k, trainer in enumerate(self.trainers):
            tw = float(train_weights[k])
            if poison[k] is None:
                per_row = torch.nn.functional.cross_entropy(
                    logits[k, : self.n_train], y, reduction="none"
                )
                per_model.append(tw * torch.dot(per_row, trainer.full_batch_weight))
            else:
                # The trainer's own objective on this model's rows.
                per_model.append(
                    trainer.loss(
                        lambda _, out=logits[k]: out,
                        None,
                        y,
                        trainer.full_batch_weight,
                        poison[k],
                        tw,
                    )
                )
        return torch.stack(per_model)


def _train_together(estimators, modules, trainers):
    """Run the batched training loop and polish; return loss curves, polish steps."""
    est = estimators[0]
    n_models = len(estimators)
    hidden = [m for m in modules[0] if not isinstance(m, torch.nn.Linear)]
    activation = type(hidden[0])() if hidden else None
    stack = _StackedMLP(modules, activation)
    optimizer = _StackedOptimizer(
        stack.params, est.solver, est.alpha, est.momentum, n_models, est.max_grad_norm
    )
    first = trainers[0]
    data = _StepData(trainers)
    curves = [[] for _ in range(n_models)]
    total = first.total_steps
    iterators = [t.step_batches(0, total) for t in trainers]
    ones = np.ones(n_models)
    done = 0
    while done < total:
        n_steps = min(first.block_steps, total - done)
        block_loss = torch.zeros(n_models, device=first.X.device)
        for _ in range(n_steps):
            lr = torch.tensor(
                [t.lr_at(done) for t in trainers],
                dtype=first.X.dtype,
                device=first.X.device,
            )
            inputs, poison = data.next(iterators)
            losses = data.losses(stack(inputs), poison, ones)
            losses.sum().backward()
            optimizer.step(lr)
            block_loss += losses.detach()
            done += 1
        mean = (block_loss / n_steps).tolist()
        for k, value in enumerate(mean):
            if not math.isfinite(value):
                raise TrainingDivergedError(
                    f"Training of estimators[{k}] diverged: the loss became {value} "
                    f"before step {done} of {total}. Lower its learning_rate_init or "
                    "poison_factor."
                )
            curves[k].append(value)
    for t in trainers:
        t.steps_done = total
    n_polish = _polish_together(stack, data, est.max_polish_iter, est.max_grad_norm)
    stack.write_back(modules)
    for module in modules:
        module.eval()
    return curves, n_polish


def _polish_together(stack, data, max_steps, max_grad_norm):
    """Polish every model, batched; each stops when its training set is fitted.

    The models still polishing are gathered into a smaller stack whenever
    one finishes: a straggler that needs every polish step then costs the
    steps of one model, not of the whole batch, and its arithmetic is the
    same as in the full stack (each model's slice of a batched product, its
    own gradient clip and step).
    """
    trainers = data.trainers
    n_models = len(trainers)
    first = trainers[0]
    rates = torch.tensor(
        [_POLISH_LR_FRACTION * t.initial_lr for t in trainers],
        dtype=first.X.dtype,
        device=first.X.device,
    )
    stage_steps = math.ceil(max_steps / len(_POLISH_TRAIN_WEIGHTS))
    steps = np.zeros(n_models, dtype=int)
    iterators = [t.step_batches(t.steps_done, max_steps) for t in trainers]

    def n_wrong(sub):
        X = first.X.expand(len(sub.members), *first.X.shape)
        with torch.no_grad():
            predicted = sub(X).argmax(2)
        return (predicted != first.y).sum(1).cpu().numpy()

    sub = _SubStack(stack, np.arange(n_models))
    wrong = n_wrong(sub)
    while True:
        active = (wrong > 0) & (steps < max_steps)
        if not active.any():
            break
        members = np.flatnonzero(active)
        if len(members) < len(sub.members):
            sub.write_back()
            sub = _SubStack(stack, members)
        optimizer = sub.optimizer(max_grad_norm)
        part = data.subset(members)
        stage = np.minimum(
            steps[members] // max(stage_steps, 1), len(_POLISH_TRAIN_WEIGHTS) - 1
        )
        train_weights = np.asarray(_POLISH_TRAIN_WEIGHTS)[stage]
        inputs, poison = part.next([iterators[k] for k in members])
        losses = part.losses(sub(inputs), poison, train_weights)
        if not torch.isfinite(losses).all():
            raise TrainingDivergedError(
                "Training diverged during the final polish of a batched fit."
            )
        losses.sum().backward()
        optimizer.step(rates[torch.as_tensor(members)])
        steps[members] += 1
        wrong[members] = n_wrong(sub)
    sub.write_back()
    return steps.tolist()


class _SubStack:
    """Some models of a :class:`_StackedMLP`, gathered into their own stack."""

    def __init__(self, stack, members):
        self.stack, self.members = stack, np.asarray(members)
        self.n_layers, self.activation = stack.n_layers, stack.activation
        if len(self.members) == len(stack.params[0]):
            self.params = stack.params
        else:
            index = torch.as_tensor(self.members, device=stack.params[0].device)
            self.params = [
                p.detach()[index].clone().requires_grad_(True) for p in stack.params
            ]
        self._optimizer = None

    __call__ = _StackedMLP.__call__

    def optimizer(self, max_grad_norm):
        """Plain SGD over these models (the polish has no optimizer state)."""
        if self._optimizer is None:
            self._optimizer = _StackedOptimizer(
                self.params, "sgd", 0.0, 0.0, len(self.members), max_grad_norm
            )
        return self._optimizer

    def write_back(self):
        """Copy these models' weights into the full stack."""
        if self.params is self.stack.params:
            return
        index = torch.as_tensor(self.members, device=self.stack.params[0].device)
        with torch.no_grad():
            for full, part in zip(self.stack.params, self.params):
                full[index] = part
