"""The poison objective: poison losses and the sources of poison points.

A poison point is drawn from the training distribution and carries its
*true* label; the poison loss rewards the network for being wrong on it. The
sources below hand the training loop poison points for many optimizer steps
at once, already on the training device, so drawing them costs next to
nothing per step.
"""

import inspect
import warnings
from numbers import Integral

import numpy as np
import torch
from sklearn.utils import check_random_state

__all__ = ["ArraySampler", "poison_loss", "POISON_LOSSES"]


# Upper bound on the floats held by one block of pre-drawn poison points.
_MAX_BLOCK_FLOATS = 4_000_000
# The vote's one-off nearest-row search warns above this many multiply-adds
# (tens of seconds on a laptop core).
_VOTE_SEARCH_WARN_WORK = 10_000_000_000
# Inputs with at most this many features get per-feature candidate tables in
# the neighbour vote (see JitterSource).
_COORDINATE_TABLES_MAX_FEATURES = 2


def _reverse_loss(logits, y_true, y_wrong):
    # -log(1 - p_y) = logsumexp(all logits) - logsumexp(logits other than y):
    # exact and stable even when p_y rounds to 1 in float32.
    others = logits.scatter(1, y_true[:, None], float("-inf"))
    return (torch.logsumexp(logits, dim=1) - torch.logsumexp(others, dim=1)).mean()


def _random_loss(logits, y_true, y_wrong):
    return torch.nn.functional.cross_entropy(logits, y_wrong)


# The poison losses, by name: the one place a new one is added. Each maps
# (logits, true labels, wrong labels) to the batch mean. With two classes
# both equal the cross-entropy on the flipped label (for 'random' the one
# wrong label is the other class), which the training loop uses to fold the
# whole objective into one weighted cross-entropy; a loss added here without
# that property must be listed in _NOT_FLIPPED_CE_FOR_TWO_CLASSES.
POISON_LOSSES = {"reverse": _reverse_loss, "random": _random_loss}
_NOT_FLIPPED_CE_FOR_TWO_CLASSES = frozenset()


def is_flipped_cross_entropy_for_two_classes(kind):
    """Return whether poison loss ``kind`` is the flipped-label CE for two classes."""
    return kind in POISON_LOSSES and kind not in _NOT_FLIPPED_CE_FOR_TWO_CLASSES


def poison_loss(logits, y_true, y_wrong, kind="reverse"):
    """Mean poison loss of a batch of poison points.

    Parameters
    ----------
    logits : torch.Tensor of shape (n_points, n_classes)
        The network's logits on the poison points.
    y_true : torch.LongTensor of shape (n_points,)
        True class index of each poison point.
    y_wrong : torch.LongTensor of shape (n_points,)
        A wrong class index per point, used by ``kind='random'``.
    kind : {'reverse', 'random'}, default='reverse'
        A name in ``flatgen.poison.POISON_LOSSES``. ``'reverse'`` is
        ``mean(-log(1 - p(y_true | x)))``, which for two classes equals the
        cross-entropy on the flipped label; ``'random'`` is the
        cross-entropy against ``y_wrong``.

    Returns
    -------
    loss : torch.Tensor
        A scalar.

    Examples
    --------
    >>> import torch
    >>> logits = torch.tensor([[2.0, 0.0]])
    >>> y = torch.tensor([0])
    >>> flipped = torch.nn.functional.cross_entropy(logits, 1 - y)
    >>> bool(torch.isclose(poison_loss(logits, y, 1 - y), flipped))
    True
    """
    try:
        loss = POISON_LOSSES[kind]
    except KeyError:
        raise ValueError(
            f"kind must be one of {sorted(POISON_LOSSES)}. Got {kind!r} instead."
        ) from None
    return loss(logits, y_true, y_wrong)


