"""α-entmax: the triangle for every α, exact algorithms against each other, gradients in θ and α,
the margin 1/(α − 1), sparsity in α, and the limit α → 1⁺."""

from __future__ import annotations

import math

import mpmath
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
from hfy.reference.entmax import _entmax15_sort_1d, _entmax_bisect_1d
from hfy.testing import (
    FD_ATOL,
    FD_STEP,
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

ALPHAS = [1.0, 1.001, 1.25, 1.5, 1.7, 2.0, 2.5, 3.0, 10.0, 100.0]
SPARSE_ALPHAS = [a for a in ALPHAS if a > 1]
#: α whose α − 1 and margin 1/(α − 1) are exact in binary, so score gaps can equal the margin exactly.
DYADIC_ALPHAS = [1.25, 1.5, 2.0, 3.0]
LOW_PRECISION = [torch.float32, torch.float16, torch.bfloat16]

LAYOUTS = [pytest.param(*layout, id=i) for layout, i in zip(MAP_LAYOUTS_SHORT, layout_ids(MAP_LAYOUTS_SHORT))]


def oracle_atol(alpha: float) -> float:
    return ORACLE_ATOL if alpha in (1.0, 2.0) else ORACLE_POWER_ATOL


def oracle_unfit(name: str, alpha: float) -> bool:
    """Adversarial cases the cvxpy oracle cannot solve reliably at this α."""
    if name == "huge scale":  # |θ| = 1e30 is outside the range of a conic solver
        return True
    if alpha >= 100 and name == "tiny scale":
        return True  # Σ p^100 varies by < 1e-40 around the uniform solution: below the solver's resolution
    return False


def oracle_cases():
    cases = []
    for alpha in ALPHAS:
        for label, z in [
            ("random N=2", random_scores((2,), 1.0, 0)),
            ("random N=5 scale 3", random_scores((5,), 3.0, 1)),
            ("random N=8", random_scores((8,), 1.0, 2)),
            ("random N=6 scale 0.3", random_scores((6,), 0.3, 3)),
        ] + list(adversarial_scores()):
            if not oracle_unfit(label, alpha):
                cases.append(pytest.param(alpha, z, id=f"alpha={alpha}-{label}"))
    return cases


def finite_scores(min_n=1, max_n=10, bound=10.0):
    return st.integers(min_n, max_n).flatmap(
        lambda n: hnp.arrays(np.float64, n, elements=st.floats(-bound, bound, allow_subnormal=False))
    )


def entmax_mp(theta, alpha, dps: int = 40) -> np.ndarray:
    """α-entmax of a finite 1-D ``theta`` in ``dps``-digit arithmetic (bisection on eq-entmax-t)."""
    with mpmath.workdps(dps):
        eps = mpmath.mpf(alpha) - 1
        x = [mpmath.mpf(float(v)) for v in theta]
        top = max(x)
        x = [v - top for v in x]

        def weights(t):
            if eps == 0:
                return [mpmath.exp(v - t) for v in x]
            return [(1 + eps * (v - t)) ** (1 / eps) if 1 + eps * (v - t) > 0 else mpmath.mpf(0) for v in x]

        lo = mpmath.mpf(0)
        hi = mpmath.log(len(x)) if eps == 0 else (1 - mpmath.mpf(len(x)) ** (-eps)) / eps
        for _ in range(4 * dps):
            mid = (lo + hi) / 2
            if sum(weights(mid)) >= 1:
                lo = mid
            else:
                hi = mid
        p = weights(lo)
        total = sum(p)
        return np.array([float(v / total) for v in p])


def two_point_entmax(d: float, alpha: float) -> float:
    """Top probability of α-entmax([d, 0]), d >= 0, from p^ε − (1 − p)^ε = ε d (ε = α − 1)."""
    if alpha == 1.0:
        return 1.0 / (1.0 + math.exp(-d))
    eps = alpha - 1.0
    if eps * d >= 1.0:
        return 1.0

    def g(p):  # written with expm1 so that small ε keeps its digits
        runner_up = math.expm1(eps * math.log1p(-p)) if p < 1.0 else -1.0
        return math.expm1(eps * math.log(p)) - runner_up - eps * d

    if d == 0:
        return 0.5
    return brentq(g, 0.5, 1.0, xtol=1e-17, rtol=4 * np.finfo(float).eps, maxiter=500)


# --- the triangle ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha,z", oracle_cases())
def test_oracle_agrees_with_reference(alpha, z):
    np.testing.assert_allclose(oracle.entmax(z, alpha), ref.entmax(z, alpha), rtol=0, atol=oracle_atol(alpha))


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("shape,dim,scale", LAYOUTS)
def test_reference_agrees_with_torch_float64(alpha, shape, dim, scale):
    z = random_scores(shape, scale, seed=len(shape) * 10 + dim)
    out = hfy.entmax(torch.from_numpy(z), alpha, dim)
    np.testing.assert_allclose(out.numpy(), ref.entmax(z, alpha, dim), rtol=0, atol=REFERENCE_ATOL)


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
def test_low_precision_agrees_with_float64(alpha, dtype):
    worst = 0.0
    for scale in (1.0, 3.0, 10.0):
        z = torch.from_numpy(random_scores((8, 32), scale, seed=11)).to(dtype)
        out = hfy.entmax(z, alpha)
        assert out.dtype == dtype
        worst = max(worst, (out.double() - hfy.entmax(z.double(), alpha)).abs().max().item())
    assert worst <= dtype_atol(dtype)


LAYERS = {
    "reference": lambda theta, alpha: ref.entmax(theta, alpha),
    "torch": lambda theta, alpha: hfy.entmax(torch.from_numpy(theta), alpha).numpy(),
}


@pytest.mark.parametrize("layer", sorted(LAYERS))
@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("d_over_margin", [0.0, 1e-6, 1e-3, 0.1, 0.5, 0.9, 0.999, 1.0, 2.0])
def test_two_point_closed_form(layer, alpha, d_over_margin):
    """On two scores [d, 0] the map solves one scalar equation, which brentq solves independently."""
    d = d_over_margin * (30.0 if alpha == 1.0 else 1.0 / (alpha - 1.0))
    top = two_point_entmax(d, alpha)
    out = LAYERS[layer](np.array([d, 0.0]), alpha)
    np.testing.assert_allclose(out, [top, 1.0 - top], rtol=0, atol=PROPERTY_ATOL)


# --- exact algorithms agree ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_entmax15_sort_agrees_with_bisection(seed):
    theta = random_scores((9,), [0.3, 1.0, 3.0, 10.0][seed % 4], seed)
    np.testing.assert_allclose(_entmax15_sort_1d(theta), _entmax_bisect_1d(theta, 1.5), rtol=0, atol=PROPERTY_ATOL)


def test_entmax15_names_agree():
    z = torch.from_numpy(random_scores((4, 9), 2.0, 1))
    torch.testing.assert_close(hfy.entmax15(z), hfy.entmax(z, 1.5), rtol=0, atol=REFERENCE_ATOL)
    np.testing.assert_allclose(ref.entmax15(z.numpy()), ref.entmax(z.numpy(), 1.5), rtol=0, atol=REFERENCE_ATOL)
    torch.testing.assert_close(hfy.Entmax(1.5, dim=0)(z), hfy.entmax(z, 1.5, dim=0), rtol=0, atol=0)


def test_alpha_one_is_exactly_softmax():
    z = torch.from_numpy(random_scores((5, 9), 3.0, 2))
    assert torch.equal(hfy.entmax(z, 1.0), hfy.softmax(z))
    assert torch.equal(hfy.entmax(z, torch.tensor(1.0, dtype=torch.float64)), hfy.softmax(z))
    np.testing.assert_array_equal(ref.entmax(z.numpy(), 1.0), ref.softmax(z.numpy()))


def test_alpha_two_is_sparsemax():
    z = torch.from_numpy(random_scores((5, 9), 3.0, 3))
    torch.testing.assert_close(hfy.entmax(z, 2.0), hfy.sparsemax(z), rtol=0, atol=REFERENCE_ATOL)


@pytest.mark.parametrize("layer", sorted(LAYERS))
@pytest.mark.parametrize("eps", [1e-9, 1e-6])
def test_alpha_to_one_is_continuous(layer, eps):
    """entmax_{1+ε} = softmax + ε ∂p/∂α|_{α=1} + O(ε²): a first-order expansion around softmax."""
    z = random_scores((3, 7), 1.5, 2)
    first = np.stack([ref.Tsallis(1.0).alpha_derivative(row) for row in z])
    out = np.stack([LAYERS[layer](row, 1.0 + eps) for row in z])
    np.testing.assert_allclose(out, ref.softmax(z) + eps * first, rtol=0, atol=PROPERTY_ATOL)


# --- gradients in θ ------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [1.2, 1.5, 2.0, 3.0])
def test_gradcheck_and_gradgradcheck(alpha):
    z = torch.from_numpy(random_scores((3, 6), 1.0, seed=int(alpha * 10))).requires_grad_()
    fn = lambda x: hfy.entmax(x, alpha)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (z,), **GRADCHECK)
    assert torch.autograd.gradgradcheck(fn, (z,), **GRADCHECK)


