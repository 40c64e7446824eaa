"""SparseMAP by the active-set method, for any structure with a MAP oracle (numpy reference).

Structures are 0/1 vectors a_s ∈ {0, 1}^N, optionally with a pairwise feature
b_s scored with weight w.  SparseMAP (eq-sparsemap-map) is

    μ(θ) = A π,   π ∈ argmax_{π ∈ simplex} Σ_s π_s (θᵀa_s + w b_s) − ½‖A π‖²,

the projection of θ onto the marginal polytope conv{a_s} when w = 0.  The
active-set method needs only the oracle MAP(v) = argmax_s vᵀa_s + w b_s: it
solves the equality-constrained QP on a small set of structures, drops those
whose weight would turn negative, and adds the structure the oracle returns at
θ − μ until no structure improves the objective (eq-sparsemap-active-set).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Tuple

import numpy as np

from .._structures import mixture_bonus_by_columns
from .fenchel_young import _reduce_along

#: MAP(v) -> (a, b): the best structure's 0/1 vector and its pairwise feature.
MapOracle = Callable[[np.ndarray], Tuple[np.ndarray, float]]


@dataclass
class ActiveSet:
    """The solution of SparseMAP with its certificate: μ = A π, τ the common value on the support."""

    mu: np.ndarray
    structures: np.ndarray  # (S, N) active structures a_s
    features: np.ndarray  # (S,) pairwise features b_s
    weights: np.ndarray  # (S,) π on the active structures
    tau: float
    n_iter: int


def _solve_equality_qp(A: np.ndarray, c: np.ndarray):
    """[[AAᵀ, 1], [1ᵀ, 0]] [π; −τ] = [c; 1] for structures in the rows of A (least squares if singular)."""
    s = A.shape[0]
    K = np.zeros((s + 1, s + 1))
    K[:s, :s] = A @ A.T
    K[:s, s] = 1.0
    K[s, :s] = 1.0
    rhs = np.concatenate([c, [1.0]])
    sol = np.linalg.lstsq(K, rhs, rcond=None)[0]
    return sol[:s], sol[s]


def _ascent_in_nullspace(A: np.ndarray, c: np.ndarray, tol: float):
    """A direction d with Aᵀd = 0, 1ᵀd = 0 and cᵀd > 0, if the active structures admit one.

    Such a d exists exactly when the structures are affinely dependent and the
    dependence changes the linear part of the objective; the equality-constrained
    QP is then unbounded and has no solution to solve for.
    """
    if A.shape[0] < 2:
        return None
    from scipy.linalg import null_space

    basis = null_space(np.vstack([A.T, np.ones(A.shape[0])]))
    if basis.size == 0:
        return None
    d = basis @ (basis.T @ c)
    if c @ d <= tol * (1.0 + np.abs(c).max()):
        return None
    return d


def sparsemap_active_set(theta: np.ndarray, map_oracle: MapOracle, w: float = 0.0, max_iter: int = 1000,
                         tol: float = 1e-12) -> ActiveSet:
    """Solve SparseMAP at a 1-D ``theta`` with the primal active-set method (eq-sparsemap-active-set)."""
    theta = np.asarray(theta, dtype=np.float64)
    a0, b0 = map_oracle(theta)
    A = [np.asarray(a0, dtype=np.float64)]
    B = [float(b0)]
    pi = np.array([1.0])
    tau = 0.0
    for it in range(1, max_iter + 1):
        # inner loop: equality-constrained QP on the active set, dropping negative weights
        while True:
            Am, Bm = np.array(A), np.array(B)
            c = Am @ theta + w * Bm
            d = _ascent_in_nullspace(Am, c, tol)
            if d is not None:
                # affinely dependent structures whose bonuses differ: the objective grows
                # along d without moving μ; follow d until a weight reaches zero, drop it
                shrinking = d < 0
                step = float(np.min(pi[shrinking] / -d[shrinking]))
                pi = np.maximum(pi + step * d, 0.0)
                keep = pi > tol
                A = [a for a, k in zip(A, keep) if k]
                B = [b for b, k in zip(B, keep) if k]
                pi = pi[keep] / pi[keep].sum()
                continue
            target, tau = _solve_equality_qp(Am, c)
            if np.all(target >= -tol):
                pi = np.maximum(target, 0.0)
                pi /= pi.sum()
                break
            # move from pi towards target until the first weight reaches zero
            falling = target < pi
            ratios = np.where(falling, pi / np.where(falling, pi - target, 1.0), np.inf)
            step = min(1.0, float(ratios.min()))
            pi = pi + step * (target - pi)
            keep = pi > tol
            A = [a for a, k in zip(A, keep) if k]
            B = [b for b, k in zip(B, keep) if k]
            pi = pi[keep] / pi[keep].sum()
        mu = np.array(A).T @ pi
        a_new, b_new = map_oracle(theta - mu)
        a_new = np.asarray(a_new, dtype=np.float64)
        gain = float((theta - mu) @ a_new + w * b_new)
        known = any(np.array_equal(a_new, a) for a in A)
        if gain <= tau + tol * (1.0 + abs(tau)) or known:
            return ActiveSet(mu, np.array(A), np.array(B), pi, float(tau), it)
        A.append(a_new)
        B.append(float(b_new))
        pi = np.append(pi, 0.0)
    raise RuntimeError(f"active set did not converge in {max_iter} iterations")  # pragma: no cover


def _bordered_block(active: ActiveSet) -> np.ndarray:
    """M: the top-left block of [[AAᵀ, 1], [1ᵀ, 0]]⁺ for the active structures (rows of A)."""
    A = active.structures
    s = A.shape[0]
    K = np.zeros((s + 1, s + 1))
    K[:s, :s] = A @ A.T
    K[:s, s] = 1.0
    K[s, :s] = 1.0
    return np.linalg.pinv(K)[:s, :s]


def sparsemap_jacobian(active: ActiveSet) -> np.ndarray:
    """∂μ/∂θ = Aᵀ M A, M the top-left block of [[AAᵀ, 1], [1ᵀ, 0]]⁻¹ (eq-sparsemap-jacobian).

    With Z = (AAᵀ)⁻¹, M = Z − Z11ᵀZ/(1ᵀZ1); the bordered form also holds when
    AAᵀ is singular (active structures of different sizes).
    """
    return active.structures.T @ _bordered_block(active) @ active.structures


def sparsemap_bonus_derivative(active: ActiveSet) -> np.ndarray:
    """∂μ/∂w = Aᵀ M b."""
    return active.structures.T @ _bordered_block(active) @ active.features


class SparseMAP:
    """The SparseMAP regulariser Ω(μ) = ½‖μ‖² on the marginal polytope, for a user MAP oracle.

    Parameters
    ----------
    map_oracle : callable
        ``map_oracle(v) -> (a, b)``: the best structure's 0/1 vector and its pairwise feature.
    w : float
        Weight of the pairwise feature (0: plain projection onto the polytope).
    reference_point : array_like, optional
        The barycentre of the structures (for the HFY energy constant).
    """

    margin = float("inf")  # structured: see the k-subsets margin instead
    simplex = False

    def __init__(self, map_oracle: MapOracle, w: float = 0.0, reference_point=None):
        self.map_oracle, self.w = map_oracle, float(w)
        self._reference = None if reference_point is None else np.asarray(reference_point, dtype=np.float64)

    def solve(self, theta) -> ActiveSet:
        return sparsemap_active_set(np.asarray(theta, dtype=np.float64), self.map_oracle, self.w)

    def predict(self, theta, dim: int = -1) -> np.ndarray:
        from ._core import apply_along, as_scores

        return apply_along(lambda row: self.solve(row).mu, as_scores(theta, "theta"), dim)

    def conjugate(self, theta, dim: int = -1) -> np.ndarray:
        """Ω*(θ) = Σ_s π_s (θᵀa_s + w b_s) − ½‖μ‖²."""
        theta = np.asarray(theta, dtype=np.float64)
        moved = np.moveaxis(theta, dim, -1)
        flat = moved.reshape(-1, moved.shape[-1])
        vals = []
        for row in flat:
            act = self.solve(row)
            c = act.structures @ row + self.w * act.features
            vals.append(float(act.weights @ c - 0.5 * act.mu @ act.mu))
        return np.array(vals).reshape(moved.shape[:-1])

    def omega(self, mu, dim: int = -1) -> np.ndarray:
        """Ω(μ) = ½‖μ‖² − V_w(μ), V_w(μ) = max { w Σ_s π_s b_s : π a mixture with marginals μ } (zero without a
        bonus), by column generation with the MAP oracle (:func:`~hfy._structures.mixture_bonus_by_columns`);
        a clear error for μ outside the polytope."""
        return self._omega(mu, dim, "mu")

    def _omega(self, mu, dim: int, name: str) -> np.ndarray:
        mu = np.asarray(mu, dtype=np.float64)
        quadratic = 0.5 * np.sum(mu * mu, axis=dim)
        if self.w == 0.0:
            return quadratic
        return quadratic - _reduce_along(lambda row: mixture_bonus_by_columns(row, self.map_oracle, self.w, name)[0],
                                         mu, dim, name)

    def loss(self, theta, y, dim: int = -1) -> np.ndarray:
        """L(θ; y) = Ω*(θ) + Ω(y) − ⟨θ, y⟩ for a target y in the polytope: >= 0, and 0 when y is the prediction."""
        theta, y = np.asarray(theta, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if y.shape != theta.shape:
            raise ValueError(f"`y` must have the shape of `theta` {theta.shape}; got {y.shape}")
        return self.conjugate(theta, dim) + self._omega(y, dim, "y") - np.sum(theta * y, axis=dim)

    def reference_point(self, n: int) -> np.ndarray:
        if self._reference is None:
            raise ValueError("pass `reference_point` (the barycentre of the structures) to use this energy constant")
        return self._reference

    def __repr__(self) -> str:
        return f"SparseMAP(map_oracle={getattr(self.map_oracle, '__name__', self.map_oracle)!r}, w={self.w})"
