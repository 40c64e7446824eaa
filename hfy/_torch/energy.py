"""The HFY energy, its CCCP update and retrieval (torch fast path).

Twins of :mod:`hfy.reference.energy`.  For memories X (N × D), states
q (..., D), a score-side regulariser Ω and a state-side Ψ:

    E(q) = Ψ(q) − β⁻¹ Ω*(βXq) + Ψ*(Xᵀȳ) − β⁻¹ Ω(ȳ)                 (eq-energy-fy)
    p = ŷ_Ω(βXq),   q ← ŷ_Ψ(Xᵀp)                                     (eq-energy-update)

The gradient of E is ∇Ψ(q) − Xᵀŷ_Ω(βXq) by Danskin's theorem: autograd of
:func:`energy` never differentiates through a solver.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Optional, Union

import torch
from torch import nn

from .classical import Quadratic
from .entmax import Tsallis
from .fenchel_young import Regularizer
from .normmax import NormEntropy
from .post_transforms import Identity, L2Normalize, LayerNorm, PostTransform, Sign, Tanh
from .softmax import Shannon

CONSTANTS = ("fy", "sshn", "none")

_OMEGAS = {
    "softmax": Shannon,
    "sparsemax": lambda: Tsallis(2.0),
    "entmax15": lambda: Tsallis(1.5),
    "normmax": lambda: NormEntropy(2.0),
    "identity": Quadratic,
}
_PSIS = {"identity": Identity, "l2": L2Normalize, "layernorm": LayerNorm, "sign": Sign, "tanh": Tanh}


def as_omega(omega: Union[str, Regularizer]) -> Regularizer:
    """A regulariser from an object or a name ('softmax', 'sparsemax', 'entmax15', 'normmax', 'identity')."""
    if isinstance(omega, str):
        if omega not in _OMEGAS:
            raise ValueError(f"`omega` must be a Regularizer or one of {sorted(_OMEGAS)}; got {omega!r}")
        return _OMEGAS[omega]()
    if not isinstance(omega, Regularizer):
        raise TypeError(f"`omega` must be a hfy Regularizer; got {type(omega).__name__}")
    return omega


def as_psi(psi: Union[str, PostTransform]) -> PostTransform:
    """A post-transformation from an object or a name ('identity', 'l2', 'layernorm', 'sign', 'tanh')."""
    if isinstance(psi, str):
        if psi not in _PSIS:
            raise ValueError(f"`psi` must be a PostTransform or one of {sorted(_PSIS)}; got {psi!r}")
        return _PSIS[psi]()
    if not isinstance(psi, PostTransform):
        raise TypeError(f"`psi` must be a hfy PostTransform; got {type(psi).__name__}")
    return psi


def _check_pair(omega: Regularizer, psi: PostTransform) -> None:
    """Ω whose prediction is rescaled per row (an overflow guard) needs a Ψ that ignores the scale."""
    if omega.rescaled and not psi.scale_invariant:
        raise ValueError(f"`psi` = {psi!r} is not invariant to positive scaling, so it cannot follow {omega!r}, "
                         "whose weights are rescaled per query; use sign, l2 or layernorm, or shift=False")


def _check_beta(beta) -> None:
    if isinstance(beta, torch.Tensor):
        if beta.numel() != 1:
            raise ValueError(f"`beta` must be a scalar (a float or a one-element tensor); got shape {tuple(beta.shape)}")
        if bool((beta <= 0).any()) or not bool(torch.isfinite(beta).all()):
            raise ValueError("`beta` must be finite and > 0")
    elif not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta > 0):
        raise ValueError(f"`beta` must be a finite number > 0; got {beta!r}")


def _prepare(q: torch.Tensor, X: torch.Tensor, beta, omega: Regularizer, mask: Optional[torch.Tensor]):
    """Validate shapes; return (X_used, mask_for_scores) where masking is by −inf (simplex Ω) or row selection."""
    if not isinstance(X, torch.Tensor) or not X.is_floating_point() or X.dim() != 2 or X.shape[0] == 0:
        raise ValueError("`X` must be a floating tensor of shape (N, D) with N >= 1")
    if not isinstance(q, torch.Tensor) or not q.is_floating_point():
        raise TypeError("`q` must be a floating-point tensor")
    if q.dim() == 0 or q.shape[-1] != X.shape[1]:
        raise ValueError(f"`q` must have shape (..., D) with D = {X.shape[1]}; got {tuple(q.shape)}")
    _check_beta(beta)
    if mask is None:
        return X, None
    if mask.dtype != torch.bool:
        raise TypeError(f"`mask` must be a boolean tensor (True = memory in use); got {mask.dtype}")
    if mask.shape[-1] != X.shape[0]:
        raise ValueError(f"`mask` must have shape (..., N) with N = {X.shape[0]}; got {tuple(mask.shape)}")
    if mask.dim() == 1 or not omega.inf_mask:
        if mask.dim() != 1:
            raise ValueError("a per-query `mask` needs a regulariser that accepts -inf scores as masks")
        if not bool(mask.any()):
            raise ValueError("`mask` leaves no memory")
        if not omega.inf_mask:
            return X[mask], None
    return X, mask


def scores(q: torch.Tensor, X: torch.Tensor, beta, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """θ = β X q along the last axis, with −inf at masked memories."""
    theta = q @ X.transpose(0, 1)
    # β·(qXᵀ), not (βq)Xᵀ: the rounding of the reference, which margin tests compare bit for bit;
    # in place unless autograd needs the product (a β that requires grad)
    theta = theta * beta if isinstance(beta, torch.Tensor) and beta.requires_grad else theta.mul_(beta)
    if mask is not None:
        theta = theta.masked_fill_(~mask, -math.inf)
    return theta


#: Candidate-set size of the sparse update path (see :func:`_sparse_retrieval`).
TOPK = 64

#: Column stride of the subsample that bounds the threshold of rows whose support exceeds ``TOPK``.
SUBSAMPLE = 16

#: Xᵀp is a sparse product on CPU while p has at most N / SPARSE_PRODUCT_RATIO nonzeros per row on
#: average; above that a dense product is faster (a scattered row of X costs tens of times a streamed one).
SPARSE_PRODUCT_RATIO = 64


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in tensors)


def _is_threshold_map(omega: Regularizer) -> bool:
    """Maps that give weight 0 to every score below a threshold (entmax α > 1, normmax, k-subsets, ...)."""
    return bool(omega.threshold) and getattr(omega, "k", 1) < TOPK


#: Largest score matrix (queries × memories) that the CPU softmax update forms in place (2^28 entries,
#: 1 GiB in float32); beyond it, ``scaled_dot_product_attention`` streams over the memories.
IN_PLACE_SOFTMAX_MAX = 1 << 28


def _attention(q: torch.Tensor, X: torch.Tensor, beta, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Xᵀ softmax(βXq) without returning the weights.

    On CPU in float32/float64 the weights are formed in place in the score buffer (max, subtract,
    exp, then one matrix product and a division by the row sums): on two cores this is about a
    third faster than ``scaled_dot_product_attention``.  Elsewhere (CUDA, half precision, where
    fused attention kernels win, and score matrices too large to hold) it is
    ``scaled_dot_product_attention`` with keys = values = X.
    """
    if q.device.type == "cpu" and q.dtype in (torch.float32, torch.float64) \
            and q[..., 0].numel() * X.shape[0] <= IN_PLACE_SOFTMAX_MAX:
        theta = scores(q, X, beta, mask)
        top = theta.amax(-1, keepdim=True)
        top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))  # an all-masked row stays all −inf
        weights = theta.sub_(top).exp_()
        total = weights.sum(-1, keepdim=True).clamp_min_(torch.finfo(q.dtype).tiny)  # all-masked: 0 / tiny = 0
        return (weights @ X).div_(total)
    batch = q.shape[:-1]
    flat = q.reshape(1, -1, q.shape[-1])
    attn_mask = None
    if mask is not None:
        attn_mask = mask.expand(*batch, X.shape[0]).reshape(1, -1, X.shape[0])
    scale = float(beta) if not isinstance(beta, torch.Tensor) else None
    if scale is None:  # a tensor β: fold it into the queries
        flat = (beta * q).reshape(1, -1, q.shape[-1])
        scale = 1.0
    out = torch.nn.functional.scaled_dot_product_attention(flat, X.unsqueeze(0), X.unsqueeze(0),
                                                           attn_mask=attn_mask, scale=scale)
    out = out.reshape(*batch, X.shape[1])
    if mask is not None:  # an all-masked query attends to nothing
        alive = mask.expand(*batch, X.shape[0]).any(-1, keepdim=True)
        out = torch.where(alive, out, torch.zeros_like(out))
    return out