@pytest.mark.parametrize("alpha", SPARSE_ALPHAS)
@pytest.mark.parametrize("seed", [0, 1])
def test_reference_jacobian_matches_finite_differences(alpha, seed):
    theta = random_scores((6,), 1.0, seed)
    jac = ref.Tsallis(alpha).jacobian(theta)
    fd = finite_difference_jacobian(lambda t: ref.entmax(t, alpha), theta)
    np.testing.assert_allclose(jac, fd, rtol=0, atol=FD_ATOL)


@pytest.mark.parametrize("alpha", SPARSE_ALPHAS)
@pytest.mark.parametrize("seed", [0, 1])
def test_reference_jacobian_matches_torch_autograd(alpha, seed):
    theta = random_scores((6,), 1.0, seed)
    auto = torch.autograd.functional.jacobian(lambda x: hfy.entmax(x, alpha), torch.from_numpy(theta))
    np.testing.assert_allclose(auto.numpy(), ref.Tsallis(alpha).jacobian(theta), rtol=0, atol=REFERENCE_ATOL)


# --- gradients in α ------------------------------------------------------------------------------------


def test_alpha_gradcheck_per_row_tensor():
    z = torch.from_numpy(random_scores((5, 6), 1.0, seed=3)).requires_grad_()
    alpha = torch.tensor([[1.0001], [1.2], [1.7], [2.5], [4.0]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, a: hfy.entmax(x, a), (z, alpha), **GRADCHECK)


def test_alpha_gradcheck_per_head_tensor_along_dim_1():
    """Scores (B, N, H) with the map along dim 1 and one α per head, shape (1, H)."""
    z = torch.from_numpy(random_scores((2, 5, 3), 1.0, seed=4))
    alpha = torch.tensor([[1.3, 1.6, 2.2]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: hfy.entmax(z, a.unsqueeze(0), dim=1), (alpha,), **GRADCHECK)


ALPHA_DERIVATIVE_POINTS = [1.0 + 1e-6, 1.001, 1.01, 1.3, 1.5, 2.5, 3.5]


@pytest.mark.parametrize("alpha", ALPHA_DERIVATIVE_POINTS)
def test_reference_alpha_derivative_matches_finite_differences(alpha):
    """∂p/∂α vs central differences of the map evaluated in 40-digit arithmetic.

    Near α = 1 the float64 map itself carries rounding of order ulp/(α − 1), so the
    differences are taken on a high-precision evaluation; the step stays above α = 1.
    """
    theta = random_scores((6,), 1.0, 4)
    h = min(FD_STEP, (alpha - 1.0) / 2)
    fd = (entmax_mp(theta, alpha + h) - entmax_mp(theta, alpha - h)) / (2 * h)
    np.testing.assert_allclose(ref.Tsallis(alpha).alpha_derivative(theta), fd, rtol=0, atol=FD_ATOL)


@pytest.mark.parametrize("alpha", [1.3, 1.5, 2.5])
def test_reference_alpha_derivative_matches_float64_differences(alpha):
    """Away from α = 1 the float64 reference map is accurate enough to difference directly."""
    theta = random_scores((6,), 1.0, 5)
    fd = (ref.entmax(theta, alpha + FD_STEP) - ref.entmax(theta, alpha - FD_STEP)) / (2 * FD_STEP)
    np.testing.assert_allclose(ref.Tsallis(alpha).alpha_derivative(theta), fd, rtol=0, atol=FD_ATOL)


def _torch_alpha_jacobian(theta: np.ndarray, alpha: float) -> np.ndarray:
    z = torch.from_numpy(theta)
    a = torch.tensor([alpha], dtype=torch.float64)
    return torch.autograd.functional.jacobian(lambda a: hfy.entmax(z, a), a)[:, 0].numpy()


@pytest.mark.parametrize("alpha", ALPHA_DERIVATIVE_POINTS)
def test_torch_alpha_gradient_matches_finite_differences(alpha):
    theta = random_scores((6,), 1.0, 4)
    h = min(FD_STEP, (alpha - 1.0) / 2)
    fd = (entmax_mp(theta, alpha + h) - entmax_mp(theta, alpha - h)) / (2 * h)
    np.testing.assert_allclose(_torch_alpha_jacobian(theta, alpha), fd, rtol=0, atol=FD_ATOL)


@pytest.mark.parametrize("alpha", ALPHA_DERIVATIVE_POINTS)
def test_torch_alpha_gradient_matches_reference(alpha):
    theta = random_scores((6,), 1.0, 6)
    np.testing.assert_allclose(_torch_alpha_jacobian(theta, alpha), ref.Tsallis(alpha).alpha_derivative(theta),
                               rtol=0, atol=REFERENCE_ATOL)


@pytest.mark.parametrize("seed", range(4))
def test_alpha_gradient_is_stable_near_one(seed):
    """At α = 1.0001 (where the entmax package's gradient flips sign between draws) it is exact on every draw."""
    theta = random_scores((8,), 1.0, 20 + seed)
    alpha, h = 1.0001, FD_STEP
    fd = (entmax_mp(theta, alpha + h) - entmax_mp(theta, alpha - h)) / (2 * h)
    np.testing.assert_allclose(_torch_alpha_jacobian(theta, alpha), fd, rtol=0, atol=FD_ATOL)


# --- tensor α ------------------------------------------------------------------------------------------


def test_per_row_alpha_equals_scalar_alpha_row_by_row():
    z = torch.from_numpy(random_scores((5, 9), 1.5, 7))
    alphas = [1.0, 1.3, 1.5, 2.0, 2.7]
    out = hfy.entmax(z, torch.tensor(alphas, dtype=torch.float64).unsqueeze(-1).requires_grad_())
    for i, a in enumerate(alphas):
        torch.testing.assert_close(out[i], hfy.entmax(z[i], a), rtol=0, atol=REFERENCE_ATOL)


def test_per_head_alpha_broadcasts():
    z = torch.from_numpy(random_scores((2, 3, 4, 6), 1.0, 8))  # (B, H, Q, N)
    alpha = torch.tensor([1.2, 1.5, 2.0], dtype=torch.float64).view(3, 1, 1)
    out = hfy.entmax(z, alpha)
    for h, a in enumerate([1.2, 1.5, 2.0]):
        torch.testing.assert_close(out[:, h], hfy.entmax(z[:, h], a), rtol=0, atol=REFERENCE_ATOL)


def test_learnable_entmax_keeps_alpha_above_one_and_learns():
    layer = hfy.LearnableEntmax(alpha_init=1.5, shape=(3, 1, 1))
    rho_dtype = layer.rho.dtype  # the parameter lives in torch's default dtype
    assert (layer.alpha - 1.5).abs().max().item() <= dtype_atol(rho_dtype)
    z = torch.from_numpy(random_scores((2, 3, 4, 6), 1.0, 9))
    out = layer(z)
    for h in range(3):
        alpha = float(layer.alpha.detach().double()[h])
        torch.testing.assert_close(out[:, h], hfy.entmax(z[:, h], alpha), rtol=0, atol=REFERENCE_ATOL)
    (out * torch.from_numpy(random_scores(out.shape, 1.0, 10))).sum().backward()
    assert layer.rho.grad is not None and torch.isfinite(layer.rho.grad).all() and layer.rho.grad.abs().sum() > 0
    with torch.no_grad():
        layer.rho.fill_(-50.0)  # α = 1 + softplus(−50): just above 1, never below
    assert (layer.alpha >= 1).all()
    assert torch.isfinite(layer(z)).all()


# --- margin, sparsity, threshold ------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", DYADIC_ALPHAS)
@settings(max_examples=30, deadline=None)
@given(theta=finite_scores(min_n=2, max_n=8), extra=st.integers(0, 64))
def test_one_hot_when_gap_reaches_margin(alpha, theta, extra):
    """Scores on a 1/64 grid keep differences exact; a lead of m = 1/(α − 1) or more gives e_1."""
    theta = np.round(theta * 64) / 64
    margin = hfy.Tsallis(alpha).margin
    assert margin == 1.0 / (alpha - 1.0) == ref.Tsallis(alpha).margin
    theta[0] = np.delete(theta, 0).max() + margin + extra / 64
    one_hot = np.eye(theta.size)[0]
    np.testing.assert_array_equal(hfy.entmax(torch.from_numpy(theta), alpha).numpy(), one_hot)
    np.testing.assert_array_equal(ref.entmax(theta, alpha), one_hot)


#: at α = 1.001 a lead of m (1 − 1e-6) leaves the runner-up (1e-6)^1000 mass: not representable.
@pytest.mark.parametrize("alpha", [a for a in SPARSE_ALPHAS if a != 1.001])
@settings(max_examples=30, deadline=None)
@given(theta=finite_scores(min_n=2, max_n=8))
def test_not_one_hot_below_margin(alpha, theta):
    margin = 1.0 / (alpha - 1.0)
    theta = np.round(theta * 64) / 64
    theta[0] = np.delete(theta, 0).max() + margin * (1 - 1e-6)
    runner_up = int(np.argmax(np.delete(theta, 0))) + 1
    assert hfy.entmax(torch.from_numpy(theta), alpha).numpy()[runner_up] > 0
    assert ref.entmax(theta, alpha)[runner_up] > 0


@settings(max_examples=40, deadline=None)
@given(finite_scores(min_n=2, max_n=12))
def test_support_shrinks_as_alpha_grows(theta):
    z = torch.from_numpy(theta)
    sizes = [int((hfy.entmax(z, a) > 0).sum()) for a in ALPHAS]
    assert sizes[0] == theta.size  # softmax: full support
    assert all(b <= a for a, b in zip(sizes, sizes[1:])), sizes
    sizes_ref = [int((ref.entmax(theta, a) > 0).sum()) for a in ALPHAS]
    assert all(b <= a for a, b in zip(sizes_ref, sizes_ref[1:])), sizes_ref


@pytest.mark.parametrize("alpha", SPARSE_ALPHAS)
@settings(max_examples=25, deadline=None)
@given(theta=finite_scores(min_n=1, max_n=10))
def test_threshold_conditions(alpha, theta):
    """KKT: (α − 1)θ_i − p_i^(α−1) = τ on the support, and (α − 1)θ_j <= τ off it."""
    p = hfy.entmax(torch.from_numpy(theta), alpha).numpy()
    z = (alpha - 1.0) * (theta - theta.max())
    on = p > 0
    tau = z[on] - p[on] ** (alpha - 1.0)
    assert tau.max() - tau.min() <= PROPERTY_ATOL * (1 + np.abs(z).max())
    assert np.all(z[~on] <= tau.max() + PROPERTY_ATOL * (1 + np.abs(z).max()))


# --- small batches: sparsemax and 1.5-entmax sorted, or through the Newton iteration (conftest) -------------


@pytest.mark.usefixtures("small_batch_path")
@pytest.mark.parametrize("alpha", [1.5, 2.0])
@pytest.mark.parametrize("dtype", [torch.float64, *LOW_PRECISION], ids=str)
def test_small_batch_paths_agree_with_reference(alpha, dtype):
    """Random layouts, adversarial rows (ties, masks, huge and tiny scales, offsets) and an all-masked row,
    on both paths; leads of exactly the margin give exact zeros."""
    for shape, dim, scale in [((7, 40), -1, 1.0), ((5, 6, 30), 1, 3.0), ((64, 64), -1, 0.3)]:
        z = random_scores(shape, scale, seed=len(shape))
        zt = torch.from_numpy(z).to(dtype)
        out = hfy.entmax(zt, alpha, dim=dim)
        assert out.dtype == dtype
        expected = ref.entmax(zt.double().numpy(), alpha, dim)
        assert np.abs(out.double().numpy() - expected).max() <= dtype_atol(dtype)
    for name, z in adversarial_scores():
        zt = torch.from_numpy(z).to(dtype)
        if not bool(torch.isfinite(zt[torch.isfinite(torch.from_numpy(z))]).all()):
            continue  # not representable in this dtype
        out = hfy.entmax(zt, alpha)
        assert not torch.isnan(out).any(), name
        assert np.abs(out.double().numpy() - ref.entmax(zt.double().numpy(), alpha)).max() <= dtype_atol(dtype), name
    batch = torch.from_numpy(random_scores((5, 9), 2.0, seed=3)).to(dtype)
    batch[1] = -math.inf
    batch[3] = torch.tensor([1.0 / (alpha - 1.0), 0, 0, 0, 0, 0, 0, 0, -math.inf], dtype=dtype)  # lead = margin
    out = hfy.entmax(batch, alpha)
    assert (out[1] == 0).all()
    np.testing.assert_array_equal(out[3].double().numpy(), np.eye(9)[0])
    keep = [0, 2, 3, 4]
    assert np.abs(out[keep].double().numpy() - ref.entmax(batch[keep].double().numpy(), alpha)).max() <= dtype_atol(dtype)


@pytest.mark.usefixtures("small_batch_path")
@pytest.mark.parametrize("alpha", [1.5, 2.0])
def test_small_batch_paths_gradcheck(alpha):
    z = torch.from_numpy(random_scores((3, 7), 1.0, seed=4)).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: hfy.entmax(t, alpha), (z,), **GRADCHECK)
