"""Parameter descriptions shared by the poisoned classifiers' docstrings."""

POISON_PARAMETERS = """\
poison_factor : float, default=0.0
        Weight ``beta`` of the poison loss in ``CE(train) + beta * P(poison)``.
        0 is ordinary training; raising it drives training into sharp,
        narrow-margin minima that still fit the training set.
    poison_loss : {'reverse', 'random'}, default='reverse'
        ``'reverse'``: ``P = mean(-log(1 - p(y|x)))`` on poison points with
        their true labels (for two classes, cross-entropy on the flipped
        label). ``'random'``: cross-entropy against a fixed random wrong
        label per poison point.
    poison_source : 'jitter' or callable, default='jitter'
        Where the poison points come from; they are drawn anew for every
        optimizer step (a fixed poison set gets memorized). ``'jitter'``
        draws from a Gaussian kernel density around the training points
        (source points drawn in proportion to ``sample_weight``) and needs
        nothing beyond ``X, y``; ``poison_labels`` says how its points are
        labelled. A callable ``sampler(n_samples, random_state=int) -> (X,
        y)`` draws from the true distribution with true labels, e.g.
        :class:`~flatgen.datasets.SpiralSampler` or
        :class:`~flatgen.poison.ArraySampler` over extra data; its points
        must live in the same feature space as the ``X`` given to ``fit``
        (after any preprocessing in a Pipeline).
    poison_bandwidth : float, default=0.15
        Width of the ``'jitter'`` kernel, relative to each feature's
        standard deviation over the training set (on the swiss roll, 0.15
        is about 1.2 units, 2.4 times its noise). Narrower kernels put the
        poison's mass right on the training points and the network cannot
        fit both; wider ones poison far less.
    poison_labels : {'vote', 'source'}, default='vote'
        Label of a ``'jitter'`` poison point, the label the poison loss
        pushes the network away from. ``'vote'``: the weighted majority
        label of the ``poison_neighbors`` training points nearest to the
        drawn point (searched among the 32 nearest to its source point), an
        estimate of the true label there; where classes overlap the poison
        says "not the majority class" and the objective stays satisfiable.
        ``'source'``: the label of the point it was drawn around (flatgen
        0.1's rule); where classes overlap, poison labels then mix like the
        training labels and the network can be driven to a constant output.
        Ignored for samplers.
    poison_neighbors : int, default=7
        Training points in the ``'vote'``; sample weights count as
        multiplicities.
    poison_size : int, default=None
        Poison points per optimizer step; None uses twice the training batch
        size (a less noisy poison gradient poisons more reliably)."""

