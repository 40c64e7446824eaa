"""γ-normmax: the triangle for every γ, sort vs bisection, ∞-normmax, gradients and the margin 1."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.optimize import brentq

import hfy
import hfy.oracle as oracle
import hfy.reference as ref
from hfy.reference._core import bisect_decreasing, shift_by_max
from hfy.reference.normmax import normmax_threshold
from hfy.testing import (
    FD_ATOL,
    GRADCHECK,
    MAP_LAYOUTS_SHORT,
    ORACLE_ATOL,
    ORACLE_POWER_ATOL,
    PROPERTY_ATOL,
    REFERENCE_ATOL,
    adversarial_scores,
    dtype_atol,
    finite_difference_jacobian,
    layout_ids,
    random_scores,
)

GAMMAS = [1.1, 1.5, 2.0, 3.0, 5.0, 10.0, math.inf]
FINITE_GAMMAS = [g for g in GAMMAS if math.isfinite(g)]
LOW_PRECISION = [torch.float32, torch.float16, torch.bfloat16]

LAYOUTS = [pytest.param(*layout, id=i) for layout, i in zip(MAP_LAYOUTS_SHORT, layout_ids(MAP_LAYOUTS_SHORT))]

#: adversarial cases whose top gap is exactly the margin 1 of every γ.
AT_THE_MARGIN = ("huge offset", "gap exactly one")


def oracle_unfit(name: str, gamma: float) -> bool:
    """Adversarial cases the cvxpy oracle cannot resolve at this γ, and why."""
    if name == "huge scale":  # |θ| = 1e30 is outside the range of a conic solver
        return True
    # At a top gap of exactly 1 the objective along the edge from e_1 is flat to order γ
    # (−t^γ/γ), so a duality gap δ leaves the maximiser undetermined by ~δ^(1/γ): ~1e-4 for
    # γ = 3 at δ = 1e-12, beyond ORACLE_POWER_ATOL.  For γ = ∞ the program is a linear program
    # whose whole face {uniform on any top set} is optimal there.
    return name in AT_THE_MARGIN and gamma >= 3


def oracle_cases():
    cases = []
    for gamma in GAMMAS:
        for label, z in [
            ("random N=2", random_scores((2,), 1.0, 0)),
            ("random N=5 scale 3", random_scores((5,), 3.0, 1)),
            ("random N=8", random_scores((8,), 1.0, 2)),
            ("random N=6 scale 0.3", random_scores((6,), 0.3, 3)),
        ] + list(adversarial_scores()):
            if not oracle_unfit(label, gamma):
                cases.append(pytest.param(gamma, z, id=f"gamma={gamma}-{label}"))
    return cases


def finite_scores(min_n=1, max_n=10, bound=10.0):
    return st.integers(min_n, max_n).flatmap(
        lambda n: hnp.arrays(np.float64, n, elements=st.floats(-bound, bound, allow_subnormal=False))
    )


def two_point_normmax(d: float, gamma: float) -> float:
    """Top probability of γ-normmax([d, 0]), 0 <= d, from u^r + (u + d)^r = 1 with u = −τ, r = γ/(γ − 1)."""
    if d >= 1.0:
        return 1.0
    if math.isinf(gamma):
        return 0.5  # both scores are in the sparsemax support
    r = gamma / (gamma - 1.0)
    u = brentq(lambda u: u**r + (u + d) ** r - 1.0, 0.0, 1.0, xtol=1e-17, rtol=4 * np.finfo(float).eps,
               maxiter=500)
    # p ∝ [θ − τ]^(1/(γ−1)): top (u + d)^(1/(γ−1)), runner-up u^(1/(γ−1))
    log_ratio = (math.log(u) - math.log(u + d)) / (gamma - 1.0)
    return 1.0 / (1.0 + math.exp(log_ratio))


# --- the triangle ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("gamma,z", oracle_cases())
def test_oracle_agrees_with_reference(gamma, z):
    """p-norm cones for finite γ (ORACLE_POWER_ATOL), a linear program for γ = ∞ (ORACLE_ATOL)."""
    atol = ORACLE_ATOL if math.isinf(gamma) else ORACLE_POWER_ATOL
    np.testing.assert_allclose(oracle.normmax(z, gamma), ref.normmax(z, gamma), rtol=0, atol=atol)


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("shape,dim,scale", LAYOUTS)
def test_reference_agrees_with_torch_float64(gamma, shape, dim, scale):
    z = random_scores(shape, scale, seed=len(shape) * 10 + dim)
    out = hfy.normmax(torch.from_numpy(z), gamma, dim)
    np.testing.assert_allclose(out.numpy(), ref.normmax(z, gamma, dim), rtol=0, atol=REFERENCE_ATOL)


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
def test_low_precision_agrees_with_float64(gamma, dtype):
    worst = 0.0
    for scale in (1.0, 3.0, 10.0):
        z = torch.from_numpy(random_scores((8, 32), scale, seed=11)).to(dtype)
        out = hfy.normmax(z, gamma)
        assert out.dtype == dtype
        worst = max(worst, (out.double() - hfy.normmax(z.double(), gamma)).abs().max().item())
    assert worst <= dtype_atol(dtype)


@pytest.mark.parametrize("layer", ["reference", "torch"])
@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("d", [0.0, 1e-6, 1e-3, 0.1, 0.5, 0.9, 1.0, 2.0])
def test_two_point_closed_form(layer, gamma, d):
    top = two_point_normmax(d, gamma)
    theta = np.array([d, 0.0])
    out = ref.normmax(theta, gamma) if layer == "reference" else hfy.normmax(torch.from_numpy(theta), gamma).numpy()
    np.testing.assert_allclose(out, [top, 1.0 - top], rtol=0, atol=PROPERTY_ATOL)


# --- exact algorithms agree ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_normmax2_sort_agrees_with_bisection(seed):
    theta = shift_by_max(random_scores((9,), [0.3, 1.0, 3.0, 10.0][seed % 4], seed))
    by_sort = normmax_threshold(theta, 2.0)
    by_bisection = bisect_decreasing(lambda t: np.sum(np.maximum(theta - t, 0.0) ** 2) - 1.0, -1.0,
                                     -(theta.size ** -0.5))
    assert abs(by_sort - by_bisection) <= PROPERTY_ATOL


@pytest.mark.parametrize("seed", range(6))
def test_infinity_normmax_is_uniform_on_sparsemax_support(seed):
    z = random_scores((4, 9), [0.3, 1.0, 3.0][seed % 3], seed)
    support = ref.sparsemax(z) > 0
    expected = support / support.sum(-1, keepdims=True)
    np.testing.assert_array_equal(ref.normmax(z, math.inf), expected)
    np.testing.assert_allclose(hfy.normmax(torch.from_numpy(z), math.inf).numpy(), expected, rtol=0,
                               atol=PROPERTY_ATOL)


@pytest.mark.parametrize("gamma", FINITE_GAMMAS)
@settings(max_examples=25, deadline=None)
@given(theta=finite_scores())
def test_threshold_conditions(gamma, theta):
    """Σ [θ − τ]_+^(γ/(γ−1)) = 1 and p_i / ‖p‖_γ = [θ_i − τ]_+^(1/(γ−1))."""
    shifted = theta - theta.max()
    tau = normmax_threshold(shifted, gamma)
    gap = np.maximum(shifted - tau, 0.0)
    assert abs(np.sum(gap ** (gamma / (gamma - 1.0))) - 1.0) <= PROPERTY_ATOL
    p = hfy.normmax(torch.from_numpy(theta), gamma).numpy()
    np.testing.assert_allclose(p / np.linalg.norm(p, ord=gamma), gap ** (1.0 / (gamma - 1.0)), rtol=0,
                               atol=PROPERTY_ATOL)


def test_bisect_name_and_module_agree():
    z = torch.from_numpy(random_scores((3, 4, 7), 1.0, 3))
    for gamma in (1.5, 2.0, math.inf):
        expected = hfy.normmax(z, gamma, dim=1)
        torch.testing.assert_close(hfy.normmax_bisect(z, gamma, dim=1), expected, rtol=0, atol=REFERENCE_ATOL)
        torch.testing.assert_close(hfy.Normmax(gamma, dim=1)(z), expected, rtol=0, atol=0)
        torch.testing.assert_close(hfy.NormEntropy(gamma).predict(z, dim=1), expected, rtol=0, atol=0)


# --- derivatives -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [1.5, 2.0, 3.0, 5.0])
def test_gradcheck_and_gradgradcheck(gamma):
    z = torch.from_numpy(random_scores((3, 6), 1.0, seed=int(gamma * 10))).requires_grad_()
    fn = lambda x: hfy.normmax(x, gamma)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (z,), **GRADCHECK)
    assert torch.autograd.gradgradcheck(fn, (z,), **GRADCHECK)


def test_gradcheck_along_dim_0():
    z = torch.from_numpy(random_scores((6, 2, 3), 1.0, seed=2)).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: hfy.normmax(x, 3.0, dim=0), (z,), **GRADCHECK)


def test_infinity_normmax_gradient_is_zero():
    """Uniform on a locally constant support: piecewise constant, zero derivative away from kinks."""
    z = torch.from_numpy(random_scores((3, 6), 1.0, seed=4)).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: hfy.normmax(x, math.inf), (z,), **GRADCHECK)
    (hfy.normmax(z, math.inf) * torch.arange(6.0, dtype=torch.float64)).sum().backward()
    assert (z.grad == 0).all()


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("seed", [0, 1])
def test_reference_jacobian_matches_finite_differences(gamma, seed):
    theta = random_scores((6,), 1.0, seed)
    jac = ref.NormEntropy(gamma).jacobian(theta)
    fd = finite_difference_jacobian(lambda t: ref.normmax(t, gamma), theta)
    np.testing.assert_allclose(jac, fd, rtol=0, atol=FD_ATOL)


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("seed", [0, 1])
def test_reference_jacobian_matches_torch_autograd(gamma, seed):
    theta = random_scores((6,), 1.0, seed)
    auto = torch.autograd.functional.jacobian(lambda x: hfy.normmax(x, gamma), torch.from_numpy(theta))
    np.testing.assert_allclose(auto.numpy(), ref.NormEntropy(gamma).jacobian(theta), rtol=0, atol=REFERENCE_ATOL)


@pytest.mark.parametrize("gamma", FINITE_GAMMAS)
def test_jacobian_is_symmetric_psd_with_ones_in_kernel(gamma):
    jac = ref.NormEntropy(gamma).jacobian(random_scores((7,), 1.0, 3))
    np.testing.assert_allclose(jac, jac.T, rtol=0, atol=PROPERTY_ATOL)
    np.testing.assert_allclose(jac @ np.ones(7), 0.0, rtol=0, atol=PROPERTY_ATOL)
    assert np.linalg.eigvalsh(jac).min() >= -PROPERTY_ATOL


# --- margin 1 for every γ ------------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", GAMMAS)
@settings(max_examples=30, deadline=None)
@given(theta=finite_scores(min_n=2, max_n=8), extra=st.integers(0, 64))
def test_one_hot_when_gap_reaches_one(gamma, theta, extra):
    """Scores on a 1/64 grid keep differences exact; a lead of 1 or more gives e_1, for every γ."""
    assert hfy.NormEntropy(gamma).margin == 1.0 == ref.NormEntropy(gamma).margin
    theta = np.round(theta * 64) / 64
    theta[0] = np.delete(theta, 0).max() + 1.0 + extra / 64
    one_hot = np.eye(theta.size)[0]
    np.testing.assert_array_equal(hfy.normmax(torch.from_numpy(theta), gamma).numpy(), one_hot)
    np.testing.assert_array_equal(ref.normmax(theta, gamma), one_hot)


@pytest.mark.parametrize("gamma", GAMMAS)
@settings(max_examples=30, deadline=None)
@given(theta=finite_scores(min_n=2, max_n=8))
def test_not_one_hot_below_one(gamma, theta):
    theta = np.round(theta * 64) / 64
    theta[0] = np.delete(theta, 0).max() + (1 - 1e-6)
    runner_up = int(np.argmax(np.delete(theta, 0))) + 1
    assert hfy.normmax(torch.from_numpy(theta), gamma).numpy()[runner_up] > 0
    assert ref.normmax(theta, gamma)[runner_up] > 0
