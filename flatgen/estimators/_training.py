"""The training loop behind the poisoned classifiers, as a skorch net.

The paper trains tiny networks full-batch for tens of thousands of steps,
where a step costs about a millisecond. skorch's per-epoch machinery (a
DataLoader collating samples, a criterion call, history rows) would cost more
than the step itself, so the relation to skorch is this:

- :class:`PoisonTrainer` owns the arithmetic: the data on the device, the
  poison draws, the objective (training cross-entropy plus a poison loss
  from ``flatgen.poison.POISON_LOSSES``), the schedule and the polish.
- :class:`PoisonTrainingNet` (skorch) owns the module and optimizer set-up,
  device placement, the history and the callbacks. One skorch *epoch* is a
  block of optimizer steps (about 200 blocks per fit); ``on_epoch_*``
  callbacks fire per block, ``on_batch_begin``/``on_batch_end`` per
  optimizer step (``batch=(inputs, targets)``, ``loss`` the step's
  objective), ``on_train_*`` per fit. skorch's data iterator and criterion
  are not used for training; prediction calls the module directly.
"""

import math

import torch
from skorch import NeuralNetClassifier
from skorch.callbacks import Callback, EpochTimer
from tqdm.auto import tqdm

from ..exceptions import TrainingDivergedError
from ..poison import is_flipped_cross_entropy_for_two_classes, poison_loss

# Number of history rows a fit aims for: enough for a loss curve, few enough
# that per-block bookkeeping is negligible and pickles stay small.
_TARGET_RECORDS = 200
# The final polish weights the training loss up so the last few
# misclassified training points get fitted while the poison term stays on,
# and weights it up further, stage by stage, while points stay misclassified.
_POLISH_TRAIN_WEIGHTS = (3.0, 10.0, 30.0, 100.0)
# Poison points are drawn for this many polish steps at a time: most polishes
# end within a few steps.
_POLISH_CHUNK = 50
_POLISH_LR_FRACTION = 0.1
# Stands in for the ``module`` argument in a pickled net (see __getstate__).
_SAME_AS_MODULE_ = "<the trained module_>"


class ProgressBar(Callback):
    """tqdm progress bar over optimizer steps, updated once per block."""

    def __init__(self, disable=False):
        self.disable = disable

    def on_train_begin(self, net, **kwargs):
        self.bar_ = tqdm(
            total=net.trainer.total_steps,
            disable=self.disable,
            desc="training",
            unit="step",
            leave=False,
        )

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        self.bar_.update(row["n_steps"])
        self.bar_.set_postfix(loss=f"{row['train_loss']:.4g}", refresh=False)

    def on_train_end(self, net, **kwargs):
        self.bar_.close()


class ValidationStopping(Callback):
    """Early stopping on held-out accuracy, checked after every block of steps.

    Records ``valid_acc`` in the history; when it has not improved by more
    than ``tol`` for ``n_iter_no_change`` blocks in a row, training stops
    (skorch's way: a KeyboardInterrupt from a callback) and the weights of
    the best block are restored.

    Parameters
    ----------
    X : torch.Tensor
        Held-out inputs on the training device.
    y : torch.LongTensor
        Their encoded labels.
    weight : torch.Tensor
        Their weights.
    n_iter_no_change : int
        Blocks without improvement before stopping.
    tol : float
        Smallest accuracy gain that counts as an improvement.
    """

    def __init__(self, X, y, weight, n_iter_no_change, tol):
        self.X, self.y, self.weight = X, y, weight
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol

    def on_train_begin(self, net, **kwargs):
        self.best_score_ = -math.inf
        self.best_state_ = None
        self.misses_ = 0
        self.stopped_early_ = False

    @torch.no_grad()
    def _score(self, module):
        module.eval()
        correct = torch.cat(
            [
                (module(self.X[i : i + 4096]).argmax(1) == self.y[i : i + 4096])
                for i in range(0, len(self.y), 4096)
            ]
        )
        module.train()
        return float(
            (correct.to(self.weight.dtype) * self.weight).sum() / self.weight.sum()
        )

    def on_epoch_end(self, net, **kwargs):
        score = self._score(net.module_)
        net.history.record("valid_acc", score)
        if score > self.best_score_ + self.tol:
            self.best_score_ = score
            self.best_state_ = {
                k: v.detach().clone() for k, v in net.module_.state_dict().items()
            }
            self.misses_ = 0
            return
        self.misses_ += 1
        if self.misses_ >= self.n_iter_no_change:
            self.stopped_early_ = True
            raise KeyboardInterrupt

    def on_train_end(self, net, **kwargs):
        if self.best_state_ is not None:
            net.module_.load_state_dict(self.best_state_)