class ArraySampler:
    """Poison source that draws points, with replacement, from given data.

    Use it for real extra samples of the training distribution, such as
    SVHN's ``extra`` split. The arrays are held by the sampler, so the poison
    set passes through ``clone`` and ``GridSearchCV`` with no extra plumbing
    and is never sliced per fold.

    Parameters
    ----------
    X : array-like of shape (n_points, ...)
        Points of the training distribution, in the same feature space as
        the ``X`` given to the classifier's ``fit``.
    y : array-like of shape (n_points,)
        Their true labels, from the classifier's classes.

    Examples
    --------
    >>> import numpy as np
    >>> from flatgen.poison import ArraySampler
    >>> sampler = ArraySampler(np.arange(10.0).reshape(5, 2), np.array([0, 1, 0, 1, 0]))
    >>> X, y = sampler(3, random_state=0)
    >>> X.shape, y.shape
    ((3, 2), (3,))
    """

    def __init__(self, X, y):
        self.X = X
        self.y = y

    def __call__(self, n_samples, random_state=None):
        """Draw ``n_samples`` points and their labels with replacement.

        Parameters
        ----------
        n_samples : int
            Number of points.
        random_state : int, RandomState instance or None, default=None
            Seed of the draw.

        Returns
        -------
        X : ndarray of shape (n_samples, ...)
            The drawn points.
        y : ndarray of shape (n_samples,)
            Their labels.
        """
        if not isinstance(n_samples, Integral) or n_samples < 0:
            raise ValueError(
                f"n_samples must be a non-negative integer. Got {n_samples!r} instead."
            )
        X, y = np.asarray(self.X), np.asarray(self.y)
        if X.ndim == 0 or y.ndim != 1:
            raise ValueError(
                "ArraySampler needs X of shape (n_points, ...) and y of shape "
                f"(n_points,); got shapes {X.shape} and {y.shape}."
            )
        if len(X) == 0 or len(X) != len(y):
            raise ValueError(
                "ArraySampler needs X and y of the same, non-zero length; "
                f"got {len(X)} and {len(y)}."
            )
        idx = check_random_state(random_state).randint(len(X), size=n_samples)
        return X[idx], y[idx]

    def __repr__(self):
        return f"ArraySampler(<{len(self.X)} points>)"


