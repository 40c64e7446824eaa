"""Post-transformations Ψ as convex programs (cvxpy oracle).

ŷ_Ψ(z) = argmax_q ⟨z, q⟩ − Ψ(q) is solved literally; Ψ's value and conjugate
come from the reference (they are closed forms, i.e. the definition).
"""

from __future__ import annotations

import math

import numpy as np

from ..reference import post_transforms as ref
from ._core import SOLVER, cvxpy, solve_quietly


class PostTransform:
    """Base class: ``objective(q)`` is the concave −Ψ(q) part, ``constraints(q)`` its domain."""

    reference: ref.PostTransform

    def objective(self, q):
        return 0.0

    def constraints(self, q):
        return []

    def psi(self, q):
        return self.reference.psi(q)

    def conjugate(self, z):
        return self.reference.conjugate(z)

    def predict(self, z) -> np.ndarray:
        """argmax_q ⟨z, q⟩ − Ψ(q) for every row of ``z``, solved by cvxpy."""
        cp = cvxpy()
        z = np.asarray(z, dtype=np.float64)
        flat = z.reshape(-1, z.shape[-1])
        out = np.empty_like(flat)
        for k, row in enumerate(flat):
            q = cp.Variable(row.size)
            problem = cp.Problem(cp.Maximize(row @ q + self.objective(q)), self.constraints(q))
            solve_quietly(problem)
            if problem.status not in ("optimal", "optimal_inaccurate") or q.value is None:
                raise RuntimeError(f"cvxpy/{SOLVER} failed: status {problem.status}")
            out[k] = q.value
        return out.reshape(z.shape)

    def __repr__(self) -> str:
        return f"oracle.{self.reference!r}"


class Identity(PostTransform):
    def __init__(self):
        self.reference = ref.Identity()

    def objective(self, q):
        return -0.5 * cvxpy().sum_squares(q)


class L2Normalize(PostTransform):
    def __init__(self, radius: float = 1.0):
        self.reference = ref.L2Normalize(radius)

    def constraints(self, q):
        return [cvxpy().norm(q, 2) <= self.reference.radius]


class LayerNorm(PostTransform):
    """The biased layer norm: the ball of radius √D in the centred hyperplane."""

    def __init__(self):
        self.reference = ref.LayerNorm()

    def constraints(self, q):
        cp = cvxpy()
        return [cp.sum(q) == 0, cp.norm(q, 2) <= math.sqrt(q.shape[0])]


class Sign(PostTransform):
    def __init__(self):
        self.reference = ref.Sign()

    def constraints(self, q):
        return [cvxpy().abs(q) <= 1]


class Tanh(PostTransform):
    """−Ψ(q) = β⁻¹ Σ [entr((1+q)/2) + entr((1−q)/2)] on the cube."""

    def __init__(self, beta: float = 1.0):
        self.reference = ref.Tanh(beta)

    def objective(self, q):
        cp = cvxpy()
        return cp.sum(cp.entr((1 + q) / 2) + cp.entr((1 - q) / 2)) / self.reference.beta

    def constraints(self, q):
        return [cvxpy().abs(q) <= 1]
