"""Fenchel-Young regularisers as convex programs (cvxpy oracle).

Each oracle regulariser states Ω twice: as a numpy function (its value, the
definition) and as a concave cvxpy expression −Ω(p) (for the program).  The
prediction map and the conjugate are the solution and the optimal value of
max_{p ∈ △} ⟨θ, p⟩ − Ω(p).
"""

from __future__ import annotations

import numpy as np

from ..reference._core import as_scores
from ..reference.fenchel_young import _reduce_along, masked_dot, on_simplex
from ._core import solve_simplex_program


class Regularizer:
    """Base class of the oracle regularisers."""

    margin: float = float("inf")

    def omega_value(self, p: np.ndarray) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def neg_omega_expr(self, p):  # pragma: no cover - abstract
        """−Ω(p) as a concave cvxpy expression of the variable ``p``."""
        raise NotImplementedError

    def solve(self, theta: np.ndarray):
        """(ŷ_Ω(θ), Ω*(θ)) for a 1-D ``theta``."""
        return solve_simplex_program(theta, self.neg_omega_expr)

    def predict(self, theta, dim: int = -1) -> np.ndarray:
        from ._core import map_along

        return map_along(lambda row: self.solve(row)[0], theta, dim)

    def conjugate(self, theta, dim: int = -1) -> np.ndarray:
        return _reduce_along(lambda row: self.solve(row)[1], as_scores(theta, "theta"), dim, "theta")

    def omega(self, p, dim: int = -1) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        return _reduce_along(lambda row: self.omega_value(row) if self.in_domain(row) else np.inf, p, dim, "p")

    def in_domain(self, p: np.ndarray) -> bool:
        """Whether the 1-D ``p`` lies in dom Ω (the simplex here)."""
        return on_simplex(p)

    def reference_point(self, n: int) -> np.ndarray:
        """ȳ of the HFY energy constant: the barycentre of dom Ω (uniform on the simplex)."""
        return np.full(n, 1.0 / n)

    def loss(self, theta, y, dim: int = -1) -> np.ndarray:
        theta = as_scores(theta, "theta")
        y = np.asarray(y, dtype=np.float64)
        moved_t, moved_y = np.moveaxis(theta, dim, -1), np.moveaxis(y, dim, -1)
        flat_t = moved_t.reshape(-1, moved_t.shape[-1])
        flat_y = moved_y.reshape(-1, moved_y.shape[-1])
        out = [self.solve(t)[1] + self.omega(yy) - masked_dot(t, yy) for t, yy in zip(flat_t, flat_y)]
        return np.array(out).reshape(moved_t.shape[:-1])

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"
