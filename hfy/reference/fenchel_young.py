"""Fenchel-Young machinery shared by every regulariser (numpy reference).

A regulariser Ω is described by three things: its value Ω(p) on its domain,
its prediction map ŷ_Ω(θ) = argmax_p ⟨θ, p⟩ − Ω(p) and, from these two, the
conjugate Ω*(θ) = ⟨θ, ŷ⟩ − Ω(ŷ) and the Fenchel-Young loss

    L_Ω(θ; y) = Ω*(θ) + Ω(y) − ⟨θ, y⟩            (eq-fenchel_young-loss)

Subclasses implement ``_omega_1d``, ``_predict_1d`` and ``_jacobian_1d`` for
one score vector; this base class applies them along ``dim``.
"""

from __future__ import annotations

import numpy as np

from ._core import apply_along, as_scores

#: Points farther than this from the probability simplex are outside dom Ω.
SIMPLEX_TOL = 1e-9


def on_simplex(p: np.ndarray, tol: float = SIMPLEX_TOL) -> bool:
    """True when ``p`` (1-D) is a probability vector up to ``tol``."""
    return bool(np.all(p >= -tol) and abs(p.sum() - 1.0) <= tol)


def masked_dot(theta: np.ndarray, y: np.ndarray) -> float:
    """⟨θ, y⟩ where masked scores (θ_i = −inf) with y_i = 0 contribute 0, not NaN."""
    used = y != 0
    return float(np.dot(theta[used], y[used]))


class Regularizer:
    """Base class: Ω on a domain inside the simplex, with its FY toolbox.

    Every method takes arrays of any shape and works along ``dim``.
    """

    #: Smallest score gap that guarantees a one-hot prediction (inf: never).
    margin: float = float("inf")

    # --- to implement -------------------------------------------------------
    def _omega_1d(self, p: np.ndarray) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def _predict_1d(self, theta: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _jacobian_1d(self, theta: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def max_entropy(self, n: int) -> float:  # pragma: no cover - abstract
        """H(u): the entropy of the uniform distribution over ``n`` items."""
        raise NotImplementedError

    def reference_point(self, n: int) -> np.ndarray:
        """ȳ of the HFY energy constant: the barycentre of the domain (u on the simplex)."""
        return np.full(n, 1.0 / n)

    # --- public API -----------------------------------------------------------
    def predict(self, theta, dim: int = -1) -> np.ndarray:
        """The regularised prediction map ŷ_Ω(θ) = ∇Ω*(θ)."""
        return apply_along(self._predict_1d, as_scores(theta, "theta"), dim, "theta")

    def omega(self, p, dim: int = -1) -> np.ndarray:
        """Ω(p), ``+inf`` outside the simplex."""
        p = np.asarray(p, dtype=np.float64)
        return _reduce_along(lambda row: self._omega_1d(row) if on_simplex(row) else np.inf, p, dim, "p")

    def entropy(self, p, dim: int = -1) -> np.ndarray:
        """The generalised entropy H(p) = −Ω(p)."""
        return -self.omega(p, dim)

    def conjugate(self, theta, dim: int = -1) -> np.ndarray:
        """Ω*(θ) = ⟨θ, ŷ⟩ − Ω(ŷ) evaluated at ŷ = ŷ_Ω(θ) (eq-fenchel_young-conjugate)."""
        theta = as_scores(theta, "theta")

        def one(row):
            if not np.isfinite(row).any():
                return -np.inf
            p = self._predict_1d(row)
            return masked_dot(row, p) - self._omega_1d(p)

        return _reduce_along(one, theta, dim, "theta")

    def loss(self, theta, y, dim: int = -1) -> np.ndarray:
        """Fenchel-Young loss L_Ω(θ; y), reduced along ``dim`` only."""
        theta = as_scores(theta, "theta")
        y = np.asarray(y, dtype=np.float64)
        if y.shape != theta.shape:
            raise ValueError(f"`y` must have the shape of `theta` {theta.shape}; got {y.shape}")
        stacked = np.stack([theta, y], axis=-1)
        dim = dim % theta.ndim

        def one(pair):  # pair: (N, 2)
            th, target = pair[:, 0], pair[:, 1]
            if np.any((target != 0) & np.isneginf(th)):
                return np.inf
            return self.conjugate(th) + self.omega(target) - masked_dot(th, target)

        moved = np.moveaxis(stacked, dim, -2)
        flat = moved.reshape(-1, *moved.shape[-2:])
        out = np.array([one(pair) for pair in flat], dtype=np.float64)
        return out.reshape(moved.shape[:-2])

    def jacobian(self, theta) -> np.ndarray:
        """The Jacobian ∂ŷ_Ω/∂θ of the prediction map at a 1-D ``theta``."""
        theta = as_scores(theta, "theta")
        if theta.ndim != 1:
            raise ValueError(f"`theta` must be 1-D for jacobian(); got shape {theta.shape}")
        return self._jacobian_1d(theta)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


def _reduce_along(fn, arr: np.ndarray, dim: int, name: str) -> np.ndarray:
    """Apply a 1-D reduction ``fn`` (row -> float) along ``dim``."""
    if arr.ndim == 0:
        raise ValueError(f"`{name}` must have at least one dimension")
    moved = np.moveaxis(arr, dim, -1)
    flat = moved.reshape(-1, moved.shape[-1])
    out = np.array([fn(row) for row in flat], dtype=np.float64)
    return out.reshape(moved.shape[:-1])


def fenchel_young_loss(theta, y, regularizer: Regularizer, dim: int = -1) -> np.ndarray:
    """L_Ω(θ; y) for a regulariser object (the function form of ``Regularizer.loss``)."""
    return regularizer.loss(theta, y, dim)