class PoisonTrainingNet(NeuralNetClassifier):
    """skorch classifier whose epochs are blocks of poisoned optimizer steps.

    Parameters
    ----------
    module : torch.nn.Module
        The network.
    *args, **kwargs
        skorch's ``NeuralNetClassifier`` arguments.
    trainer : PoisonTrainer, default=None
        The training loop's state for one fit. The estimators pass it when
        they build the net and set it to None after the fit, so that a
        fitted (or pickled) net holds no training data.
    """

    def __init__(self, module, *args, trainer=None, **kwargs):
        super().__init__(module, *args, **kwargs)
        self.trainer = trainer

    def get_default_callbacks(self):
        """Time each block; the loss is recorded by :meth:`run_single_epoch`."""
        return [("epoch_timer", EpochTimer())]

    def __getstate__(self):
        state = super().__getstate__()
        # The estimators pass a module *instance*, so the ``module`` argument is
        # the trained ``module_``. skorch pickles ``module_`` with device
        # mapping on load but ``module`` as-is: a net trained on a GPU would
        # then fail to unpickle on a CPU-only machine. Store a marker instead.
        if state.get("module") is self.__dict__.get("module_"):
            state["module"] = _SAME_AS_MODULE_
        return state

    def __setstate__(self, state):
        same = isinstance(state.get("module"), str) and (
            state["module"] == _SAME_AS_MODULE_
        )
        super().__setstate__(state)
        if same:
            self.module = self.module_

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        """Run one block of optimizer steps and record its statistics."""
        if not training:
            return
        try:
            stats = self.trainer.run_block(
                self.module_, self.optimizer_, notify=self.notify
            )
        except KeyboardInterrupt:
            # skorch treats KeyboardInterrupt as "stop early" (its EarlyStopping
            # raises it from a callback); a user's Ctrl-C must still propagate.
            self.trainer.interrupted = True
            raise
        for key, value in stats.items():
            self.history.record(key, value)


