import warnings

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from flatgen.poison import (
    ArraySampler,
    JitterSource,
    SamplerSource,
    poison_loss,
)


def test_reverse_loss_is_flipped_cross_entropy_for_two_classes():
    logits = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    y = torch.randint(2, (50,), generator=torch.Generator().manual_seed(1))
    expected = torch.nn.functional.cross_entropy(logits, 1 - y)
    assert torch.allclose(poison_loss(logits, y, 1 - y, "reverse"), expected)


def test_reverse_loss_matches_definition_for_many_classes():
    logits = torch.randn(30, 5, dtype=torch.float64)
    y = torch.randint(5, (30,))
    p_true = torch.softmax(logits, 1)[torch.arange(30), y]
    expected = (-torch.log(1 - p_true)).mean()
    assert torch.allclose(poison_loss(logits, y, y, "reverse"), expected)


def test_reverse_loss_is_finite_when_network_is_certain():
    logits = torch.tensor([[100.0, -100.0]])
    loss = poison_loss(logits, torch.tensor([0]), torch.tensor([1]), "reverse")
    assert torch.isfinite(loss) and loss > 100


def test_random_loss_uses_the_wrong_labels():
    logits = torch.randn(10, 3)
    y, wrong = torch.zeros(10, dtype=torch.long), torch.full((10,), 2)
    expected = torch.nn.functional.cross_entropy(logits, wrong)
    assert torch.allclose(poison_loss(logits, y, wrong, "random"), expected)


def test_jitter_keeps_source_labels_and_scales_with_the_data():
    X = torch.tensor([[0.0, 0.0], [10.0, 100.0]])
    y = torch.tensor([0, 1])
    source = JitterSource(
        X, y, torch.ones(2), 3, 500, 0.2, torch.Generator().manual_seed(0)
    )
    X_p, y_p, wrong = source.draw(4)
    assert X_p.shape == (4, 500, 2) and y_p.shape == (4, 500)
    # Each draw lies near its source point, with a per-feature spread of
    # 0.2 * that feature's standard deviation (5 and 50 here).
    residual = X_p - X[y_p]
    assert_allclose(residual.std(dim=(0, 1)).numpy(), [1.0, 10.0], rtol=0.1)
    assert bool((wrong != y_p).all()) and bool((wrong < 3).all())
    # A fixed wrong label per source point.
    for label in (0, 1):
        assert len(set(wrong[y_p == label].tolist())) == 1


def test_sampler_source_encodes_labels_and_reshapes():
    sampler = ArraySampler(np.arange(40.0).reshape(10, 4), np.array(list("ab") * 5))
    source = SamplerSource(
        sampler,
        np.array(["a", "b"]),
        (1, 2, 2),
        3,
        np.random.RandomState(0),
        torch.device("cpu"),
        torch.float32,
    )
    X_p, y_p, wrong = source.draw(2)
    assert X_p.shape == (2, 3, 1, 2, 2)
    # ArraySampler rows alternate a, b: even first entries are class 'a' (0).
    first = X_p[..., 0, 0, 0]
    assert_allclose(((first / 4) % 2).numpy(), y_p.numpy())
    assert bool((wrong == 1 - y_p).all())


def vote_at_rows(X, y, weight, n_neighbors):
    """The vote of a JitterSource at its own training rows."""
    source = JitterSource(
        X,
        y,
        weight,
        2,
        1,
        0.1,
        torch.Generator().manual_seed(0),
        n_neighbors=n_neighbors,
    )
    return source._vote(X, torch.arange(len(X))).tolist()


def test_vote_relabels_a_point_inside_the_other_class():
    # Class 0 on the left, class 1 on the right, and one class-1 point among
    # the class-0 points: its neighbourhood votes 0.
    X = torch.tensor([[0.0], [0.1], [0.2], [0.3], [0.15], [5.0], [5.1], [5.2]])
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    assert vote_at_rows(X, y, torch.ones(8), 3) == [0, 0, 0, 0, 0, 1, 1, 1]


def test_vote_counts_weights_as_copies():
    # A row of weight 3 votes like three copies of it: it outvotes the two
    # class-1 rows around 1.0, which a single copy would only tie.
    X = torch.tensor([[0.0], [1.0], [1.1], [2.05]])
    y = torch.tensor([0, 1, 1, 0])
    copies = vote_at_rows(
        torch.tensor([[0.0], [1.0], [1.1], [2.05], [2.05], [2.05]]),
        torch.tensor([0, 1, 1, 0, 0, 0]),
        torch.ones(6),
        5,
    )
    weighted = vote_at_rows(X, y, torch.tensor([1.0, 1.0, 1.0, 3.0]), 5)
    assert weighted == copies[:4]
    assert weighted[1] == 0
    assert vote_at_rows(X, y, torch.ones(4), 5)[1] == 1


def test_vote_ties_keep_the_own_label():
    X = torch.tensor([[0.0], [1.0]])
    y = torch.tensor([0, 1])
    assert vote_at_rows(X, y, torch.ones(2), 2) == [0, 1]


@pytest.mark.parametrize("labels", ["vote", "source"])
def test_jitter_labels_come_from_the_chosen_rule(labels):
    X = torch.tensor([[0.0], [0.1], [0.2], [0.15], [5.0], [5.1]])
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    source = JitterSource(
        X,
        y,
        torch.ones(6),
        2,
        2000,
        1e-4,
        torch.Generator().manual_seed(0),
        labels=labels,
        n_neighbors=3,
    )
    points, drawn, wrong = source.draw(1)
    near_minority = (points[0, :, 0] - 0.15).abs() < 0.01
    expected = 0 if labels == "vote" else 1
    assert bool((drawn[0][near_minority] == expected).all())
    assert bool((wrong != drawn).all())


def test_vote_warns_before_a_costly_neighbour_search(monkeypatch):
    import flatgen.poison as poison

    X = torch.randn(50, 4)
    y = torch.arange(50) % 2
    w = torch.ones(50)
    gen = torch.Generator().manual_seed(0)
    monkeypatch.setattr(poison, "_VOTE_SEARCH_WARN_WORK", 50 * 50 * 4 - 1)
    with pytest.warns(UserWarning, match="poison_labels='source' skips this search"):
        poison.JitterSource(X, y, w, 2, 10, 0.15, gen)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        poison.JitterSource(X, y, w, 2, 10, 0.15, gen, labels="source")
        monkeypatch.setattr(poison, "_VOTE_SEARCH_WARN_WORK", 50 * 50 * 4)
        poison.JitterSource(X, y, w, 2, 10, 0.15, gen)
