"""SparseMAP for any structure with a batched MAP oracle: a batched active-set solver (torch fast path).

Structures are 0/1 vectors a_s ∈ {0, 1}^N with a pairwise feature b_s scored
with weight w; SparseMAP (eq-sparsemap-map) is

    μ(θ) = Aᵀπ,   π ∈ argmax_{π ∈ simplex} Σ_s π_s (θᵀa_s + w b_s) − ½‖Aᵀπ‖².

Every row of a batch keeps its own active set in a padded tensor (rows ×
slots × N) with a validity mask.  Active sets are kept affinely independent
(a structure in the affine hull of the active ones is swapped in, see
:func:`active_set`), so the equality-constrained QP of each row is a batched
linear solve.  No Python loop runs over the rows: only over active-set
iterations.

The backward pass is the active-set Jacobian (eq-sparsemap-jacobian)
∂μ/∂θ = Aᵀ M A and ∂μ/∂w = Aᵀ M b, with M the top-left block of
[[AAᵀ, 1], [1ᵀ, 0]]⁻¹ (= Z − Z11ᵀZ/(1ᵀZ1), Z = (AAᵀ)⁻¹, when AAᵀ is invertible).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import torch

from .fenchel_young import Regularizer

#: MAP(v: (B, N)) -> (a: (B, N) 0/1, b: (B,)), batched over rows.
BatchedMapOracle = Callable[[torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]

MAX_ITER = 200


@dataclass
class ActiveSets:
    """Batched SparseMAP solution: μ (B, N), active structures (B, S, N), features (B, S), validity, weights, τ."""

    mu: torch.Tensor
    structures: torch.Tensor
    features: torch.Tensor
    valid: torch.Tensor
    weights: torch.Tensor
    tau: torch.Tensor
    n_iter: int


def _kkt_matrix(G: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """K = [[G, 1], [1ᵀ, 0]] on the valid slots of every row (identity on the invalid ones); G = AAᵀ."""
    b, s, _ = G.shape
    vf = valid.to(G.dtype)
    K = torch.zeros(b, s + 1, s + 1, dtype=G.dtype, device=G.device)
    K[:, :s, :s] = G * (vf.unsqueeze(-1) * vf.unsqueeze(-2)) + torch.diag_embed(1.0 - vf)
    K[:, :s, s] = vf
    K[:, s, :s] = vf
    return K


def _kkt_solve(K: torch.Tensor, top: torch.Tensor, valid: torch.Tensor):
    """Solve K [x; ν] = [top; 1]; returns (x on the valid slots, ν)."""
    vf = valid.to(K.dtype)
    rhs = torch.cat([top * vf, torch.ones_like(top[:, :1])], dim=1)
    sol = torch.linalg.solve(K, rhs.unsqueeze(-1)).squeeze(-1)
    return sol[:, :-1] * vf, sol[:, -1]


def _optimise_on_active_set(G, c, valid, pi, tol):
    """Make π the maximiser of the QP restricted to each row's active set, dropping structures as needed.

    ``G`` (B, S, S) is the Gram matrix of the active structures and ``c`` (B, S) their scores θᵀa_s + w b_s.
    The active structures of every row are kept affinely independent (see :func:`active_set`), so the
    equality-constrained QP [[G, 1], [1ᵀ, 0]] [π; τ] = [c; 1] has a unique solution.
    """
    for _ in range(2 * G.shape[1] + 8):
        target, tau = _kkt_solve(_kkt_matrix(G, valid), c, valid)
        feasible = ((target >= -tol) | ~valid).all(-1)
        if bool(feasible.all()):
            pi = torch.where(valid, target.clamp_min(0.0), torch.zeros_like(target))
            return pi / pi.sum(-1, keepdim=True), valid, tau
        direction = target - pi
        shrink = valid & (direction < 0) & (target < -tol)
        ratio = torch.where(shrink, pi / torch.where(shrink, -direction, torch.ones_like(direction)),
                            torch.full_like(pi, math.inf))
        step = ratio.amin(-1, keepdim=True).clamp(max=1.0)
        first = ratio.argmin(-1, keepdim=True)
        moved = (pi + step * direction).clamp_min(0.0).scatter(-1, first, 0.0)
        moving = (~feasible).unsqueeze(-1)
        pi = torch.where(moving, moved, torch.where(valid, target.clamp_min(0.0), pi))
        drop = torch.zeros_like(valid).scatter(-1, first, True) & moving
        valid = valid & ~drop & ~(moving & (pi <= tol))
        pi = torch.where(valid, pi, torch.zeros_like(pi))
        pi = pi / pi.sum(-1, keepdim=True)
    raise RuntimeError("the active-set inner loop did not terminate")  # pragma: no cover


def active_set(theta: torch.Tensor, oracle: BatchedMapOracle, w: float = 0.0, max_iter: int = MAX_ITER,
               tol: Optional[float] = None) -> ActiveSets:
    """Batched primal active-set SparseMAP for scores ``theta`` (B, N) (eq-sparsemap-active-set).

    The Gram matrix of the active structures and their scores are updated as structures enter, so the
    inner iterations only touch (rows × slots × slots) tensors.  A structure returned by the oracle that
    lies in the affine hull of the active ones (a_new = Σ λ_s a_s, Σ λ = 1) cannot move μ; it improves
    the objective only through its score, c_new > Σ λ_s c_s, and is then swapped in along
    π ← π + t(e_new − λ) until the first weight reaches zero.  This keeps every active set affinely
    independent, so each QP solve is a plain linear solve.
    """
    if tol is None:
        tol = 1e3 * torch.finfo(theta.dtype).eps
    a0, b0 = oracle(theta)
    A = a0.to(theta.dtype).unsqueeze(1)
    feats = b0.to(theta.dtype).unsqueeze(1)
    G = (A * A).sum(-1, keepdim=True)
    c = (A.squeeze(1) * theta).sum(-1, keepdim=True) + w * feats
    valid = torch.ones(theta.shape[0], 1, dtype=torch.bool, device=theta.device)
    pi = torch.ones(theta.shape[0], 1, dtype=theta.dtype, device=theta.device)
    done = torch.zeros(theta.shape[0], dtype=torch.bool, device=theta.device)
    for it in range(1, max_iter + 1):
        pi, valid, tau = _optimise_on_active_set(G, c, valid, pi, tol)
        mu = (pi.unsqueeze(-1) * A).sum(1)
        y, b = oracle(theta - mu)
        y, b = y.to(theta.dtype), b.to(theta.dtype)
        ay = (A @ y.unsqueeze(-1)).squeeze(-1)  # overlaps with the active structures
        yy = (y * y).sum(-1)
        c_new = (theta * y).sum(-1) + w * b
        gain = c_new - (mu * y).sum(-1)
        known = ((ay == yy.unsqueeze(-1)) & (torch.diagonal(G, dim1=1, dim2=2) == yy.unsqueeze(-1)) & valid).any(-1)
        done = done | known | (gain <= tau + tol * (1.0 + tau.abs()))
        if bool(done.all()):
            return ActiveSets(mu, A, feats, valid, pi, tau, it)
        # is the new structure in the affine hull of the active ones?  λ solves the same KKT system
        lam, _ = _kkt_solve(_kkt_matrix(G, valid), ay, valid)
        vf = valid.to(theta.dtype)
        Gv = G * (vf.unsqueeze(-1) * vf.unsqueeze(-2))
        resid = yy - 2 * (lam * ay).sum(-1) + (lam.unsqueeze(1) @ Gv @ lam.unsqueeze(-1)).flatten()
        dependent = (resid < 1e-6) & ~done
        new_pi = torch.zeros_like(pi[:, :1])
        if bool(dependent.any()):
            pos = valid & (lam > tol)
            ratio = torch.where(pos, pi / torch.where(pos, lam, torch.ones_like(lam)), torch.full_like(pi, math.inf))
            step = ratio.amin(-1, keepdim=True)
            first = ratio.argmin(-1, keepdim=True)
            swapped = (pi - step * lam).clamp_min(0.0).scatter(-1, first, 0.0)
            dep = dependent.unsqueeze(-1)
            pi = torch.where(dep, swapped, pi)
            valid = valid & ~(dep & torch.zeros_like(valid).scatter(-1, first, True))
            new_pi = torch.where(dep, step, new_pi)
        A = torch.cat([A, y.unsqueeze(1)], dim=1)
        feats = torch.cat([feats, b.unsqueeze(1)], dim=1)
        G = torch.cat([torch.cat([G, ay.unsqueeze(-1)], dim=2),
                       torch.cat([ay, yy.unsqueeze(-1)], dim=1).unsqueeze(1)], dim=1)
        c = torch.cat([c, c_new.unsqueeze(-1)], dim=1)
        valid = torch.cat([valid, ~done.unsqueeze(1)], dim=1)
        pi = torch.cat([pi, new_pi], dim=1)
        pi = torch.where(valid, pi, torch.zeros_like(pi))
        pi = pi / pi.sum(-1, keepdim=True)
        keep = valid.any(0)  # drop slots no row uses
        if not bool(keep.all()):
            A, feats, valid, pi, c = A[:, keep], feats[:, keep], valid[:, keep], pi[:, keep], c[:, keep]
            G = G[:, keep][:, :, keep]
    raise RuntimeError(f"SparseMAP active set did not converge in {max_iter} iterations")


def _jacobian_core(A: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """M, the top-left block of [[AAᵀ, 1], [1ᵀ, 0]]⁻¹ over the valid slots (eq-sparsemap-jacobian).

    When AAᵀ is invertible M = Z − Z11ᵀZ/(1ᵀZ1) with Z = (AAᵀ)⁻¹; the bordered form
    also covers active structures of different sizes (e.g. the empty structure of
    an "at most k" budget), for which AAᵀ alone is singular.
    """
    vf = valid.to(A.dtype)
    Av = A * vf.unsqueeze(-1)
    K = _kkt_matrix(Av @ Av.transpose(1, 2), valid)
    s = A.shape[1]
    M = torch.linalg.pinv(K)[:, :s, :s]
    return M * (vf.unsqueeze(-1) * vf.unsqueeze(-2))


class _SparseMAPFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, theta, w_tensor, oracle, w, max_iter):
        sol = active_set(theta, oracle, w, max_iter)
        ctx.save_for_backward(sol.structures, sol.valid, sol.features)
        return sol.mu

    @staticmethod
    def backward(ctx, grad):
        A, valid, feats = ctx.saved_tensors
        M = _jacobian_core(A, valid)
        ag = (A @ grad.unsqueeze(-1))  # (B, S, 1)
        mag = M @ ag
        g_theta = (A.transpose(1, 2) @ mag).squeeze(-1)
        g_w = None
        if ctx.needs_input_grad[1]:
            g_w = (mag.squeeze(-1) * feats * valid.to(feats.dtype)).sum().reshape(())
        return g_theta, g_w, None, None, None


def sparsemap(theta: torch.Tensor, oracle: BatchedMapOracle, w=0.0, max_iter: int = MAX_ITER) -> torch.Tensor:
    """SparseMAP marginals of scores ``theta`` (B, N) for a batched MAP ``oracle`` (eq-sparsemap-map).

    ``w`` is the weight of the pairwise feature: a float, or a 0-dim tensor that may require grad.
    """
    w_tensor = w if isinstance(w, torch.Tensor) else None
    w_value = float(w) if not isinstance(w, torch.Tensor) else float(w.detach())
    return _SparseMAPFunction.apply(theta, w_tensor, oracle, w_value, max_iter)


class SparseMAP(Regularizer):
    """The SparseMAP regulariser Ω(μ) = ½‖μ‖² on the marginal polytope of a user's structures.

    Parameters
    ----------
    map_oracle : callable
        ``map_oracle(v)`` with ``v`` of shape (B, N) returns ``(a, b)``: the best structures (B, N) as 0/1
        floats and their pairwise features (B,) — the argmax of vᵀa + w b.  It must be batched over rows.
    w : float
        Weight of the pairwise feature.
    reference_point : Tensor, optional
        The barycentre of the structures (for the HFY energy constant 'fy').

    Examples
    --------
    k-subsets through the general solver (``hfy.ksubsets`` is the closed form of the same map)::

        def top_k(v, k=2):
            idx = v.topk(k, dim=-1).indices
            return torch.zeros_like(v).scatter(-1, idx, 1.0), torch.zeros(v.shape[0])

        mu = hfy.SparseMAP(top_k).predict(scores)
    """

    margin = math.inf
    simplex = False

    def __init__(self, map_oracle: BatchedMapOracle, w: float = 0.0, reference_point: Optional[torch.Tensor] = None,
                 max_iter: int = MAX_ITER):
        self.map_oracle, self.w, self.max_iter = map_oracle, float(w), int(max_iter)
        self._reference = reference_point

    def _flat(self, theta: torch.Tensor, dim: int) -> Tuple[torch.Tensor, tuple]:
        moved = theta.movedim(dim, -1)
        return moved.reshape(-1, moved.shape[-1]), moved.shape

    def predict(self, theta: torch.Tensor, dim: int = -1) -> torch.Tensor:
        flat, shape = self._flat(theta, dim)
        mu = sparsemap(flat, self.map_oracle, self.w, self.max_iter)
        return mu.reshape(shape).movedim(-1, dim)

    def omega(self, mu: torch.Tensor, dim: int = -1) -> torch.Tensor:
        return 0.5 * (mu * mu).sum(dim)

    def conjugate(self, theta: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """Ω*(θ) = Σ_s π_s (θᵀa_s + w b_s) − ½‖μ‖², with the Danskin gradient μ."""
        value = super().conjugate(theta, dim)
        if self.w == 0.0:
            return value
        flat, shape = self._flat(theta.detach(), dim)
        sol = active_set(flat, self.map_oracle, self.w, self.max_iter)
        bonus = (sol.weights * sol.features).sum(-1).reshape(shape[:-1])
        return value + self.w * bonus

    def reference_point(self, n: int, like: torch.Tensor) -> torch.Tensor:
        if self._reference is None:
            raise ValueError("pass `reference_point` (the barycentre of the structures) to use the 'fy' constant")
        return self._reference.to(dtype=like.dtype, device=like.device)

    def max_entropy(self, n: int) -> float:
        raise ValueError("SparseMAP has no entropy on the simplex")

    def __repr__(self) -> str:
        return f"SparseMAP(map_oracle={getattr(self.map_oracle, '__name__', 'oracle')}, w={self.w})"