def _sparse_products(X: torch.Tensor) -> bool:
    """Whether Xᵀp can be a CSR product: torch's CPU kernel for float32/float64."""
    return X.device.type == "cpu" and X.dtype in (torch.float32, torch.float64)


def _csr_product(crow: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """P X for P given in compressed-sparse-row form (row pointers, column indices, values)."""
    with warnings.catch_warnings():  # torch flags its CSR layout as beta on first use; the product is exact
        warnings.simplefilter("ignore", UserWarning)
        sparse = torch.sparse_csr_tensor(crow, cols, values.to(X.dtype), size=(crow.numel() - 1, X.shape[0]),
                                         check_invariants=False)
        return torch.sparse.mm(sparse, X)


def _weighted_rows(weights: torch.Tensor, index: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Σ_j weights[b, j] X[index[b, j]] for every row b: a CSR product on CPU, a gather elsewhere."""
    rows, k = weights.shape
    if _sparse_products(X):
        crow = torch.arange(0, rows * k + 1, k, device=X.device)
        return _csr_product(crow, index.reshape(-1), weights.reshape(-1), X)
    return torch.einsum("bk,bkd->bd", weights, X[index])


def _large_support(theta: torch.Tensor, top: torch.Tensor, omega: Regularizer, X: torch.Tensor) -> torch.Tensor:
    """Xᵀ ŷ_Ω(θ) for rows whose support does not fit in their top ``TOPK`` scores ``top``.

    1. A lower bound on each row's threshold: the map on a subset of the scores has a
       threshold no larger than on all of them (more scores need a higher threshold for the
       same mass), so the largest score that gets weight 0 on the subset — the top ``TOPK``
       plus every ``SUBSAMPLE``-th of the others — bounds the threshold from below.
    2. Candidates: the scores above that bound, gathered row by row into a −inf-padded block,
       with the bound itself appended as a sentinel.  The map on the block is exact for the row
       when the sentinel gets weight 0: every score left out is at most the sentinel.
    3. Rows that fail (no zero weight on the subset, or a sentinel with weight) use the dense map.
    ``theta`` is overwritten.
    """
    rows, n = theta.shape
    neg = torch.tensor(-math.inf, dtype=theta.dtype, device=theta.device)
    lowest = top.amin(-1, keepdim=True)
    sub = theta[:, ::SUBSAMPLE]
    sub = torch.where(sub < lowest, sub, neg)  # scores in the top set already (and ties with its edge) drop out
    subset = torch.cat([top, sub], dim=-1)
    bound = torch.where(omega.predict(subset) == 0, subset, neg).amax(-1, keepdim=True)
    unbounded = torch.isinf(bound)  # the whole subset has weight: such rows go dense, with no candidates
    if bool(unbounded.all()):
        return omega.predict(theta) @ X
    cand_rows, cand_cols = torch.nonzero(theta > bound.masked_fill(unbounded, math.inf), as_tuple=True)
    counts = torch.bincount(cand_rows, minlength=rows)
    width = int(counts.max()) if cand_rows.numel() else 0
    slot = torch.arange(cand_rows.numel(), device=theta.device) - (counts.cumsum(0) - counts)[cand_rows]
    block = torch.full((rows, width + 1), -math.inf, dtype=theta.dtype, device=theta.device)
    block[cand_rows, slot] = theta[cand_rows, cand_cols]
    block[:, width] = bound.masked_fill(unbounded, 0.0).squeeze(-1)
    # the blocks of unbounded rows are placeholders (their weights are not used): finite scores, so that a
    # map that needs several unmasked scores (k-subsets) accepts them; the bounded rows have at least
    # as many candidates as the map gives weight to
    block.masked_fill_(unbounded, 0.0)
    weights = omega.predict(block)
    failed = torch.nonzero(unbounded.squeeze(-1) | (weights[:, width] != 0)).flatten()
    dense = omega.predict(theta[failed]) @ X if failed.numel() else None
    values = weights[cand_rows, slot]
    keep = values != 0
    cand_rows, cand_cols, values = cand_rows[keep], cand_cols[keep], values[keep]
    if _sparse_products(X) and values.numel() * SPARSE_PRODUCT_RATIO <= rows * n:
        counts = torch.bincount(cand_rows, minlength=rows)
        out = _csr_product(torch.cat([counts.new_zeros(1), counts.cumsum(0)]), cand_cols, values, X)
    else:
        weights_full = theta.zero_()
        weights_full[cand_rows, cand_cols] = values
        out = weights_full @ X
    if dense is not None:
        out[failed] = dense
    return out


def _sparse_retrieval(q: torch.Tensor, X: torch.Tensor, beta, omega: Regularizer,
                      mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Xᵀ ŷ_Ω(βXq) for a threshold map, without the dense weights where the support is small.

    A threshold map gives zero weight to every score at or below its threshold,
    so if the smallest of the top ``TOPK`` scores gets weight 0, the map restricted to
    the top scores is the map itself and Xᵀp needs ``TOPK`` rows of X, not N.  Rows
    whose support does not fit go through :func:`_large_support`.  The result is exact
    either way; used when no gradient is needed.
    """
    theta = scores(q, X, beta, mask)
    n = X.shape[0]
    flat = theta.reshape(-1, n)
    vals, idx = flat.topk(TOPK, dim=-1, sorted=False)
    pv = omega.predict(vals)
    edge = pv.gather(-1, vals.argmin(-1, keepdim=True)).squeeze(-1)
    spill = torch.nonzero(edge != 0).flatten()
    if spill.numel() == flat.shape[0]:  # no row fits: skip the top-64 product
        out = _large_support(flat, vals, omega, X)
    else:
        out = _weighted_rows(pv, idx, X)
        if spill.numel():
            out[spill] = _large_support(flat[spill], vals[spill], omega, X)
    return out.reshape(*q.shape[:-1], X.shape[1])


def energy(q: torch.Tensor, X: torch.Tensor, beta: float = 1.0, omega="softmax", psi="identity",
           constant: str = "fy", mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """HFY energy of states ``q`` (eq-energy-fy); differentiable, with ∇E = ∇Ψ(q) − Xᵀŷ_Ω(βXq).

    Parameters
    ----------
    q : Tensor, shape (..., D)
    X : Tensor, shape (N, D)
        Memories, one per row.
    beta : float
        Inverse temperature on the score side.
    omega : Regularizer or str
        Ω: ``hfy.Shannon()``, ``hfy.Tsallis(alpha)``, ``hfy.NormEntropy(gamma)``, ``hfy.Quadratic()``,
        a dense-memory regulariser, or a name.
    psi : PostTransform or str
        Ψ: ``hfy.Identity()``, ``hfy.L2Normalize()``, ``hfy.LayerNorm()``, ``hfy.Sign()``, ``hfy.Tanh(beta)``, or a name.
    constant : {'fy', 'sshn', 'none'}
        'fy' is the difference of Fenchel-Young losses (eq-energy-fy); 'none' drops the constant;
        'sshn' (identity Ψ, simplex Ω) adds β⁻¹H(u) + ½M² instead, which makes E >= 0 and,
        with Shannon, equals the modern Hopfield energy.
    mask : bool Tensor, shape (N,) or (..., N), optional
        True for memories in use.

    Returns
    -------
    Tensor, shape (...)

    See Also
    --------
    hfy.reference.energy, hfy.oracle.energy
    """
    omega, psi = as_omega(omega), as_psi(psi)
    if constant not in CONSTANTS:
        raise ValueError(f"`constant` must be one of {CONSTANTS}; got {constant!r}")
    Xu, m = _prepare(q, X, beta, omega, mask)
    if m is not None and not bool(m.any(-1).all()):
        # the update maps such a query to 0, but its energy has no value (sup over an empty set)
        raise ValueError("`mask` leaves some query with no memory: its energy is undefined")
    value = psi.psi(q) - omega.conjugate(scores(q, Xu, beta, m)) / beta
    if constant == "none":
        return value
    if constant == "fy":
        if m is None:
            ybar = omega.reference_point(Xu.shape[0], q)
            const = psi.conjugate(ybar @ Xu) - omega.omega(ybar) / beta
        else:  # one barycentre per mask pattern (uniform over the unmasked memories, with ȳ's total mass)
            counts = m.sum(-1, keepdim=True).to(q.dtype)
            mass = float(omega.reference_point(Xu.shape[0], q).sum())
            ybar = mass * m.to(q.dtype) / counts
            const = psi.conjugate(ybar @ Xu) - omega.omega(ybar) / beta
        return value + const
    if not isinstance(psi, Identity) or not omega.simplex:
        raise ValueError("constant='sshn' needs psi='identity' and a regulariser on the simplex")
    sq = (Xu * Xu).sum(-1)
    if m is None:
        return value + omega.max_entropy(Xu.shape[0]) / beta + 0.5 * sq.max()
    counts = m.sum(-1)
    h = torch.tensor([omega.max_entropy(int(c)) for c in counts.flatten()], dtype=q.dtype,
                     device=q.device).reshape(counts.shape)
    return value + h / beta + 0.5 * sq.masked_fill(~m, -math.inf).amax(-1)


def update(q: torch.Tensor, X: torch.Tensor, beta: float = 1.0, omega="softmax", psi="identity",
           mask: Optional[torch.Tensor] = None, return_weights: bool = False):
    """One CCCP step q ← ŷ_Ψ(Xᵀ ŷ_Ω(βXq)) (eq-energy-update); with ``return_weights`` also p.

    With Shannon and identity Ψ this is one step of attention with keys = values = X.
    """
    omega, psi = as_omega(omega), as_psi(psi)
    _check_pair(omega, psi)
    Xu, m = _prepare(q, X, beta, omega, mask)
    if not return_weights:
        if isinstance(omega, Shannon) and type(omega) is Shannon:
            return psi.predict(_attention(q, Xu, beta, m))
        if _is_threshold_map(omega) and Xu.shape[0] > 4 * TOPK and not _needs_grad(q, Xu, beta):
            return psi.predict(_sparse_retrieval(q, Xu, beta, omega, m))
    p = omega.predict(scores(q, Xu, beta, m))
    q_next = psi.predict(p @ Xu)
    if not return_weights:
        return q_next
    if Xu is not X:  # rows were selected by a 1-D mask on a non-simplex Ω
        full = torch.zeros(*p.shape[:-1], X.shape[0], dtype=p.dtype, device=p.device)
        full[..., mask] = p
        p = full
    return q_next, p


@dataclass
class Retrieval:
    """What :func:`retrieve` returns.

    Attributes
    ----------
    q : Tensor, shape (..., D)
        Final states.
    p : Tensor, shape (..., N)
        Weights ŷ_Ω(βXq) at the final states.
    n_iter : Tensor of int, shape (...)
        Updates applied to each query.
    converged : Tensor of bool, shape (...)
        Whether each query met the tolerance within ``max_iter``.
    energies : Tensor, shape (T + 1, ...) or None
        Energy (constant 'fy') of every query before each update, T = max(n_iter)
        (the loop stops once every query has converged); a converged query repeats
        its final value.
    """

    q: torch.Tensor
    p: torch.Tensor
    n_iter: torch.Tensor
    converged: torch.Tensor
    energies: Optional[torch.Tensor] = None


def retrieve(q: torch.Tensor, X: torch.Tensor, beta: float = 1.0, omega="softmax", psi="identity",
             mask: Optional[torch.Tensor] = None, max_iter: int = 100, tol: float = 1e-6,
             trace: bool = False) -> Retrieval:
    """Run the CCCP updates from ``q`` until each query converges (eq-energy-update).

    A query stops when ‖q⁺ − q‖_∞ <= tol or ‖p⁺ − p‖_∞ <= tol, or after
    ``max_iter`` updates; converged queries are not updated again.  The state is
    used as given: pre-transform initial states (``psi.predict(q)``) and memories
    when Ψ is an idempotent normalisation.

    See Also
    --------
    hfy.reference.retrieve, HFY
    """
    if int(max_iter) < 1:
        raise ValueError(f"`max_iter` must be >= 1; got {max_iter}")
    if not tol >= 0:
        raise ValueError(f"`tol` must be >= 0; got {tol}")
    omega, psi = as_omega(omega), as_psi(psi)
    _check_pair(omega, psi)
    _prepare(q, X, beta, omega, mask)
    batch = q.shape[:-1]
    flat = q.reshape(-1, q.shape[-1]).clone()
    n = flat.shape[0]
    flat_mask = None
    if mask is not None and mask.dim() > 1:
        flat_mask = mask.expand(*batch, X.shape[0]).reshape(n, X.shape[0])
    p_prev = None
    n_iter = torch.zeros(n, dtype=torch.long, device=q.device)
    done = torch.zeros(n, dtype=torch.bool, device=q.device)
    trace_rows = []
    if trace:
        trace_rows.append(energy(flat, X, beta, omega, psi, "fy", flat_mask if flat_mask is not None else mask))
    for _ in range(int(max_iter)):
        idx = torch.nonzero(~done).flatten()
        if idx.numel() == 0:
            break
        m_a = flat_mask[idx] if flat_mask is not None else mask
        q_a = flat[idx]
        q_new, p_new = update(q_a, X, beta, omega, psi, m_a, return_weights=True)
        if p_prev is None:
            p_prev = torch.full((n, p_new.shape[-1]), math.nan, dtype=p_new.dtype, device=p_new.device)
        dq = (q_new - q_a).abs().amax(-1)
        dp = (p_new - p_prev[idx]).abs().amax(-1)
        dp = torch.where(torch.isnan(dp), torch.full_like(dp, math.inf), dp)
        flat[idx] = q_new
        p_prev[idx] = p_new
        n_iter[idx] += 1
        done[idx] = (dq <= tol) | (dp <= tol)
        if trace:
            trace_rows.append(energy(flat, X, beta, omega, psi, "fy", flat_mask if flat_mask is not None else mask))
    _, p_final = update(flat, X, beta, omega, psi, flat_mask if flat_mask is not None else mask, return_weights=True)
    energies = None
    if trace:
        energies = torch.stack(trace_rows).reshape(len(trace_rows), *batch)
    return Retrieval(flat.reshape(q.shape), p_final.reshape(*batch, p_final.shape[-1]), n_iter.reshape(batch),
                     done.reshape(batch), energies)


class HFY(nn.Module):
    """A Hopfield-Fenchel-Young associative memory: memories, temperature, Ω and Ψ in one object.

    Its methods call :func:`energy`, :func:`update` and :func:`retrieve` with the
    stored settings; ``forward(q)`` is one update.  By default there are no
    projections and no normalisation: it is pure retrieval.

    Parameters
    ----------
    X : Tensor, shape (N, D)
        Memories (stored as a buffer).
    beta : float
    omega : Regularizer or str
    psi : PostTransform or str
    mask : bool Tensor, shape (N,), optional
    pretransform : bool
        Apply ŷ_Ψ to the memories once (for idempotent Ψ this puts them in the
        image of the map, the hypothesis of exact retrieval).
    """

    def __init__(self, X: torch.Tensor, beta: float = 1.0, omega="softmax", psi="identity",
                 mask: Optional[torch.Tensor] = None, pretransform: bool = False):
        super().__init__()
        self.omega, self.psi = as_omega(omega), as_psi(psi)
        _check_pair(self.omega, self.psi)
        _check_beta(beta)
        self.beta = beta
        memories = self.psi.predict(X) if pretransform else X
        self.register_buffer("X", memories)
        self.register_buffer("mask", mask if mask is not None else None)

    def energy(self, q: torch.Tensor, constant: str = "fy") -> torch.Tensor:
        return energy(q, self.X, self.beta, self.omega, self.psi, constant, self.mask)

    def update(self, q: torch.Tensor, return_weights: bool = False):
        return update(q, self.X, self.beta, self.omega, self.psi, self.mask, return_weights)

    def retrieve(self, q: torch.Tensor, max_iter: int = 100, tol: float = 1e-6, trace: bool = False) -> Retrieval:
        return retrieve(q, self.X, self.beta, self.omega, self.psi, self.mask, max_iter, tol, trace)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return self.update(q)

    def extra_repr(self) -> str:
        return f"N={self.X.shape[0]}, D={self.X.shape[1]}, beta={self.beta}, omega={self.omega!r}, psi={self.psi!r}"
