"""SparseMAP for any structure with a batched MAP oracle: a batched active-set solver (torch fast path).

Structures are 0/1 vectors a_s ∈ {0, 1}^N with a pairwise feature b_s scored
with weight w; SparseMAP (eq-sparsemap-map) is

    μ(θ) = Aᵀπ,   π ∈ argmax_{π ∈ simplex} Σ_s π_s (θᵀa_s + w b_s) − ½‖Aᵀπ‖².

Every row of a batch keeps its own active set in a padded tensor (rows ×
slots × N) with a validity mask.  Active sets are kept affinely independent
(a structure in the affine hull of the active ones is swapped in, see
:func:`active_set`), so the equality-constrained QP of each row is a batched
Cholesky solve.  No Python loop runs over the rows: only over active-set
iterations, and rows leave the batch as they converge.

The backward pass is the active-set Jacobian (eq-sparsemap-jacobian)
∂μ/∂θ = Aᵀ P A and ∂μ/∂w = Aᵀ P b, with P the top-left block of
[[AAᵀ, 1], [1ᵀ, 0]]⁻¹ (= Z − Z11ᵀZ/(1ᵀZ1), Z = (AAᵀ)⁻¹, when AAᵀ is invertible;
the chapter calls it M), applied to a vector by Cholesky solves on the lifted
Gram matrix M = AAᵀ + 11ᵀ (see :func:`_jacobian_product`).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import numpy as np
import torch

from .._structures import mixture_bonus_by_columns
from .fenchel_young import Regularizer, masked_dot

#: MAP(v: (B, N)) -> (a: (B, N) 0/1, b: (B,)), batched over rows.
BatchedMapOracle = Callable[[torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]

#: The smallest default cap on active-set iterations; the default is max(MAX_ITER, 10N) for N scores: a row
#: with many fractional marginals needs a few iterations per fractional entry (up to about five, measured).
MAX_ITER = 1000


def resolve_max_iter(max_iter: Optional[int], n: int) -> int:
    """The iteration cap: ``max_iter``, or max(MAX_ITER, 10N) when it is None; a clear error otherwise."""
    if max_iter is None:
        return max(MAX_ITER, 10 * n)
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"`max_iter` must be a positive int or None; got {max_iter!r}")
    return max_iter


@dataclass
class ActiveSets:
    """Batched SparseMAP solution: μ (B, N), active structures (B, S, N), features (B, S), validity, weights, τ.

    The active sets (structures, features, validity, weights) have S = 0 slots when they were not asked for.
    """

    mu: torch.Tensor
    structures: torch.Tensor
    features: torch.Tensor
    valid: torch.Tensor
    weights: torch.Tensor
    tau: torch.Tensor
    n_iter: int


# --- the equality-constrained QP on an active set ------------------------------------------------------
#
# On an active set with Gram matrix G = AAᵀ and scores c the QP is the bordered system
# [[G, 1], [1ᵀ, 0]] [π; τ] = [c; 1].  It is indefinite, but with α = 1 − τ it reads M π = c + α 1 with the
# *lifted* Gram matrix M = G + 11ᵀ, the Gram matrix of the vectors (a_s, 1), which is positive definite
# exactly when the active structures are affinely independent.  Every row keeps M on its active slots and
# the identity on its unused ones, updated as structures enter and leave, and each solve is a Cholesky
# solve.  M⁻¹ leaves the unused slots at zero, so they need no masking.


def _bordered_solve(L: torch.Tensor, top: torch.Tensor, vf: torch.Tensor, last: float):
    """(x, τ) with [[G, 1], [1ᵀ, 0]] [x; τ] = [top; last] on the active slots ``vf`` (0/1, (B, S)) for the
    columns of ``top`` (B, S, m), from the Cholesky factor ``L`` of M = G + 11ᵀ.  On 1ᵀx = last the system
    reads M x = top + (last − τ) 1, so with p = M⁻¹top and q = M⁻¹1, x = p + α q where α = last − τ makes
    1ᵀx = last.  Returns x (B, S, m) and τ (B, m)."""
    pq = torch.cholesky_solve(torch.cat([top * vf.unsqueeze(-1), vf.unsqueeze(-1)], dim=-1), L)
    sums = pq.sum(1, keepdim=True)
    alpha = (last - sums[..., :-1]) / sums[..., -1:]
    return torch.addcmul(pq[..., :-1], alpha, pq[..., -1:]), (last - alpha).squeeze(1)


def _solve(L: torch.Tensor, top: torch.Tensor, vf: torch.Tensor):
    """(x, τ) with [[G, 1], [1ᵀ, 0]] [x; τ] = [top; 1] for ``top`` (B, S): the QP on the active set."""
    x, tau = _bordered_solve(L, top.unsqueeze(-1), vf, 1.0)
    return x.squeeze(-1), tau.squeeze(-1)


def _release(M: torch.Tensor, gone: torch.Tensor) -> torch.Tensor:
    """M with the slots ``gone`` (0/1 floats, (B, S)) reset to the identity (their structures left)."""
    keep = 1.0 - gone
    return M * keep.unsqueeze(-1) * keep.unsqueeze(-2) + torch.diag_embed(gone)


def _lifted_gram(A: torch.Tensor, vf: torch.Tensor) -> torch.Tensor:
    """M = AAᵀ + 11ᵀ on the active slots ``vf`` (0/1, (B, S)) of the structures ``A`` (B, S, N), the identity
    on the others."""
    return _release((A @ A.transpose(1, 2) + 1.0) * vf.unsqueeze(-1) * vf.unsqueeze(-2), 1.0 - vf)


#: A structure whose squared distance to the affine hull of the active ones is below this lies in it.
DEPENDENT = 1e-6

#: Structures an active-set iteration may drop per row before the oracle is called (see :func:`_active_set`).
DROP_ROUNDS = 2


def _optimise_on_active_set(M, c, valid, pi, tol, rounds):
    """Move π towards the maximiser of the QP restricted to each row's active set, dropping structures.

    ``M`` (B, S, S) is the lifted Gram matrix of the active structures and ``c`` (B, S) their scores
    θᵀa_s + w b_s.  The active structures of every row are kept affinely independent (see
    :func:`active_set`), so the QP on them has a unique solution.  Where it has a negative weight, π moves
    towards it until the first weight reaches zero, that structure leaves, and the QP of that row is
    solved again, at most ``rounds`` times.  Returns π, the active slots, τ, M, the Cholesky factor of M
    and which rows hold their QP's solution (the others hold a feasible point on the way to it).
    """
    L = torch.linalg.cholesky(M)
    target, tau = _solve(L, c, valid.to(c.dtype))
    pi, valid = pi.clone(), valid.clone()
    moving = ((target < -tol) & valid).any(-1)
    for _ in range(rounds):
        if not bool(moving.any()):
            break
        rows = moving.nonzero().squeeze(1)
        p, v, t = pi[rows], valid[rows], target[rows]
        # move towards the target until the first falling weight reaches zero (p − t > 0 where t < 0 <= p)
        ratio = torch.where((t < -tol) & v, p / (p - t), math.inf)
        step, first = ratio.min(-1, keepdim=True)
        p = torch.addcmul(p, step, t - p).clamp_min_(0.0).scatter_(-1, first, 0.0)
        stay = v & (p > tol)
        p = p * stay
        pi[rows], valid[rows] = p / p.sum(-1, keepdim=True), stay
        Mr = _release(M[rows], (v & ~stay).to(M.dtype))
        Lr = torch.linalg.cholesky(Mr)
        M.index_copy_(0, rows, Mr)
        L.index_copy_(0, rows, Lr)
        t, tau_rows = _solve(Lr, c[rows], stay.to(c.dtype))
        target[rows], tau[rows] = t, tau_rows
        moving = torch.zeros_like(moving).index_put_((rows,), ((t < -tol) & stay).any(-1))
    pi = torch.where(moving.unsqueeze(-1), pi, target.clamp_min(0.0))
    return pi / pi.sum(-1, keepdim=True), valid, tau, M, L, ~moving


#: A warm start: θ (B, N) -> (structures (B, S, N), features (B, S), weights (B, S)).  The structures with
#: positive weight must be admissible and affinely independent; the weights are normalised per row, slots
#: with weight 0 are unused, and the structures tensor becomes the solver's (it is updated in place).
WarmStart = Callable[[torch.Tensor], Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def _collect(parts, mu: torch.Tensor, tau: torch.Tensor, n_iter: int) -> ActiveSets:
    """The solution with the active sets of the rows solved at different iterations (each part: the row
    indices and their structures, features, validity and weights), padded to a common number of slots."""
    if not parts:  # structures not kept
        empty = mu.new_zeros((mu.shape[0], 0))
        return ActiveSets(mu, empty.unsqueeze(-1), empty, empty.bool(), empty, tau, n_iter)
    slots = max(p[1].shape[1] for p in parts)

    def pad(t, value):
        extra = slots - t.shape[1]
        if extra == 0:
            return t
        return torch.cat([t, torch.full((t.shape[0], extra, *t.shape[2:]), value, dtype=t.dtype, device=t.device)], 1)

    rows = torch.cat([p[0] for p in parts])
    order = torch.empty_like(rows)
    order[rows] = torch.arange(rows.numel(), device=rows.device)
    A, feats, valid, pi = (torch.cat([pad(p[i], v) for p in parts])[order]
                           for i, v in ((1, 0), (2, 0), (3, False), (4, 0)))
    keep = valid.any(0)  # drop slots no row uses
    if not bool(keep.all()):
        A, feats, valid, pi = A[:, keep], feats[:, keep], valid[:, keep], pi[:, keep]
    return ActiveSets(mu, A, feats, valid, pi, tau, n_iter)


def active_set(theta: torch.Tensor, oracle: BatchedMapOracle, w: float = 0.0, max_iter: Optional[int] = None,
               tol: Optional[float] = None, start: Optional[WarmStart] = None, structures: bool = True) -> ActiveSets:
    """Batched primal active-set SparseMAP for scores ``theta`` (B, N) (eq-sparsemap-active-set).

    Each row starts from its MAP structure, or from the structures and weights of ``start`` (any
    feasible point of an affinely independent set: a good start saves most of the iterations).
    The lifted Gram matrix of the active structures and their scores are updated as structures enter
    and leave, so the iterations only touch (rows × slots × slots) tensors, and a structure that enters
    takes the slot of one that left.  A structure returned by the oracle that lies in the affine hull of
    the active ones (a_new = Σ λ_s a_s, Σ λ = 1) cannot move μ; it improves the objective only through
    its score, c_new > Σ λ_s c_s, and is then swapped in along π ← π + t(e_new − λ) until the first
    weight reaches zero.  This keeps every active set affinely independent, so each QP has a unique
    solution.  An iteration drops at most ``DROP_ROUNDS`` structures per row; a row with more to drop
    keeps its feasible point and adds no structure until its QP is solved, so that the few rows with
    long drop sequences do not add rounds to every iteration.  Rows leave the batch as soon as they
    have converged: later iterations (and oracle calls) only see the rows still being solved.  With
    ``structures=False`` only μ and τ are returned (the active sets are what the backward pass and the
    conjugate need).

    The solver runs in float64 whatever the dtype of ``theta`` (the oracle sees float64 scores) and
    returns float64 tensors: its tests of affine independence compare distances with 1e-6, below the
    rounding of float32 solves on the Gram matrices of a few dozen structures.

    An oracle may carry a whole solver for CPU scores, ``oracle.solve_rows(theta, max_iter, tol,
    structures, warm)`` returning these :class:`ActiveSets` (or None to decline): the oracle of
    sequential k-subsets carries the compiled row-by-row active set (:mod:`hfy._compiled.sequential`),
    with its own warm start when ``start`` is given.  A ``start`` marked ``pinned`` (whose active set
    matters, not only its speed) always runs here.
    """
    theta = theta.to(torch.float64)
    max_iter = resolve_max_iter(max_iter, theta.shape[-1])
    tol = 1e3 * torch.finfo(theta.dtype).eps if tol is None else tol
    solve_rows = getattr(oracle, "solve_rows", None)
    if solve_rows is not None and theta.device.type == "cpu" and not getattr(start, "pinned", False):
        sol = solve_rows(theta, max_iter, tol, structures, start is not None)
        if sol is not None:
            return sol
    return _active_set(theta, oracle, w, max_iter, tol, start, structures)


def _active_set(theta, oracle, w, max_iter, tol, start, structures) -> ActiveSets:
    dtype, batch = theta.dtype, theta.shape[0]
    if start is None:
        a0, b0 = oracle(theta)
        A, feats = a0.to(dtype).unsqueeze(1).clone(), b0.to(dtype).unsqueeze(1)
        pi = torch.ones(batch, 1, dtype=dtype, device=theta.device)
    else:  # (the structures the start returns are updated in place)
        A, feats, pi = (t.to(dtype) for t in start(theta))
        pi = pi * (pi > 0)
        if A.shape[1] == 0:  # no usable piece in any row (e.g. all narrower than the rounding): one slot
            A, feats, pi = A.new_zeros((batch, 1, A.shape[2])), feats.new_zeros((batch, 1)), pi.new_zeros((batch, 1))
    valid = pi > 0
    vf = valid.to(dtype)
    M = _lifted_gram(A, vf)
    if start is not None:  # a row without a usable start (no weight, or dependent structures) starts from its MAP
        redo = ~valid.any(-1) | (torch.linalg.cholesky_ex(M).info != 0)
        if bool(redo.any()):
            a0, b0 = oracle(theta[redo])
            A[redo], feats[redo], pi[redo] = 0.0, 0.0, 0.0
            A[redo, 0], feats[redo, 0], pi[redo, 0] = a0.to(dtype), b0.to(dtype), 1.0
            valid = pi > 0
            vf = valid.to(dtype)
            M[redo] = _lifted_gram(A[redo], vf[redo])
    spare = torch.empty_like(A)  # the rows still being solved are copied back and forth between A and spare
    pi = pi / pi.sum(-1, keepdim=True)
    c = ((A @ theta.unsqueeze(-1)).squeeze(-1) + w * feats) * vf
    rows = torch.arange(batch, device=theta.device)  # the rows still being solved
    out_mu, out_tau = torch.empty_like(theta), torch.empty_like(theta[:, 0])
    parts = []
    for it in range(1, max_iter + 1):
        pi, valid, tau, M, L, ready = _optimise_on_active_set(M, c, valid, pi, tol, DROP_ROUNDS)
        mu = (pi.unsqueeze(1) @ A).squeeze(1)
        v = theta - mu
        y, b = oracle(v)
        if y.dtype != dtype or b.dtype != dtype:
            y, b = y.to(dtype), b.to(dtype)
        ay = (y.unsqueeze(1) @ A.transpose(1, 2)).squeeze(1)  # overlaps with the structures in the slots
        yy = y.sum(-1)  # (0/1 structures: the squared norm is the size)
        gain = torch.add((v * y).sum(-1), b, alpha=w)
        size = torch.diagonal(M, dim1=1, dim2=2) - 1.0
        known = ((ay == yy.unsqueeze(-1)) & (size == yy.unsqueeze(-1)) & valid).any(-1)
        done = ready & (known | (gain <= tau + tol * (1.0 + tau.abs())))
        if bool(done.any()):
            finished = done.nonzero().squeeze(-1)
            out_mu.index_copy_(0, rows[finished], mu[finished])
            out_tau.index_copy_(0, rows[finished], tau[finished])
            if structures:
                parts.append((rows[finished], A[finished], feats[finished], valid[finished], pi[finished]))
            if finished.numel() == rows.numel():
                return _collect(parts, out_mu, out_tau, it)
            left = (~done).nonzero().squeeze(-1)
            A, spare = torch.index_select(A, 0, left, out=spare[: left.numel()]), A
            rows, theta, feats, M, L, c, valid, pi, y, b, ay, yy, gain, mu, ready = (
                t[left] for t in (rows, theta, feats, M, L, c, valid, pi, y, b, ay, yy, gain, mu, ready))
        vf = valid.to(dtype)
        ay = ay * vf  # the overlaps with structures that left are stale
        # is the new structure in the affine hull of the active ones?  λ solves the same QP with top = A y,
        # and ‖y − Aᵀλ‖² = yᵀy − λᵀAy − τ_λ
        lam, tau_lam = _solve(L, ay, vf)
        dependent = (yy - (lam * ay).sum(-1) - tau_lam < DEPENDENT) & ready
        new_pi = torch.zeros_like(pi[:, :1])
        if bool(dependent.any()):
            ratio = torch.where(valid & (lam > tol), pi / lam, math.inf)
            step, first = ratio.min(-1, keepdim=True)
            dep = dependent.unsqueeze(-1)
            pi = torch.where(dep, torch.addcmul(pi, step, lam, value=-1.0).clamp_min_(0.0).scatter_(-1, first, 0.0), pi)
            gone = torch.zeros_like(vf).scatter_(-1, first, 1.0) * dep
            valid, vf = valid & (gone == 0), vf - gone
            M, c, ay = _release(M, gone), c * vf, ay * vf
            new_pi = torch.where(dep, step, new_pi)
        # the new structure takes the first free slot of its row (one more slot for all rows if a row is full)
        if not bool((~valid).any(-1).all()):
            A = torch.cat([A, torch.zeros_like(A[:, :1])], 1)
            spare = torch.empty_like(A)
            feats, c, pi, ay, vf = (torch.cat([t, torch.zeros_like(t[:, :1])], 1) for t in (feats, c, pi, ay, vf))
            valid = torch.cat([valid, torch.zeros_like(valid[:, :1])], 1)
            M = torch.nn.functional.pad(M, (0, 1, 0, 1))
            M[:, -1, -1] = 1.0
        here = torch.arange(A.shape[0], device=A.device)
        at = (~valid).to(torch.int8).argmax(-1)
        A[here, at] = y
        lifted = (ay + 1.0) * vf  # (aᵀy + 1) with the active structures
        lifted[here, at] = yy + 1.0
        lifted = torch.where(ready.unsqueeze(-1), lifted, torch.nn.functional.one_hot(at, A.shape[1]).to(dtype))
        M[here, at, :] = lifted
        M[here, :, at] = lifted
        c[here, at] = gain + (mu * y).sum(-1)  # c_new = θᵀy + w b
        feats[here, at] = b
        valid[here, at] = ready  # rows still dropping structures add none
        pi[here, at] = new_pi.squeeze(-1)
        pi = pi / pi.sum(-1, keepdim=True)
    raise RuntimeError(f"SparseMAP active set did not converge in {max_iter} iterations; pass a larger `max_iter` "
                       "(a row needs a few iterations per fractional marginal)")


def _jacobian_product(A: torch.Tensor, valid: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """P top, with P the top-left block of [[AAᵀ, 1], [1ᵀ, 0]]⁻¹ over the valid slots (eq-sparsemap-jacobian).

    ``top`` is (B, S, m): the bordered system with right-hand side [top; 0], solved on the lifted Gram
    matrix M = AAᵀ + 11ᵀ of the active structures (positive definite, since they are affinely
    independent; the identity on the unused slots, as in the solver): P top = p − q (1ᵀp)/(1ᵀq) with
    p = M⁻¹top and q = M⁻¹1 (:func:`_bordered_solve`).  When AAᵀ is invertible this is Z − Z11ᵀZ/(1ᵀZ1) with Z = (AAᵀ)⁻¹;
    the bordered form also covers structures of different sizes (e.g. the empty structure of an
    "at most k" budget), for which AAᵀ alone is singular.
    """
    vf = valid.to(A.dtype)
    return _bordered_solve(torch.linalg.cholesky(_lifted_gram(A, vf)), top, vf, 0.0)[0]


class _SparseMAPFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, theta, w_tensor, oracle, w, max_iter, start):
        sol = active_set(theta, oracle, w, max_iter, start=start, structures=any(ctx.needs_input_grad[:2]))
        ctx.save_for_backward(sol.structures, sol.valid, sol.features)
        ctx.dtypes = theta.dtype, (w_tensor.dtype if w_tensor is not None else None)
        return sol.mu.to(theta.dtype)

    @staticmethod
    def backward(ctx, grad):
        A, valid, feats = ctx.saved_tensors
        ag = (A @ grad.to(A.dtype).unsqueeze(-1))  # (B, S, 1)
        mag = _jacobian_product(A, valid, ag)
        g_theta = (A.transpose(1, 2) @ mag).squeeze(-1).to(ctx.dtypes[0])
        g_w = None
        if ctx.needs_input_grad[1]:
            g_w = (mag.squeeze(-1) * feats * valid.to(feats.dtype)).sum().reshape(()).to(ctx.dtypes[1])
        return g_theta, g_w, None, None, None, None


def sparsemap(theta: torch.Tensor, oracle: BatchedMapOracle, w=0.0, max_iter: Optional[int] = None,
              start: Optional[WarmStart] = None) -> torch.Tensor:
    """SparseMAP marginals of scores ``theta`` (B, N) for a batched MAP ``oracle`` (eq-sparsemap-map).

    ``w`` is the weight of the pairwise feature: a float, or a 0-dim tensor that may require grad.
    ``start`` is an optional warm start for the active set (see :func:`active_set`); it changes the
    path of the solver, not the solution.  ``max_iter`` caps the active-set iterations (None:
    max(1000, 10N)); a row that needs more raises ``RuntimeError``.
    """
    _check_finite(theta)
    w_value = check_weight(w, "w")
    w_tensor = w if isinstance(w, torch.Tensor) else None
    if theta.shape[0] == 0:  # an empty batch
        return theta * 0.0
    return _SparseMAPFunction.apply(theta, w_tensor, oracle, w_value, max_iter, start)


def check_weight(w, name: str) -> float:
    """The pairwise weight as a float: a real number or a 0-dim floating tensor, else a clear error naming it."""
    if isinstance(w, torch.Tensor):
        if w.dim() != 0 or not w.is_floating_point():
            raise ValueError(f"`{name}` must be a float or a 0-dim floating-point tensor; got a tensor of shape "
                             f"{tuple(w.shape)} and dtype {w.dtype}")
        return float(w.detach())
    if isinstance(w, bool) or not isinstance(w, numbers.Real):
        raise ValueError(f"`{name}` must be a float or a 0-dim floating-point tensor; got {w!r}")
    return float(w)


def _check_finite(theta: torch.Tensor) -> None:
    """A clear error for NaN or ±inf scores: the general solver has no mask (a user's structures give −inf no
    meaning), and a non-finite score would make every marginal NaN."""
    if not bool(torch.isfinite(theta).all()):
        raise ValueError("`theta` must be finite for the general SparseMAP solver (NaN or ±inf found; it has no "
                         "-inf mask)")


class _ColumnBonus(torch.autograd.Function):
    """V_w(μ) for the rows of ``mu`` (R, N), the program's prices as its (super)gradient; ``solve`` (float64
    rows, device, eps of μ's dtype, name) gives both row by row (:meth:`SparseMAP._bonus_rows`).  The result
    comes back in the dtype and on the device of ``mu``."""

    @staticmethod
    def forward(ctx, mu, solve, name):
        rows = mu.detach().to("cpu", torch.float64).numpy()
        values, duals = solve(rows, mu.device, torch.finfo(mu.dtype).eps, name)
        ctx.save_for_backward(torch.from_numpy(duals).to(dtype=mu.dtype, device=mu.device))
        return torch.from_numpy(values).to(dtype=mu.dtype, device=mu.device)

    @staticmethod
    def backward(ctx, grad):
        (duals,) = ctx.saved_tensors
        return grad.unsqueeze(-1) * duals, None, None


#: How many rows' bonus programs a general SparseMAP regulariser remembers (the reference point of an energy
#: evaluated at every step is one).
BONUS_MEMO = 64


class SparseMAP(Regularizer):
    """The SparseMAP regulariser Ω(μ) = ½‖μ‖² on the marginal polytope of a user's structures.

    Parameters
    ----------
    map_oracle : callable
        ``map_oracle(v)`` with ``v`` of shape (B, N) returns ``(a, b)``: the best structures (B, N) as 0/1
        floats and their pairwise features (B,) — the argmax of vᵀa + w b.  It must be batched over rows,
        and it sees float64 scores: the solver runs in float64 whatever the dtype of θ.
    w : float
        Weight of the pairwise feature.
    reference_point : Tensor, optional
        The barycentre of the structures (for the HFY energy constant 'fy').
    max_iter : int, optional
        Cap on active-set iterations; None: max(1000, 10N).

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
    #: A warm start for the active set (see :func:`active_set`), for subclasses that have one.
    warm_start: Optional[WarmStart] = None

    def __init__(self, map_oracle: BatchedMapOracle, w: float = 0.0, reference_point: Optional[torch.Tensor] = None,
                 max_iter: Optional[int] = None):
        self.map_oracle, self.w = map_oracle, float(w)
        self.max_iter = None if max_iter is None else resolve_max_iter(max_iter, 0)
        self._reference = reference_point

    def _flat(self, theta: torch.Tensor, dim: int) -> Tuple[torch.Tensor, tuple]:
        moved = theta.movedim(dim, -1)
        return moved.reshape(-1, moved.shape[-1]), moved.shape

    def predict(self, theta: torch.Tensor, dim: int = -1) -> torch.Tensor:
        flat, shape = self._flat(theta, dim)
        mu = sparsemap(flat, self.map_oracle, self.w, self.max_iter, start=self.warm_start)
        return mu.reshape(shape).movedim(-1, dim)

    def omega(self, mu: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """Ω(μ) = ½‖μ‖² − V_w(μ), V_w(μ) = max { w Σ_s π_s b_s : π a mixture with marginals μ } (zero without a
        bonus).  With a bonus, V_w is a linear program over all structures, solved row by row on the CPU by
        column generation with the MAP oracle (:func:`~hfy._structures.mixture_bonus_by_columns`); its
        gradient in μ is μ minus the program's prices, a supergradient of V_w.  A clear error for μ outside
        the polytope.  The maps, the conjugate and the energy's dynamics never need it."""
        return self._omega(mu, dim, "mu")

    def _omega(self, mu: torch.Tensor, dim: int, name: str) -> torch.Tensor:
        quadratic = 0.5 * (mu * mu).sum(dim)
        if self.w == 0.0:
            return quadratic
        moved = mu.movedim(dim, -1)
        bonus = _ColumnBonus.apply(moved.reshape(-1, moved.shape[-1]), self._bonus_rows, name)
        return quadratic - bonus.reshape(moved.shape[:-1])

    def _bonus_rows(self, rows: np.ndarray, device: torch.device, eps: float, name: str):
        """V_w and its prices for float64 rows (R, N) by column generation, row by row on the CPU (the oracle
        sees (1, N) float64 scores on ``device``); the tolerance for missing the polytope is that of the
        dtype μ was computed in.  The last BONUS_MEMO rows solved are remembered."""
        memo = self.__dict__.setdefault("_bonus_memo", {})

        def oracle(v):
            a, b = self.map_oracle(torch.from_numpy(v).to(device).unsqueeze(0))
            return a[0].detach().to("cpu", torch.float64).numpy(), float(b[0])

        values, duals = np.zeros(rows.shape[0]), np.zeros(rows.shape)
        for i, row in enumerate(rows):
            key = (row.tobytes(), str(device), eps, self.w)
            if key not in memo:
                tol = math.sqrt(eps) * max(1.0, float(np.abs(row).sum()))
                solved = mixture_bonus_by_columns(row, oracle, self.w, name, tol)
                if len(memo) >= BONUS_MEMO:
                    memo.pop(next(iter(memo)))
                memo[key] = solved
            values[i], duals[i] = memo[key]
        return values, duals

    def loss(self, theta: torch.Tensor, y: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """L(θ; y) = Ω*(θ) + Ω(y) − ⟨θ, y⟩ for a target y in the polytope: >= 0, and 0 when y is the
        prediction (with a bonus, Ω(y) subtracts the bonus of the best mixture with marginals y; w·b(y) at a
        structure y)."""
        if self.w == 0.0 or y.shape != theta.shape:  # (the base class names a shape mismatch)
            return super().loss(theta, y, dim)
        y = y.to(theta.dtype)
        return self.conjugate(theta, dim) + self._omega(y, dim, "y") - masked_dot(theta, y, dim)

    def _predict_for_conjugate(self, theta: torch.Tensor, dim: int):
        """Ω*(θ) = Σ_s π_s (θᵀa_s + w b_s) − ½‖μ‖² (gradient μ) is ⟨θ, μ⟩ − Ω(μ) with Ω(μ) = ½‖μ‖² − w Σ_s π_s b_s:
        the optimal mixture π has the best expected bonus among those with marginals μ, so one active-set
        solve gives μ and Ω(μ)."""
        if self.w == 0.0:
            return super()._predict_for_conjugate(theta, dim)
        flat, shape = self._flat(theta, dim)
        if flat.shape[0] == 0:  # an empty batch
            mu = theta * 0.0
            return mu, mu.sum(dim)
        _check_finite(flat)
        sol = active_set(flat, self.map_oracle, self.w, self.max_iter, start=self.warm_start)
        mu = sol.mu.to(theta.dtype).reshape(shape).movedim(-1, dim)
        bonus = (sol.weights * sol.features).sum(-1).reshape(shape[:-1])
        return mu, 0.5 * (mu * mu).sum(dim) - self.w * bonus.to(theta.dtype)

    def reference_point(self, n: int, like: torch.Tensor) -> torch.Tensor:
        if self._reference is None:
            raise ValueError("pass `reference_point` (the barycentre of the structures) to use the 'fy' constant")
        return self._reference.to(dtype=like.dtype, device=like.device)

    def max_entropy(self, n: int) -> float:
        raise ValueError("SparseMAP has no entropy on the simplex")

    def __repr__(self) -> str:
        return f"SparseMAP(map_oracle={getattr(self.map_oracle, '__name__', 'oracle')}, w={self.w})"
