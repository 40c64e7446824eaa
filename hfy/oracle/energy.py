"""The HFY energy and its CCCP step with every optimisation solved by cvxpy (oracle).

E(q) = Ψ(q) − β⁻¹ Ω*(βXq) + Ψ*(Xᵀȳ) − β⁻¹ Ω(ȳ), with Ω* the optimal value of
the defining program of Ω; the update solves p = argmax_p ⟨βXq, p⟩ − Ω(p)
and then q⁺ = argmax_q ⟨Xᵀp, q⟩ − Ψ(q), both with cvxpy.
"""

from __future__ import annotations

import numpy as np

from .entmax import Tsallis
from .fenchel_young import Regularizer
from .normmax import NormEntropy
from .post_transforms import Identity, L2Normalize, LayerNorm, PostTransform, Sign, Tanh
from .softmax import Shannon

_OMEGAS = {"softmax": Shannon, "sparsemax": lambda: Tsallis(2.0), "entmax15": lambda: Tsallis(1.5),
           "normmax": lambda: NormEntropy(2.0)}
_PSIS = {"identity": Identity, "l2": L2Normalize, "layernorm": LayerNorm, "sign": Sign, "tanh": Tanh}


def _resolve(omega, psi):
    if isinstance(omega, str):
        omega = _OMEGAS[omega]()
    if isinstance(psi, str):
        psi = _PSIS[psi]()
    if not isinstance(omega, Regularizer) or not isinstance(psi, PostTransform):
        raise TypeError("the oracle needs hfy.oracle regularisers and post-transformations (or their names)")
    return omega, psi


def energy(q, X, beta: float = 1.0, omega="softmax", psi="identity", constant: str = "fy") -> np.ndarray:
    """The HFY energy with Ω* from the convex program (constants 'fy' or 'none').

    See Also
    --------
    hfy.energy, hfy.reference.energy
    """
    omega, psi = _resolve(omega, psi)
    q, X = np.asarray(q, dtype=np.float64), np.asarray(X, dtype=np.float64)
    value = psi.psi(q) - omega.conjugate(beta * (q @ X.T)) / beta
    if constant == "none":
        return value
    if constant != "fy":
        raise ValueError(f"the oracle supports constant 'fy' or 'none'; got {constant!r}")
    ybar = omega.reference_point(X.shape[0])
    return value + psi.conjugate(X.T @ ybar) - omega.omega(ybar) / beta


def update(q, X, beta: float = 1.0, omega="softmax", psi="identity"):
    """One CCCP step with both subproblems solved by cvxpy; returns ``(q_next, p)``."""
    omega, psi = _resolve(omega, psi)
    q, X = np.asarray(q, dtype=np.float64), np.asarray(X, dtype=np.float64)
    p = omega.predict(beta * (q @ X.T))
    return psi.predict(p @ X), p
