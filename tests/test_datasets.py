import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from flatgen import SpiralSampler, make_spirals


def test_shapes_balance_and_reproducibility():
    X, y = make_spirals(401, random_state=0)
    assert X.shape == (401, 2) and y.shape == (401,)
    assert np.bincount(y).tolist() == [201, 200]
    X2, y2 = make_spirals(401, random_state=0)
    assert_array_equal(X, X2)
    assert_array_equal(y, y2)


def test_noise_free_points_lie_on_the_arms():
    X, y = make_spirals(300, noise=0.0, random_state=1)
    # Class 1 is the point reflection of class 0's curve.
    arm = np.where(y[:, None] == 0, X, -X)
    t = np.linalg.norm(arm, axis=1) / 1.5
    assert t.max() <= np.deg2rad(600) + 1e-9
    assert_allclose(arm[:, 0], -1.5 * t * np.cos(t), atol=1e-9)
    assert_allclose(arm[:, 1], 1.5 * t * np.sin(t), atol=1e-9)


def test_noise_level():
    X, y = make_spirals(4000, noise=0.0, random_state=2)
    Xn, yn = make_spirals(4000, noise=0.5, random_state=2)
    assert_array_equal(y, yn)
    assert_allclose((Xn - X).std(), 0.5, rtol=0.05)


def test_sampler_draws_the_same_distribution():
    X, y = SpiralSampler(noise=0.5)(50, random_state=3)
    X2, y2 = make_spirals(50, noise=0.5, random_state=3)
    assert_array_equal(X, X2)
    assert_array_equal(y, y2)


def test_bad_arguments():
    with pytest.raises(ValueError, match="'n_samples' parameter"):
        make_spirals(0)
    with pytest.raises(ValueError, match="'noise' parameter"):
        make_spirals(10, noise=-1)
