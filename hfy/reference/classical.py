"""The classical Hopfield network as an HFY network (numpy reference).

Ω(y) = ½‖y‖² on all of R^N (no simplex): ŷ_Ω(θ) = θ and Ω*(θ) = ½‖θ‖², so the
score-side energy term is −β⁻¹ Ω*(βXq) = −(β/2) qᵀXᵀXq, the Hebbian energy with
weights W = XᵀX.  With Ψ = the indicator of the cube (``Sign``), the HFY update
q ← sign(Xᵀ(βXq)) = sign(Wq) is the synchronous classical update (eq-classical-update).
"""

from __future__ import annotations

import numpy as np

from ._core import as_scores


class Quadratic:
    """Ω(y) = ½‖y‖² on R^N: the identity prediction map of the classical network."""

    margin = float("inf")

    def predict(self, theta, dim: int = -1) -> np.ndarray:
        return np.array(as_scores(theta, "theta"))

    def omega(self, y, dim: int = -1) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        return 0.5 * np.sum(y * y, axis=dim)

    def conjugate(self, theta, dim: int = -1) -> np.ndarray:
        return self.omega(as_scores(theta, "theta"), dim)

    def loss(self, theta, y, dim: int = -1) -> np.ndarray:
        theta, y = as_scores(theta, "theta"), np.asarray(y, dtype=np.float64)
        return 0.5 * np.sum((theta - y) ** 2, axis=dim)

    def reference_point(self, n: int) -> np.ndarray:
        """The point ȳ of the FY energy constant: 0 (dom Ω is all of R^N)."""
        return np.zeros(n)

    def jacobian(self, theta) -> np.ndarray:
        return np.eye(np.asarray(theta).shape[-1])

    def __repr__(self) -> str:
        return "Quadratic()"


def hebbian_weights(X, zero_diagonal: bool = False) -> np.ndarray:
    """W = XᵀX = Σ_i x_i x_iᵀ, with its diagonal by default.

    ``zero_diagonal=True`` gives the textbook variant; W is then indefinite and
    the synchronous update loses the HFY guarantee of monotone descent.
    """
    X = np.asarray(X, dtype=np.float64)
    W = X.T @ X
    if zero_diagonal:
        np.fill_diagonal(W, 0.0)
    return W


def classical_energy(q, X, zero_diagonal: bool = False) -> np.ndarray:
    """The textbook Hopfield energy −½ qᵀWq (no thresholds), along the last axis of ``q``."""
    W = hebbian_weights(X, zero_diagonal)
    q = np.asarray(q, dtype=np.float64)
    return -0.5 * np.einsum("...i,ij,...j->...", q, W, q)


def classical_update(q, X, zero_diagonal: bool = False) -> np.ndarray:
    """Synchronous update q ← sign(Wq), with sign(0) = 0."""
    W = hebbian_weights(X, zero_diagonal)
    return np.sign(np.asarray(q, dtype=np.float64) @ W.T)
