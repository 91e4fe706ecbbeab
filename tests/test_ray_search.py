"""The one ray search: scan, then secant or bisection, against closed forms."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.exceptions import ConvergenceWarning

from flatgen.landscape._radius import first_crossings

# Rays with loss s^2 * k along ray k: the crossing of cutoff c is sqrt(c / k).
CURVATURES = np.array([0.5, 1.0, 4.0, 100.0])


def _losses_at(rows, steps):
    return CURVATURES[rows] * np.asarray(steps) ** 2


@pytest.mark.parametrize("refine", ["secant", "bisect"])
@pytest.mark.parametrize("scan", ["linear", "doubling"])
def test_both_refinements_find_every_first_crossing(refine, scan):
    cutoffs = np.array([0.1, 1.0])
    cap = np.full(4, 3.0)
    if scan == "linear":
        grid = 3.0 * np.arange(1, 9) / 8
        steps_at, n_scan = (lambda j, rows: np.full(len(rows), grid[j])), 8
    else:
        steps_at = lambda j, rows: np.minimum(0.01 * 2.0**j, cap[rows])  # noqa: E731
        n_scan = 20
    radii, capped = first_crossings(
        _losses_at,
        steps_at,
        n_scan,
        cap,
        cutoffs,
        rtol=1e-9,
        max_iter=200,
        refine=refine,
    )
    expected = np.sqrt(cutoffs[:, None] / CURVATURES[None, :])
    # Every crossing lies below the cap (the flattest: sqrt(1 / 0.5) < 3).
    assert not capped.any()
    assert_allclose(radii, expected, rtol=1e-8)


def test_rays_that_never_cross_are_capped_at_their_own_cap():
    cap = np.array([0.1, 10.0, 10.0, 10.0])
    radii, capped = first_crossings(
        _losses_at,
        lambda j, rows: np.minimum(0.05 * 2.0**j, cap[rows]),
        12,
        cap,
        np.array([1.0]),
        rtol=1e-6,
        max_iter=100,
        refine="bisect",
    )
    assert capped.tolist() == [[True, False, False, False]]
    assert radii[0, 0] == 0.1


def test_the_first_crossing_is_found_where_the_loss_is_not_monotone():
    # A bump at s = 1 above the cutoff, then a valley: the crossing before
    # the bump is the radius, not a later one.
    def bumpy(rows, steps):
        steps = np.asarray(steps)
        return np.exp(-((steps - 1.0) ** 2) / 0.01) + 0.01 * steps

    cap = np.full(1, 4.0)
    grid = 4.0 * np.arange(1, 41) / 40
    radii, _ = first_crossings(
        bumpy,
        lambda j, rows: np.full(len(rows), grid[j]),
        40,
        cap,
        np.array([0.5]),
        rtol=1e-10,
        max_iter=100,
    )
    # exp(-(s - 1)^2 / 0.01) = 0.5 - 0.01 s, with s ~ 1 in the small term.
    expected = 1.0 - np.sqrt(-0.01 * np.log(0.5 - 0.01 * 1.0))
    assert_allclose(radii[0, 0], expected, rtol=1e-3)


def test_an_unfinished_search_says_so():
    with pytest.warns(ConvergenceWarning, match="not yet within rtol"):
        first_crossings(
            _losses_at,
            lambda j, rows: np.full(len(rows), 3.0),
            1,
            np.full(4, 3.0),
            np.array([1.0]),
            rtol=1e-12,
            max_iter=2,
            refine="bisect",
        )