def _block_steps(n_steps, points_per_step, floats_per_point):
    per_step = max(1, points_per_step * floats_per_point)
    return int(max(1, min(n_steps, _MAX_BLOCK_FLOATS // per_step)))


class JitterSource:
    """Gaussian kernel-density draws around the training points.

    Each poison point is a training point (drawn in proportion to its sample
    weight) plus Gaussian noise with a per-feature standard deviation of
    ``bandwidth`` times that feature's standard deviation, so the draw is the
    same whether or not the inputs were standardized first. Fresh points are
    drawn for every optimizer step: a fixed poison set gets memorized.

    Its label, the one the poison loss pushes the network away from, is an
    estimate of the true label at the drawn point:

    - ``labels='vote'``: the weighted majority of the ``n_neighbors``
      training rows nearest to the drawn point (sample weights count as
      multiplicities; ties go to the source point's label). Where classes
      overlap, a poison point then carries the label most training points
      around it have, and the objective stays satisfiable: the network can
      fit every training point and still be wrong on most of the region.
    - ``labels='source'``: the source point's own label. Where classes
      overlap, poison labels mix like the training labels, the poison term
      is smallest for class probabilities near the mixture's and the
      objective's best compromise can be a constant model.

    Parameters
    ----------
    X : torch.Tensor of shape (n_train, ...)
        Training inputs on the training device.
    y : torch.LongTensor of shape (n_train,)
        Encoded training labels.
    weight : torch.Tensor of shape (n_train,)
        Sample weights: source points are drawn in proportion to them, the
        feature spread is their weighted standard deviation and votes count
        them.
    n_classes : int
        Number of classes.
    points_per_step : int
        Poison points per optimizer step.
    bandwidth : float
        Kernel width relative to each feature's standard deviation.
    generator : torch.Generator
        Seeded generator on the training device.
    labels : {'vote', 'source'}, default='vote'
        How a poison point gets its label (above).
    n_neighbors : int, default=7
        Neighbours in the vote.
    """

    def __init__(
        self,
        X,
        y,
        weight,
        n_classes,
        points_per_step,
        bandwidth,
        generator,
        labels="vote",
        n_neighbors=7,
    ):
        self.X, self.y = X, y
        self.weight = weight
        self.n_classes = n_classes
        self.points_per_step = points_per_step
        self.generator = generator
        self.labels = labels
        self.n_neighbors = n_neighbors
        w = (weight / weight.sum()).reshape((-1,) + (1,) * (X.dim() - 1))
        mean = (w * X).sum(dim=0)
        self.sigma = bandwidth * ((w * (X - mean) ** 2).sum(dim=0)).sqrt()
        # Equal weights draw source points uniformly; otherwise by inverse CDF.
        self.cdf = None if bool((weight == weight[0]).all()) else weight.cumsum(0)
        # A fixed offset per source point gives it a fixed wrong label, for
        # the 'random' poison loss (added to whatever label the point gets).
        self.wrong_offset = torch.randint(
            1, max(n_classes, 2), (len(X),), generator=generator, device=X.device
        )
        self.floats_per_point = int(np.prod(X.shape[1:]))
        self.candidates = None
        self._shared = None  # set by share_identical_draws
        if labels == "vote":
            # A drawn point lies within a few bandwidths of its source, so its
            # nearest training rows are among the source's nearest rows: the
            # vote searches those candidates only, a fixed cost per point.
            n_candidates = min(len(X), max(32, 4 * n_neighbors))
            work = len(X) ** 2 * self.floats_per_point
            if work > _VOTE_SEARCH_WARN_WORK:
                warnings.warn(
                    f"poison_labels='vote' first finds the {n_candidates} nearest "
                    f"of the {len(X)} training rows to each of them, about "
                    f"{work:.2g} multiply-adds ({self.floats_per_point} features "
                    "per row): minutes or more on a CPU. poison_labels='source' "
                    "skips this search; a poison_source sampler needs no labels "
                    "from the training set.",
                    UserWarning,
                    stacklevel=4,
                )
            self.candidates = nearest_rows(X.reshape(len(X), -1), n_candidates)
            # Rows of weight >= 1 fill the vote within n_neighbors rows; only
            # lighter rows need the whole sorted candidate list.
            self.n_vote_rows = (
                min(n_neighbors, n_candidates)
                if bool((weight >= 1).all())
                else n_candidates
            )
            # For inputs of one or two features, the candidates' coordinates
            # as one (n_train, n_candidates) table per feature: a draw then
            # gathers whole rows, ~10x cheaper than gathering the candidates
            # point by point, and the squared distance is summed in the
            # same order as before (the labels are bit for bit the same).
            self.candidate_coords = None
            if self.floats_per_point <= _COORDINATE_TABLES_MAX_FEATURES:
                flat = X.reshape(len(X), -1)
                self.candidate_coords = [
                    flat[:, j][self.candidates].contiguous()
                    for j in range(self.floats_per_point)
                ]

    def block_size(self, n_steps):
        """Return how many steps one pre-drawn block may cover."""
        return _block_steps(n_steps, self.points_per_step, self.floats_per_point)

    def draw(self, n_steps):
        """Return poison inputs, true and wrong labels for ``n_steps`` steps.

        Parameters
        ----------
        n_steps : int
            Number of optimizer steps to cover.

        Returns
        -------
        X : torch.Tensor of shape (n_steps, points_per_step, ...)
        y_true, y_wrong : torch.LongTensor of shape (n_steps, points_per_step)
        """
        shared = self._shared
        if shared is None:
            return self._draw(n_steps)
        before = self.generator.get_state()
        found = shared.take(before, n_steps)
        if found is not None:
            drawn, after = found
            # The generator ends where its own draw would have left it.
            self.generator.set_state(after)
            return drawn
        drawn = self._draw(n_steps)
        shared.put(before, n_steps, drawn, self.generator.get_state())
        return drawn

    def _draw(self, n_steps):
        shape = (n_steps, self.points_per_step)
        idx = self._source_index(shape)
        noise = torch.randn(
            shape + self.X.shape[1:],
            generator=self.generator,
            device=self.X.device,
            dtype=self.X.dtype,
        )
        points = self.X[idx] + noise * self.sigma
        if self.candidates is None:
            labels = self.y[idx]
        else:
            flat = points.reshape(-1, self.floats_per_point)
            labels = self._vote(flat, idx.reshape(-1)).reshape(shape)
        wrong = (labels + self.wrong_offset[idx]) % self.n_classes
        return points, labels, wrong

    def _vote(self, points, source):
        """Weighted k-nearest-neighbour label of each point among its candidates.

        Ties go to the source point's own label.
        """
        flat_X = self.X.reshape(len(self.X), -1)
        n_candidates = self.candidates.shape[1]
        chunk = max(1, _MAX_BLOCK_FLOATS // (n_candidates * self.floats_per_point))
        labels = []
        for start in range(0, len(points), chunk):
            src = source[start : start + chunk]
            cand = self.candidates.index_select(0, src)
            chunk_points = points[start : start + chunk]
            if self.candidate_coords is not None:
                distance = None
                for j, table in enumerate(self.candidate_coords):
                    d = table.index_select(0, src) - chunk_points[:, j, None]
                    d = d * d
                    distance = d if distance is None else distance + d
            else:
                gathered = flat_X.index_select(0, cand.reshape(-1))
                diff = gathered.reshape(cand.shape + (-1,)) - chunk_points[:, None, :]
                distance = (diff * diff).sum(dim=2)
            order = distance.topk(self.n_vote_rows, dim=1, largest=False).indices
            nearest = cand.gather(1, order)
            w = self.weight.index_select(0, nearest.reshape(-1)).reshape(nearest.shape)
            # Take the nearest rows until their weights add up to n_neighbors
            # (weights are multiplicities: a row of weight 3 is 3 neighbours).
            before = w.cumsum(dim=1) - w
            share = (self.n_neighbors - before).clamp(min=0).minimum(w)
            votes = torch.zeros(
                len(cand), self.n_classes, device=points.device, dtype=w.dtype
            )
            nearest_y = self.y.index_select(0, nearest.reshape(-1))
            votes.scatter_add_(1, nearest_y.reshape(nearest.shape), share)
            # Ties go to the source point's own label.
            own = self.y.index_select(0, src)[:, None]
            votes.scatter_add_(1, own, share[:, :1] * 1e-3)
            labels.append(votes.argmax(dim=1))
        return torch.cat(labels)

    def _source_index(self, shape):
        if self.cdf is None:
            return torch.randint(
                len(self.X), shape, generator=self.generator, device=self.X.device
            )
        return _weighted_index(self.cdf, shape, self.generator)


# What a jitter source's draws depend on besides its generator's state.
_DRAW_SETTINGS = (
    "n_classes",
    "points_per_step",
    "labels",
    "n_neighbors",
    "floats_per_point",
    "n_vote_rows",
)
_DRAW_TENSORS = ("X", "y", "weight", "sigma", "cdf", "wrong_offset", "candidates")


def _draws_alike(a, b):
    """Whether jitter sources ``a`` and ``b`` will draw the same points.

    The same settings and data, and generators in the same state now.
    """
    if a.generator.device != b.generator.device:
        return False
    if not torch.equal(a.generator.get_state(), b.generator.get_state()):
        return False
    if any(getattr(a, k, None) != getattr(b, k, None) for k in _DRAW_SETTINGS):
        return False
    for name in _DRAW_TENSORS:
        u, v = getattr(a, name), getattr(b, name)
        if u is None or v is None:
            if u is not v:
                return False
        elif u.shape != v.shape or u.dtype != v.dtype or u.device != v.device:
            return False
        elif not torch.equal(u, v):
            return False
    return True


class _SharedDraws:
    """The latest blocks drawn by one group of alike jitter sources.

    A block is handed to a member only when the member's generator is in the
    very state the block was drawn from, so every member gets exactly the
    draws it would have made itself. Members that step together (a batched
    fit) take each block before the next is drawn; at most two are kept, so
    a member whose stream went its own way costs no memory, only its own
    draws.
    """

    _KEPT = 2

    def __init__(self, n_members):
        self.n_members = n_members
        self.blocks = []  # [state before, n_steps, drawn, state after, takers left]
        self.n_drawn = 0

    def take(self, state, n_steps):
        for block in self.blocks:
            if block[1] == n_steps and torch.equal(block[0], state):
                block[4] -= 1
                if block[4] == 0:
                    self.blocks.remove(block)
                return block[2], block[3]
        return None

    def put(self, state, n_steps, drawn, after):
        self.n_drawn += 1
        self.blocks.append([state, n_steps, drawn, after, self.n_members - 1])
        del self.blocks[: -self._KEPT]


def share_identical_draws(sources):
    """Let jitter sources that would draw the same points draw them once.

    Models of a grid that differ only in poison factor or learning rate
    share their seed, so their jitter sources draw the same poison points
    and labels step after step; in a batched fit the neighbour vote is then
    most of the drawing's cost, paid once per group instead of once per
    model. Exact: a member reuses a block only from the generator state it
    was drawn from and is left in the state its own draw would have left.

    Parameters
    ----------
    sources : list
        Poison sources; sources of other kinds, and None, are left alone.

    Returns
    -------
    groups : list of _SharedDraws
        One per group of two or more alike sources; call
        :func:`stop_sharing_draws` with ``sources`` when done.
    """
    groups = []
    for source in sources:
        if not isinstance(source, JitterSource):
            continue
        for members in groups:
            if _draws_alike(members[0], source):
                members.append(source)
                break
        else:
            groups.append([source])
    shared = []
    for members in groups:
        if len(members) > 1:
            group = _SharedDraws(len(members))
            for source in members:
                source._shared = group
            shared.append(group)
    return shared


def stop_sharing_draws(sources):
    """Undo :func:`share_identical_draws`: each source draws on its own again."""
    for source in sources:
        if isinstance(source, JitterSource):
            source._shared = None


def nearest_rows(X, n_nearest, chunk_floats=_MAX_BLOCK_FLOATS):
    """Find each row's ``n_nearest`` nearest rows (itself included).

    Parameters
    ----------
    X : torch.Tensor of shape (n_rows, n_features)
        Rows.
    n_nearest : int
        Neighbours per row, at most ``n_rows``.
    chunk_floats : int, default=4,000,000
        Bound on the distance-matrix entries held at once.

    Returns
    -------
    indices : torch.LongTensor of shape (n_rows, n_nearest)
        Sorted by distance.
    """
    n = len(X)
    rows = max(1, chunk_floats // max(1, n))
    out = []
    for start in range(0, n, rows):
        d = torch.cdist(
            X[start : start + rows], X, compute_mode="donot_use_mm_for_euclid_dist"
        )
        out.append(d.topk(n_nearest, dim=1, largest=False, sorted=True).indices)
    return torch.cat(out)


def _weighted_index(cdf, shape, generator):
    """Draw indices in proportion to the weights whose cumulative sum is ``cdf``."""
    u = torch.rand(shape, generator=generator, device=cdf.device, dtype=cdf.dtype)
    idx = torch.searchsorted(cdf, u * cdf[-1], right=True)
    return idx.clamp_(max=len(cdf) - 1)


class SamplerSource:
    """Poison points from a user's sampler of the true distribution.

    Parameters
    ----------
    sampler : callable
        ``sampler(n_samples, random_state=int) -> (X, y)`` returning points of
        the training distribution with their true labels.
    classes : ndarray
        The classifier's classes, to encode the sampler's labels.
    input_shape : tuple of int
        Shape of one network input; sampled points are reshaped to it.
    points_per_step : int
        Poison points per optimizer step.
    random_state : numpy.random.RandomState
        Source of the seeds passed to ``sampler``.
    device : torch.device
        Training device.
    dtype : torch.dtype
        Floating dtype of the network's inputs.
    """

    def __init__(
        self,
        sampler,
        classes,
        input_shape,
        points_per_step,
        random_state,
        device,
        dtype,
    ):
        self.sampler = sampler
        self.classes = classes
        self.input_shape = tuple(input_shape)
        self.points_per_step = points_per_step
        self.random_state = random_state
        self.device, self.dtype = device, dtype
        self.floats_per_point = int(np.prod(self.input_shape))

    def block_size(self, n_steps):
        """Return how many steps one sampler call may cover."""
        return _block_steps(n_steps, self.points_per_step, self.floats_per_point)

    def draw(self, n_steps):
        """Draw poison for ``n_steps`` steps in one sampler call.

        See :meth:`JitterSource.draw` for the return values.
        """
        n_points = n_steps * self.points_per_step
        seed = int(self.random_state.randint(np.iinfo(np.int32).max))
        try:
            inspect.signature(self.sampler).bind(n_points, random_state=seed)
        except TypeError as exc:
            raise TypeError(
                "poison_source must be callable as sampler(n_samples, "
                f"random_state=int); {self.sampler!r} is not: {exc}."
            ) from exc
        except ValueError:
            pass  # no inspectable signature (some builtins): just call it
        drawn = self.sampler(n_points, random_state=seed)
        if not isinstance(drawn, (tuple, list)) or len(drawn) != 2:
            raise TypeError(
                "poison_source must return a pair (X, y) of points and labels; "
                f"got {type(drawn).__name__}."
            )
        X, y = np.asarray(drawn[0]), np.asarray(drawn[1])
        if X.ndim == 0 or y.ndim != 1 or len(X) != n_points or len(y) != n_points:
            raise ValueError(
                f"poison_source returned points of shape {X.shape} and labels of "
                f"shape {y.shape} when asked for {n_points} of each."
            )
        if X.size != n_points * self.floats_per_point:
            raise ValueError(
                f"poison_source returned points of shape {X.shape[1:]}; the "
                f"classifier's inputs have shape {self.input_shape}."
            )
        if not np.all(np.isfinite(X)):
            raise ValueError("poison_source returned points with NaN or infinity.")
        codes = np.searchsorted(self.classes, y)
        codes = np.clip(codes, 0, len(self.classes) - 1)
        unknown = self.classes[codes] != y
        if np.any(unknown):
            raise ValueError(
                "poison_source returned labels that are not among the classes seen "
                f"in fit: {np.unique(y[unknown])[:5].tolist()}."
            )
        n_classes = len(self.classes)
        wrong = (codes + self.random_state.randint(1, max(n_classes, 2), n_points)) % (
            n_classes
        )
        shape = (n_steps, self.points_per_step)
        X = torch.as_tensor(X, dtype=self.dtype).reshape(shape + self.input_shape)
        to = {"device": self.device}
        return (
            X.to(**to),
            torch.as_tensor(codes, dtype=torch.int64).reshape(shape).to(**to),
            torch.as_tensor(wrong, dtype=torch.int64).reshape(shape).to(**to),
        )
