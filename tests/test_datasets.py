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


# -- real image sets ---------------------------------------------------------


def test_digit_images():
    from flatgen.datasets import load_digit_images

    X, y = load_digit_images()
    assert X.shape == (1797, 1, 8, 8) and X.dtype == np.float32
    assert X.min() == 0.0 and X.max() == 1.0
    assert y.dtype == np.int64 and sorted(np.unique(y)) == list(range(10))


def _write_svhn(folder, split="train", n=12, seed=0, **overrides):
    from scipy.io import savemat

    rng = np.random.RandomState(seed)
    contents = {
        "X": rng.randint(0, 256, size=(32, 32, 3, n)).astype(np.uint8),
        "y": (np.arange(n) % 10 + 1).reshape(-1, 1),
    }
    contents.update(overrides)
    savemat(folder / f"{split}_32x32.mat", contents)
    return contents


def test_load_svhn_layout_and_labels(tmp_path):
    from flatgen.datasets import load_svhn

    raw = _write_svhn(tmp_path, n=12)
    X, y = load_svhn(tmp_path)
    assert X.shape == (12, 3, 32, 32) and X.dtype == np.float32
    # Channels first, scaled to [0, 1]; label 10 is the digit 0.
    assert_allclose(X[5, 2], raw["X"][:, :, 2, 5] / 255.0, rtol=1e-6)
    assert_array_equal(y, np.arange(12) % 10 + 1 - 10 * (np.arange(12) % 10 == 9))
    assert 0 in y and 10 not in y


def test_load_svhn_subset_is_seeded(tmp_path):
    from flatgen.datasets import load_svhn

    _write_svhn(tmp_path, "extra", n=30)
    X1, y1 = load_svhn(tmp_path, "extra", subset=7, random_state=3)
    X2, y2 = load_svhn(tmp_path, "extra", subset=7, random_state=3)
    X3, _ = load_svhn(tmp_path, "extra", subset=7, random_state=4)
    assert X1.shape == (7, 3, 32, 32)
    assert_array_equal(X1, X2)
    assert_array_equal(y1, y2)
    assert not np.array_equal(X1, X3)


def test_load_svhn_missing_files(tmp_path):
    from flatgen.datasets import load_svhn

    with pytest.raises(FileNotFoundError, match="does not exist.*train_32x32.mat"):
        load_svhn(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"test_32x32\.mat' not found"):
        load_svhn(tmp_path, "test")


@pytest.mark.parametrize(
    "damage, match",
    [
        ("garbage", "not a readable MATLAB .mat file"),
        ("zeros", "not a readable MATLAB .mat file"),
        ("truncated", "not a readable MATLAB .mat file"),
        ("no_y", "has no variable 'y'"),
        ("shape", r"holds X of shape \(32, 32, 12\)"),
        ("labels", r"labels \[0, 11\] outside 1-10"),
        ("count", "holds 12 images but 5 labels"),
    ],
)
def test_load_svhn_malformed_files(tmp_path, damage, match):
    from scipy.io import savemat

    from flatgen.datasets import load_svhn

    path = tmp_path / "train_32x32.mat"
    if damage == "garbage":
        path.write_bytes(b"this is not a MATLAB file at all" * 10)
    elif damage == "zeros":
        path.write_bytes(bytes(300))
    elif damage == "truncated":
        _write_svhn(tmp_path, n=12)
        path.write_bytes(path.read_bytes()[:5000])
    elif damage == "no_y":
        savemat(path, {"X": np.zeros((32, 32, 3, 2), np.uint8)})
    elif damage == "shape":
        _write_svhn(tmp_path, X=np.zeros((32, 32, 12), np.uint8))
    elif damage == "labels":
        _write_svhn(tmp_path, y=np.arange(12).reshape(-1, 1))
    elif damage == "count":
        _write_svhn(tmp_path, y=np.ones((5, 1)))
    with pytest.raises(ValueError, match=match) as info:
        load_svhn(tmp_path)
    assert "train_32x32.mat" in str(info.value)


def test_load_svhn_bad_arguments(tmp_path):
    from flatgen.datasets import load_svhn

    _write_svhn(tmp_path, n=4)
    with pytest.raises(ValueError, match="subset=5 exceeds the 4 images"):
        load_svhn(tmp_path, subset=5)
    with pytest.raises(ValueError, match="'subset' parameter"):
        load_svhn(tmp_path, subset=0)
    with pytest.raises(ValueError, match="'split' parameter"):
        load_svhn(tmp_path, "valid")
