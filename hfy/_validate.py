"""Argument checks shared by the three layers (no torch, no cvxpy imports here).

Every public map validates its arguments through these helpers so that the
oracle, the reference and the fast path reject the same inputs with the same
messages.
"""

from __future__ import annotations

import math
import numbers


def check_alpha(alpha: float, *, name: str = "alpha", allow_inf: bool = False) -> float:
    """Entmax's α must satisfy α >= 1 (α = 1 is softmax)."""
    return _check_scalar(alpha, name=name, low=1.0, strict=False, allow_inf=allow_inf,
                         what="an entmax exponent: alpha >= 1 (alpha = 1 is softmax, 2 is sparsemax)")


def check_gamma(gamma: float, *, name: str = "alpha") -> float:
    """The norm order γ of γ-normmax must satisfy γ > 1 (γ = inf allowed)."""
    return _check_scalar(gamma, name=name, low=1.0, strict=True, allow_inf=True,
                         what="a norm order: gamma > 1 (inf is allowed)")


def _check_scalar(value, *, name: str, low: float, strict: bool, allow_inf: bool, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number ({what}); got {type(value).__name__}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"`{name}` must be {what}; got nan")
    if math.isinf(value) and not (allow_inf and value > 0):
        raise ValueError(f"`{name}` must be {what}; got {value}")
    if value < low or (strict and value == low):
        raise ValueError(f"`{name}` must be {what}; got {value}")
    return value


def check_transition(w: float) -> float:
    """The bonus of sequential k-subsets: a number or +inf (windows); NaN and -inf (which would forbid every
    structure with adjacent positions) raise."""
    w = float(w)
    if math.isnan(w) or w == -math.inf:
        raise ValueError(f"`transition` must be a number or +inf (windows); got {w}")
    return w


def certified_margin(omega) -> float:
    """The margin m of ``omega`` for the single-memory certificate (inf: nothing is certified); maps off the
    simplex with a finite margin (k-subsets, constrained sparsemax) retrieve no single memory and raise."""
    m = float(omega.margin)
    if math.isfinite(m) and not getattr(omega, "simplex", True):
        raise ValueError(f"`omega`: certify covers maps on the simplex, whose margin makes a single memory a "
                         f"fixed point; {type(omega).__name__} does not retrieve single memories (for k-subsets, "
                         "use the structured margin between the k-th and (k+1)-th scores)")
    return m


def check_reduction(reduction: str) -> str:
    """Loss reductions accepted everywhere ('elementwise_mean' is the entmax spelling of 'mean')."""
    if reduction == "elementwise_mean":
        return "mean"
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(
            f"`reduction` must be one of 'none', 'mean', 'sum' (or 'elementwise_mean'); got {reduction!r}"
        )
    return reduction
