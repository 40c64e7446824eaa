"""The HFY energy and its CCCP dynamics (numpy reference).

For a score-side regulariser Ω, a state-side Ψ, memories X (N × D) and
inverse temperature β,

    E(q) = L_Ψ(Xᵀȳ; q) − β⁻¹ L_Ω(βXq; ȳ)
         = Ψ(q) − β⁻¹ Ω*(βXq) + Ψ*(Xᵀȳ) − β⁻¹ Ω(ȳ)            (eq-energy-fy)

with ȳ the barycentre of dom Ω.  The concave-convex procedure gives the update

    p = ŷ_Ω(βXq),      q ← ŷ_Ψ(Xᵀp)                              (eq-energy-update)

which never increases E.  ``constant`` selects the additive constant:
``"fy"`` is (eq-energy-fy), ``"none"`` drops it, and ``"sshn"`` (Ψ = ½‖·‖²
on a simplex domain only) is Ψ(q) − β⁻¹Ω*(βXq) + β⁻¹H(u) + ½M², which is
non-negative and, for Shannon, equals the modern Hopfield energy (eq-energy-sshn).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from .classical import Quadratic
from .entmax import Tsallis
from .fenchel_young import Regularizer
from .normmax import NormEntropy
from .post_transforms import Identity, L2Normalize, LayerNorm, PostTransform, Sign, Tanh
from .softmax import Shannon

CONSTANTS = ("fy", "sshn", "none")


def as_omega(omega) -> object:
    """A regulariser object from an object or a name ('softmax', 'sparsemax', 'entmax15', 'normmax')."""
    if isinstance(omega, str):
        table = {
            "softmax": Shannon,
            "sparsemax": lambda: Tsallis(2.0),
            "entmax15": lambda: Tsallis(1.5),
            "normmax": lambda: NormEntropy(2.0),
            "identity": Quadratic,
        }
        if omega not in table:
            raise ValueError(f"`omega` must be a regulariser or one of {sorted(table)}; got {omega!r}")
        return table[omega]()
    if not hasattr(omega, "predict") or not hasattr(omega, "conjugate"):
        raise TypeError(f"`omega` must be a regulariser (with predict and conjugate); got {type(omega).__name__}")
    return omega


def as_psi(psi) -> PostTransform:
    """A post-transformation from an object or a name ('identity', 'l2', 'layernorm', 'sign', 'tanh')."""
    if isinstance(psi, str):
        table = {"identity": Identity, "l2": L2Normalize, "layernorm": LayerNorm, "sign": Sign, "tanh": Tanh}
        if psi not in table:
            raise ValueError(f"`psi` must be a post-transformation or one of {sorted(table)}; got {psi!r}")
        return table[psi]()
    if not isinstance(psi, PostTransform):
        raise TypeError(f"`psi` must be a PostTransform; got {type(psi).__name__}")
    return psi


def _check(q, X, beta, mask):
    X = np.asarray(X, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"`X` must have shape (N, D) with N >= 1; got {X.shape}")
    if q.ndim == 0 or q.shape[-1] != X.shape[1]:
        raise ValueError(f"`q` must have shape (..., D) with D = {X.shape[1]}; got {q.shape}")
    if not np.isfinite(beta) or beta <= 0:
        raise ValueError(f"`beta` must be a finite number > 0; got {beta}")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (X.shape[0],):
            raise ValueError(f"`mask` must have shape (N,) = ({X.shape[0]},); got {mask.shape}")
        if not mask.any():
            raise ValueError("`mask` leaves no memory")
        X = X[mask]
    return q, X


def energy(q, X, beta: float = 1.0, omega="softmax", psi="identity", constant: str = "fy", mask=None) -> np.ndarray:
    """HFY energy E(q) along the last axis of ``q`` (eq-energy-fy).

    Parameters
    ----------
    q : array_like, shape (..., D)
    X : array_like, shape (N, D)
    beta : float
    omega, psi : regulariser objects or names
    constant : {'fy', 'sshn', 'none'}
    mask : array_like of bool, shape (N,), optional
        True for the memories to use (padding is False).

    See Also
    --------
    hfy.energy, hfy.oracle.energy
    """
    omega, psi = as_omega(omega), as_psi(psi)
    if constant not in CONSTANTS:
        raise ValueError(f"`constant` must be one of {CONSTANTS}; got {constant!r}")
    q, X = _check(q, X, beta, mask)
    theta = beta * (q @ X.T)
    value = psi.psi(q) - omega.conjugate(theta) / beta
    if constant == "none":
        return value
    n = X.shape[0]
    if constant == "fy":
        ybar = omega.reference_point(n)
        return value + psi.conjugate(X.T @ ybar) - omega.omega(ybar) / beta
    if not isinstance(psi, Identity) or not isinstance(omega, Regularizer):
        raise ValueError("constant='sshn' needs psi='identity' and a regulariser on the simplex")
    m_sq = float(np.max(np.sum(X * X, axis=1)))
    return value + omega.max_entropy(n) / beta + 0.5 * m_sq


def update(q, X, beta: float = 1.0, omega="softmax", psi="identity", mask=None):
    """One CCCP step (eq-energy-update); returns ``(q_next, p)``."""
    omega, psi = as_omega(omega), as_psi(psi)
    q, Xm = _check(q, X, beta, mask)
    p_sub = omega.predict(beta * (q @ Xm.T))
    q_next = psi.predict(p_sub @ Xm)
    if mask is None:
        return q_next, p_sub
    p = np.zeros(q.shape[:-1] + (np.asarray(X).shape[0],))
    p[..., np.asarray(mask, dtype=bool)] = p_sub
    return q_next, p


@dataclass
class Retrieval:
    """Result of :func:`retrieve`: final states, weights and per-query diagnostics."""

    q: np.ndarray
    p: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray
    energies: Optional[List[np.ndarray]] = field(default=None)


def retrieve(q, X, beta: float = 1.0, omega="softmax", psi="identity", mask=None, max_iter: int = 100,
             tol: float = 1e-9, trace: bool = False) -> Retrieval:
    """Iterate (eq-energy-update) from ``q`` until ‖Δq‖_∞ <= tol or ‖Δp‖_∞ <= tol, per query.

    Each query stops on its own; ``n_iter`` counts its updates.  With
    ``trace=True`` the energy (constant 'fy') of every query at every step is
    recorded (a converged query repeats its last value).
    """
    if int(max_iter) < 1:
        raise ValueError(f"`max_iter` must be >= 1; got {max_iter}")
    omega, psi = as_omega(omega), as_psi(psi)
    q = np.array(q, dtype=np.float64)
    batch = q.shape[:-1]
    flat = q.reshape(-1, q.shape[-1]).copy()
    n_mem = np.asarray(X).shape[0]
    p_flat = np.full((flat.shape[0], n_mem), np.nan)
    n_iter = np.zeros(flat.shape[0], dtype=int)
    done = np.zeros(flat.shape[0], dtype=bool)
    energies = [energy(flat, X, beta, omega, psi, "fy", mask)] if trace else None
    for _ in range(int(max_iter)):
        active = ~done
        if not active.any():
            break
        q_new, p_new = update(flat[active], X, beta, omega, psi, mask)
        dq = np.max(np.abs(q_new - flat[active]), axis=-1)
        p_old = p_flat[active]
        dp = np.where(np.isnan(p_old).any(axis=-1), np.inf, np.max(np.abs(p_new - np.nan_to_num(p_old)), axis=-1))
        flat[active], p_flat[active] = q_new, p_new
        n_iter[active] += 1
        done[np.flatnonzero(active)[(dq <= tol) | (dp <= tol)]] = True
        if trace:
            energies.append(energy(flat, X, beta, omega, psi, "fy", mask))
    _, p_final = update(flat, X, beta, omega, psi, mask)
    return Retrieval(flat.reshape(q.shape), p_final.reshape(batch + (n_mem,)), n_iter.reshape(batch),
                     done.reshape(batch), energies)


def lse_energy(q, X, beta: float = 1.0) -> np.ndarray:
    """Ramsauer et al.'s modern Hopfield energy −β⁻¹ log Σ exp(β Xq) + ½‖q‖² + β⁻¹ log N + ½M²."""
    q, X = _check(q, X, beta, None)
    s = beta * (q @ X.T)
    top = s.max(axis=-1, keepdims=True)
    lse = np.log(np.exp(s - top).sum(axis=-1)) + top[..., 0]
    m_sq = float(np.max(np.sum(X * X, axis=1)))
    return -lse / beta + 0.5 * np.sum(q * q, axis=-1) + np.log(X.shape[0]) / beta + 0.5 * m_sq