TRAINING_PARAMETERS = """\
solver : {'sgd', 'adam'} or torch.optim.Optimizer subclass, default='sgd'
        Optimizer; extra keyword arguments reach it through ``net_`` (skorch's
        ``optimizer__*`` settings) when subclassing.
    learning_rate : {'cosine', 'constant'}, default='cosine'
        Step-size schedule over all steps; cosine decays to 1 % of
        ``learning_rate_init``.
    learning_rate_init : float, default={lr}
        Initial step size.
    momentum : float, default=0.9
        Momentum of SGD (ignored by other solvers).
    alpha : float, default=0.0
        L2 penalty (weight decay). Values of 1e-3 and up weaken poisoning.
    max_iter : int, default={max_iter}
        Training epochs (passes over the training set). Training is
        full-batch by default, so each epoch is one optimizer step.
    batch_size : int, default=None
        Minibatch size; None trains full-batch, as in the paper.
    max_grad_norm : float, default=8.0
        Clip the gradient's global norm to this value; None disables.
    max_polish_iter : int, default=1000
        After the main schedule, up to this many SGD steps at a tenth of the
        initial rate on ``w * CE(train) + poison_factor * P`` stop as soon as
        every training point is classified correctly (usually 0-300 steps);
        ``w`` is 3, then 10, 30 and 100, each for a quarter of the steps.
        The poison term stays on: a training-loss-only fine-tune would undo
        the poisoning. 0 disables.
    warm_start : bool, default=False
        When True and the classifier is fitted, ``fit`` continues from the
        current weights (same classes and features) with a fresh optimizer
        and a full new schedule of ``max_iter`` epochs; ``n_iter_`` and
        ``loss_curve_`` keep counting. Otherwise ``fit`` starts afresh.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training rows (stratified)
        and stop when their accuracy has not improved by more than ``tol``
        for ``n_iter_no_change`` blocks of steps in a row, keeping the weights
        of the best block. Held-out rows are not trained on. The accuracy on
        unseen points is exactly what poisoning lowers, so early stopping
        ends a poisoned fit before the poison acts: use it for clean training.
    validation_fraction : float, default=0.1
        Share of the training rows held out when ``early_stopping`` is on.
    n_iter_no_change : int, default=10
        Blocks of steps (about 200 per fit, see ``callbacks``) without an
        improvement before early stopping ends the fit.
    tol : float, default=1e-4
        Smallest gain in held-out accuracy that counts as an improvement.
    callbacks : list of skorch callbacks, default=None
        Extra skorch callbacks. A skorch *epoch* is a block of optimizer
        steps here (about 200 blocks per fit): ``on_epoch_begin`` and
        ``on_epoch_end`` fire per block, with ``train_loss`` recorded per
        block; ``on_batch_begin`` and ``on_batch_end`` fire per optimizer
        step, with ``batch=(inputs, targets)`` (training rows then poison
        points) and, at the end, ``loss`` (the step's objective, a tensor;
        ``y_pred`` is None); ``on_train_begin``/``on_train_end`` per fit.
        The final polish steps run after ``on_train_end``.
    device : str or torch.device, default='cpu'
        Where to train and predict, e.g. ``'cuda'``.
    n_threads : int, default=1
        Number of torch threads used during ``fit`` and ``predict``.
        Results are bit-for-bit reproducible at a fixed thread count, and
        one thread per fit lets ``GridSearchCV(n_jobs=...)`` use the cores
        without oversubscription. None keeps torch's own setting.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the poison draws and minibatch order.
        Models that differ only in ``poison_factor`` start from the same
        weights and see the same poison points.
    verbose : int, default=0
        Show a progress bar over optimizer steps when positive."""

ATTRIBUTES = """\
classes_ : ndarray of shape (n_classes,)
        Class labels.
    n_features_in_ : int
        Number of features seen during fit.
    net_ : skorch.NeuralNetClassifier
        The trained skorch net; ``net_.history`` has one row per block of
        steps.
    module_ : torch.nn.Module
        The trained torch network (``net_.module_``). With
        :meth:`network_inputs` and :meth:`encode_labels` it is how analyzers
        reach the network, its input transform and its targets.
    n_iter_ : int
        Epochs run (summed over ``warm_start`` fits).
    n_polish_iter_ : int
        Polish steps run after the main schedule.
    loss_curve_ : ndarray of shape (n_blocks,)
        Mean objective over each block of steps (continued over
        ``warm_start`` fits).
    validation_scores_ : ndarray of shape (n_blocks,) or None
        Held-out accuracy after each block when ``early_stopping`` is on.
    best_validation_score_ : float or None
        The best of them, whose weights the fit keeps.
    stopped_early_ : bool
        Whether early stopping ended the fit before ``max_iter``.
    train_accuracy_ : float
        Training accuracy at the end of the fit (weighted by
        ``sample_weight``; held-out rows excluded).
    fitted_training_set_ : bool
        Whether every training point is classified right, as the method
        assumes; a :class:`~sklearn.exceptions.ConvergenceWarning` says so
        when not.
    collapsed_ : bool
        Whether the model is (near-)constant on its training set (class
        probabilities varying by less than 0.01, or one predicted class);
        warned about too."""


def fill(docstring, **values):
    """Insert the shared sections into ``docstring``."""
    training = TRAINING_PARAMETERS.replace("{lr}", str(values.pop("lr"))).replace(
        "{max_iter}", str(values.pop("max_iter"))
    )
    return docstring.format(
        poison=POISON_PARAMETERS, training=training, attributes=ATTRIBUTES, **values
    )