class PoisonTrainer:
    """Poisoned full-batch or minibatch training on tensors on the device.

    Parameters
    ----------
    X : torch.Tensor of shape (n_train, ...)
        Training inputs.
    y : torch.LongTensor of shape (n_train,)
        Encoded training labels.
    sample_weight : torch.Tensor of shape (n_train,)
        Weight of each training row; a batch's training loss is the
        weighted mean of its rows' cross-entropies.
    n_epochs : int
        Passes over the training set.
    batch_size : int or None
        Minibatch size; None trains full-batch.
    poison_factor : float
        Weight of the poison loss.
    poison_kind : {'reverse', 'random'}
        Poison loss.
    poison_source : JitterSource, SamplerSource or None
        Where poison points come from; unused when ``poison_factor`` is 0.
    learning_rate : {'cosine', 'constant'}
        Step-size schedule; cosine decays to 1 % of the initial rate.
    learning_rate_init : float
        Initial step size (the optimizer's ``lr``); the polish runs at a
        tenth of it.
    max_grad_norm : float or None
        Clip the gradient's global norm to this value.
    generator : torch.Generator
        Seeded generator for minibatch order.
    n_classes : int
        Number of classes.

    Attributes
    ----------
    full_batch_weight : torch.Tensor of shape (n_train,)
        Each row's weight in a full-batch step (summing to 1).
    fold_binary : bool
        Whether, with two classes, the poison loss is the cross-entropy on
        the flipped label, so a step's whole objective is one weighted
        cross-entropy over training and poison rows (:meth:`row_weights`).
    steps_done, total_steps, block_steps, initial_lr
        Progress and schedule of the run.

    Notes
    -----
    :meth:`step_batches`, :meth:`lr_at`, :meth:`loss` and :meth:`row_weights`
    are the seams a driver that trains several runs together uses
    (:class:`~flatgen.BatchedPoisonFitter`): each model's batches, poison
    draws and step sizes come from its own trainer, exactly as in its own
    :meth:`~flatgen.PoisonedMLPClassifier.fit`.
    """

    def __init__(
        self,
        X,
        y,
        sample_weight,
        *,
        n_epochs,
        batch_size,
        poison_factor,
        poison_kind,
        poison_source,
        learning_rate,
        learning_rate_init,
        max_grad_norm,
        generator,
        n_classes,
    ):
        self.X, self.y = X, y
        self.sample_weight = sample_weight
        self.n_train = len(X)
        self.batch_size = (
            self.n_train if batch_size is None else min(batch_size, len(X))
        )
        self.steps_per_epoch = math.ceil(self.n_train / self.batch_size)
        self.total_steps = n_epochs * self.steps_per_epoch
        self.poison_factor = float(poison_factor)
        self.poison_kind = poison_kind
        self.poison_source = poison_source if self.poison_factor > 0 else None
        self.learning_rate = learning_rate
        self.max_grad_norm = max_grad_norm
        self.generator = generator
        self.steps_done = 0
        self.interrupted = False
        self.initial_lr = float(learning_rate_init)
        # With two classes the poison losses that equal the flipped-label
        # cross-entropy let one weighted cross-entropy do the whole objective.
        self.fold_binary = n_classes == 2 and is_flipped_cross_entropy_for_two_classes(
            poison_kind
        )
        epochs_per_block = max(1, math.ceil(n_epochs / _TARGET_RECORDS))
        self.block_steps = epochs_per_block * self.steps_per_epoch
        self._order = None
        self.n_classes = n_classes
        self.full_batch_weight = sample_weight / sample_weight.sum()
        self._row_weight_cache = {}

    @property
    def n_blocks(self):
        """Number of skorch epochs (blocks) needed for all steps."""
        return math.ceil(self.total_steps / self.block_steps)

    def lr_at(self, step):
        """Return the learning rate of a step (constant or cosine schedule).

        Parameters
        ----------
        step : int
            Index of the step, from 0.

        Returns
        -------
        lr : float
            The step size; the cosine schedule decays to 1 % of the initial.
        """
        if self.learning_rate == "constant":
            return self.initial_lr
        final = 0.01 * self.initial_lr
        progress = step / max(1, self.total_steps - 1)
        return final + 0.5 * (self.initial_lr - final) * (
            1 + math.cos(math.pi * progress)
        )

    def _batch(self, step):
        if self.batch_size == self.n_train:
            return self.X, self.y, self.full_batch_weight
        position = step % self.steps_per_epoch
        if position == 0 or self._order is None:
            self._order = torch.randperm(
                self.n_train, generator=self.generator, device=self.X.device
            )
        idx = self._order[position * self.batch_size : (position + 1) * self.batch_size]
        weight = self.sample_weight[idx]
        return self.X[idx], self.y[idx], weight / weight.sum()

    def loss(self, module, inputs, y, weight, poison, train_weight):
        """Return the objective of one step.

        ``inputs`` holds the training batch followed by the poison points, so
        both go through the network in one forward pass; ``weight`` holds the
        batch rows' weights, summing to 1; ``train_weight`` scales the
        training term (the polish's stages).

        Parameters
        ----------
        module : torch.nn.Module
            The network.
        inputs : torch.Tensor
            Training rows, then poison rows.
        y : torch.Tensor of shape (n_rows,)
            The training rows' labels.
        weight : torch.Tensor of shape (n_rows,)
            Their weights.
        poison : tuple of torch.Tensor or None
            The poison rows' (labels, wrong labels); None without poison.
        train_weight : float
            Factor of the training term.

        Returns
        -------
        loss : torch.Tensor
            The scalar objective.
        """
        logits = module(inputs)
        n = len(y)
        if poison is not None and self.fold_binary:
            # The poison loss is the cross-entropy on the flipped label: one
            # weighted cross-entropy over all rows does the whole objective in
            # a few ops (the step is overhead-bound).
            y_p = poison[1]
            targets = torch.cat([y, y_p])
            weights = self.row_weights(weight, len(y_p), train_weight)
            per_row = torch.nn.functional.cross_entropy(
                logits, targets, reduction="none"
            )
            return torch.dot(per_row, weights)
        per_row = torch.nn.functional.cross_entropy(logits[:n], y, reduction="none")
        loss = torch.dot(per_row, weight)
        if train_weight != 1.0:
            loss = train_weight * loss
        if poison is not None:
            y_p, wrong_p = poison
            loss = loss + self.poison_factor * poison_loss(
                logits[n:], y_p, wrong_p, self.poison_kind
            )
        return loss

    def row_weights(self, weight, n_poison, train_weight):
        """Return the weights of the training rows and poison rows of one step.

        Parameters
        ----------
        weight : torch.Tensor of shape (n_rows,)
            The training rows' weights (summing to 1).
        n_poison : int
            Number of poison rows.
        train_weight : float
            Factor of the training term.

        Returns
        -------
        weights : torch.Tensor of shape (n_rows + n_poison,)
            ``train_weight * weight``, then ``poison_factor / n_poison`` each.
        """
        key = (n_poison, train_weight)
        if weight is self.full_batch_weight and key in self._row_weight_cache:
            return self._row_weight_cache[key]
        poison = torch.full(
            (n_poison,), self.poison_factor / n_poison, device=self.X.device
        )
        weights = torch.cat([train_weight * weight, poison])
        if weight is self.full_batch_weight:
            self._row_weight_cache[key] = weights
        return weights

    def step_batches(self, first_step, n_steps):
        """Yield ``(inputs, y, weight, poison)`` for each of the next ``n_steps`` steps.

        Poison points are drawn for many steps at once; in full-batch training
        the training inputs are stacked with each step's poison points once
        per block, so a step's input is a view and costs no copy.

        Parameters
        ----------
        first_step : int
            Index of the first step.
        n_steps : int
            Number of steps.

        Yields
        ------
        inputs : torch.Tensor
            Training rows, then the step's poison rows.
        y : torch.Tensor
            Training labels.
        weight : torch.Tensor
            Training rows' weights.
        poison : tuple of torch.Tensor or None
            Poison labels and wrong labels.
        """
        step, end = first_step, first_step + n_steps
        while step < end:
            if self.poison_source is None:
                X, y, weight = self._batch(step)
                yield X, y, weight, None
                step += 1
                continue
            size = self.poison_source.block_size(end - step)
            X_p, y_p, wrong_p = self.poison_source.draw(size)
            if self.batch_size == self.n_train:
                stacked = torch.cat([self.X.expand(size, *self.X.shape), X_p], dim=1)
                weight = self.full_batch_weight
                for i in range(size):
                    yield stacked[i], self.y, weight, (y_p[i], wrong_p[i])
            else:
                for i in range(size):
                    X, y, weight = self._batch(step + i)
                    yield torch.cat([X, X_p[i]]), y, weight, (y_p[i], wrong_p[i])
            step += size

    def _update(self, module, optimizer, loss):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(
                module.parameters(), self.max_grad_norm, foreach=True
            )
        optimizer.step()

    def run_block(self, module, optimizer, notify=None):
        """Run the next block of steps; return its history row.

        Parameters
        ----------
        module : torch.nn.Module
            The network being trained.
        optimizer : torch.optim.Optimizer
            Its optimizer; its learning rate follows :meth:`lr_at`.
        notify : callable, default=None
            skorch's ``net.notify``, called with ``'on_batch_begin'`` and
            ``'on_batch_end'`` around every step.

        Returns
        -------
        row : dict
            The block's ``train_loss`` (mean over its steps).
        """
        module.train()
        n_steps = min(self.block_steps, self.total_steps - self.steps_done)
        loss_sum = torch.zeros((), device=self.X.device)
        lr = self.initial_lr
        for inputs, y, weight, poison in self.step_batches(self.steps_done, n_steps):
            lr = self.lr_at(self.steps_done)
            for group in optimizer.param_groups:
                group["lr"] = lr
            if notify is not None:
                notify("on_batch_begin", batch=(inputs, y), training=True)
            loss = self.loss(module, inputs, y, weight, poison, 1.0)
            self._update(module, optimizer, loss)
            if notify is not None:
                notify(
                    "on_batch_end",
                    batch=(inputs, y),
                    training=True,
                    loss=loss.detach(),
                    y_pred=None,
                )
            loss_sum += loss.detach()
            self.steps_done += 1
        # One host sync per block: the divergence check costs nothing per step.
        mean_loss = float(loss_sum) / n_steps
        if not math.isfinite(mean_loss):
            raise TrainingDivergedError(
                f"Training diverged: the loss became {mean_loss} before step "
                f"{self.steps_done} of {self.total_steps}. Lower learning_rate_init "
                "or poison_factor, or set max_grad_norm."
            )
        return {"train_loss": mean_loss, "n_steps": n_steps, "lr": lr}

    @torch.no_grad()
    def _n_wrong(self, module):
        module.eval()
        wrong = 0
        for start in range(0, self.n_train, 4096):
            logits = module(self.X[start : start + 4096])
            wrong += int((logits.argmax(1) != self.y[start : start + 4096]).sum())
        return wrong

    def polish(self, module, max_steps):
        """Fit the last misclassified training points with the poison term on.

        Plain SGD at a tenth of the initial rate on
        ``w * CE(train) + poison_factor * poison``, stopping as soon as every
        training point is classified correctly. ``w`` starts at 3 and rises
        to 10, 30 and 100, each for a quarter of ``max_steps``, so training
        points the poison outweighs still get fitted. A polish on the
        training loss alone would undo the poisoning within a few steps.

        Parameters
        ----------
        module : torch.nn.Module
            The trained network.
        max_steps : int
            Most polish steps.

        Returns
        -------
        n_steps : int
            Polish steps taken.
        """
        optimizer = torch.optim.SGD(
            module.parameters(), lr=_POLISH_LR_FRACTION * self.initial_lr
        )
        n_steps = 0
        stage_steps = math.ceil(max_steps / len(_POLISH_TRAIN_WEIGHTS))
        n_wrong = self._n_wrong(module)
        for train_weight in _POLISH_TRAIN_WEIGHTS:
            stage_end = min(max_steps, n_steps + stage_steps)
            while n_steps < stage_end and n_wrong > 0:
                chunk = min(_POLISH_CHUNK, stage_end - n_steps)
                for inputs, y, weight, poison in self.step_batches(
                    self.steps_done + n_steps, chunk
                ):
                    module.train()
                    loss = self.loss(module, inputs, y, weight, poison, train_weight)
                    if not torch.isfinite(loss):
                        raise TrainingDivergedError(
                            "Training diverged during the final polish: loss "
                            f"{float(loss)}."
                        )
                    self._update(module, optimizer, loss)
                    n_steps += 1
                    n_wrong = self._n_wrong(module)
                    if n_wrong == 0:
                        break
            if n_wrong == 0:
                break
        module.eval()
        return n_steps
