"""Constrained sparsemax: projection onto {p in the simplex, p <= u}; triangle, gradients in z and u, feasibility."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import hfy
import hfy.oracle as oracle
import hfy.reference as ref
from hfy.reference.constrained_sparsemax import constrained_sparsemax_vjp
from hfy.testing import (
    FD_ATOL,
    GRADCHECK,
    ORACLE_ATOL,
    PROPERTY_ATOL,
    REFERENCE_ATOL,
    dtype_atol,
    finite_difference_jacobian,
    random_scores,
)

LOW_PRECISION = [torch.float32, torch.float16, torch.bfloat16]
NINF = -math.inf

cuda = pytest.mark.cuda
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def random_caps(shape, seed, low=0.05, high=0.6):
    """Caps in [low, high] rescaled, where needed, so that every row along the last axis sums to at least 1."""
    u = np.random.default_rng(seed).uniform(low, high, size=shape)
    total = u.sum(-1, keepdims=True)
    return np.where(total < 1.0, u / total * 1.25, u)


def finite_scores(min_n=1, max_n=10, bound=10.0):
    return st.integers(min_n, max_n).flatmap(
        lambda n: hnp.arrays(np.float64, n, elements=st.floats(-bound, bound, allow_subnormal=False))
    )


# --- the triangle ----------------------------------------------------------------------------------------


def oracle_cases():
    cases = []
    for seed, (n, scale) in enumerate([(2, 1.0), (4, 3.0), (6, 1.0), (8, 0.3), (8, 2.0), (5, 10.0)]):
        cases.append((f"random N={n} scale {scale}", random_scores((n,), scale, seed), random_caps((n,), seed)))
    cases.append(("caps sum to exactly 1", np.array([0.4, -0.3, 2.0, 0.1]), np.array([0.25, 0.25, 0.25, 0.25])))
    cases.append(("one cap at 0", np.array([2.0, 0.1, 0.5, -0.2]), np.array([0.0, 0.5, 0.5, 0.5])))
    cases.append(("u = 1 (sparsemax)", np.array([1.3, 1.0, 0.2, -0.4]), np.ones(4)))
    cases.append(("masked", np.array([1.0, NINF, 0.5, 0.2, 0.9]), np.array([0.3, 5.0, 0.3, 0.3, 0.3])))
    cases.append(("ties", np.array([2.0, 2.0, 2.0, 1.0]), np.array([0.3, 0.3, 0.5, 0.5])))
    return cases


@pytest.mark.parametrize("name,z,u", oracle_cases(), ids=[c[0] for c in oracle_cases()])
def test_oracle_agrees_with_reference(name, z, u):
    np.testing.assert_allclose(oracle.constrained_sparsemax(z, u), ref.constrained_sparsemax(z, u), rtol=0,
                               atol=ORACLE_ATOL)


@pytest.mark.parametrize("shape,dim,scale", [
    ((64,), -1, 1.0),
    ((64,), 0, 10.0),
    ((5, 64), -1, 0.1),
    ((5, 64), 0, 3.0),
    ((3, 4, 17), 0, 1.0),
    ((3, 4, 17), 1, 10.0),
    ((3, 4, 17), -1, 0.3),
    ((2, 3, 4, 5), 2, 1.0),
])
def test_reference_agrees_with_torch_float64(shape, dim, scale):
    z = random_scores(shape, scale, seed=len(shape) * 10 + dim)
    u = np.moveaxis(random_caps(np.moveaxis(z, dim, -1).shape, seed=dim + 7, high=3.0 / shape[dim] + 0.05), -1, dim)
    out = hfy.constrained_sparsemax(torch.from_numpy(z), torch.from_numpy(u), dim)
    np.testing.assert_allclose(out.numpy(), ref.constrained_sparsemax(z, u, dim), rtol=0, atol=REFERENCE_ATOL)


def test_shared_caps_broadcast_over_rows_and_masks():
    z = random_scores((30, 12), 2.0, seed=1)
    z[::4, 3] = NINF
    u = random_caps((12,), seed=2, high=0.3)
    u[3] = 0.0  # the masked column carries no cap, so every row stays feasible
    out = hfy.constrained_sparsemax(torch.from_numpy(z), torch.from_numpy(u)).numpy()
    np.testing.assert_allclose(out, ref.constrained_sparsemax(z, u), rtol=0, atol=REFERENCE_ATOL)
    assert (out[np.isinf(z)] == 0).all()


@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
@pytest.mark.parametrize("scale", [1.0, 10.0])
def test_low_precision_agrees_with_float64(dtype, scale):
    z = torch.from_numpy(random_scores((8, 40), scale, seed=11)).to(dtype)
    u = torch.from_numpy(random_caps((8, 40), seed=12, high=0.1)).to(dtype)
    out = hfy.constrained_sparsemax(z, u)
    assert out.dtype == dtype and not torch.isnan(out).any()
    assert (out.double() - hfy.constrained_sparsemax(z.double(), u.double())).abs().max().item() <= dtype_atol(dtype)


# --- properties ----------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(finite_scores(min_n=1, max_n=10), st.integers(0, 2**31 - 1))
def test_in_the_capped_simplex(theta, seed):
    u = random_caps((theta.size,), seed, low=0.0, high=1.0)
    p = hfy.constrained_sparsemax(torch.from_numpy(theta), torch.from_numpy(u)).numpy()
    assert (p >= 0).all() and (p <= u).all()
    assert abs(p.sum() - 1.0) <= PROPERTY_ATOL
    np.testing.assert_allclose(p, ref.constrained_sparsemax(theta, u), rtol=0, atol=REFERENCE_ATOL)


@settings(max_examples=40, deadline=None)
@given(finite_scores(min_n=1, max_n=10))
def test_unit_caps_give_sparsemax(theta):
    z = torch.from_numpy(theta)
    np.testing.assert_allclose(hfy.constrained_sparsemax(z, torch.ones_like(z)).numpy(), hfy.sparsemax(z).numpy(),
                               rtol=0, atol=PROPERTY_ATOL)
    np.testing.assert_allclose(ref.constrained_sparsemax(theta, np.ones_like(theta)), ref.sparsemax(theta), rtol=0,
                               atol=PROPERTY_ATOL)


@settings(max_examples=30, deadline=None)
@given(finite_scores(min_n=2, max_n=8), st.integers(0, 2**31 - 1))
def test_variational_inequality(theta, seed):
    """⟨z − p, d⟩ <= 0 for every feasible move d of mass between two entries: p is the closest point."""
    u = random_caps((theta.size,), seed, low=0.1, high=1.0)
    p = ref.constrained_sparsemax(theta, u)
    for i in range(theta.size):
        for j in range(theta.size):
            if i != j:
                t = min(u[i] - p[i], p[j])  # move mass t from j to i, staying feasible
                d = np.zeros(theta.size)
                d[i], d[j] = t, -t
                assert np.dot(theta - p, d) <= PROPERTY_ATOL * (1 + np.abs(theta).max())


def test_clip_form_and_threshold():
    """p = clip(z − τ, 0, u) for a single τ."""
    z, u = random_scores((9,), 2.0, seed=3), random_caps((9,), seed=3)
    p = ref.constrained_sparsemax(z, u)
    free = (p > 0) & (p < u)
    assert free.any()
    tau = np.mean(z[free] - p[free])
    np.testing.assert_allclose(p, np.clip(z - tau, 0, u), rtol=0, atol=PROPERTY_ATOL)


@pytest.mark.parametrize("gap,one_hot", [(0.999, False), (1.0, True), (1.001, True)])
def test_margin_with_unit_cap(gap, one_hot):
    """With u_i = 1, p = e_i iff z_i − z_j >= 1 for every j with u_j > 0; caps below 1 on the others do not matter."""
    z = np.array([gap, 0.0, -0.25, 0.0])
    u = np.array([1.0, 0.5, 0.5, 0.0])  # the last entry cannot take mass whatever its score
    z[3] = 5.0
    fast = hfy.constrained_sparsemax(torch.from_numpy(z), torch.from_numpy(u)).numpy()
    for p in (ref.constrained_sparsemax(z, u), fast):
        assert bool((p == np.array([1.0, 0.0, 0.0, 0.0])).all()) == one_hot


def test_cap_below_one_spills_mass():
    z, u = np.array([5.0, 0.0, -1.0]), np.array([0.6, 1.0, 1.0])
    p = hfy.constrained_sparsemax(torch.from_numpy(z), torch.from_numpy(u)).numpy()
    np.testing.assert_allclose(p, [0.6, 0.4, 0.0], rtol=0, atol=PROPERTY_ATOL)


# --- derivatives ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradcheck_in_z_and_upper(seed):
    z = torch.from_numpy(random_scores((4, 9), [0.3, 1.0, 3.0][seed], seed)).requires_grad_()
    u = torch.from_numpy(random_caps((4, 9), seed, high=0.35)).requires_grad_()
    assert torch.autograd.gradcheck(hfy.constrained_sparsemax, (z, u), **GRADCHECK)


def test_gradcheck_shared_caps_and_dim_0():
    z = torch.from_numpy(random_scores((7, 3), 1.0, seed=4)).requires_grad_()
    u = torch.from_numpy(random_caps((7,), seed=4, high=0.4)).reshape(7, 1).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: hfy.constrained_sparsemax(a, b.expand(7, 3), dim=0), (z, u),
                                    **GRADCHECK)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_reference_vjp_matches_finite_differences(seed):
    z, u = random_scores((8,), 1.5, seed), random_caps((8,), seed, high=0.4)
    g = random_scores((8,), 1.0, seed + 100)
    gz, gu = constrained_sparsemax_vjp(z, u, g)
    jz = finite_difference_jacobian(lambda t: ref.constrained_sparsemax(t, u), z)
    ju = finite_difference_jacobian(lambda t: ref.constrained_sparsemax(z, t), u)
    np.testing.assert_allclose(gz, g @ jz, rtol=0, atol=FD_ATOL)
    np.testing.assert_allclose(gu, g @ ju, rtol=0, atol=FD_ATOL)
    zt, ut = torch.from_numpy(z).requires_grad_(), torch.from_numpy(u).requires_grad_()
    (hfy.constrained_sparsemax(zt, ut) * torch.from_numpy(g)).sum().backward()
    np.testing.assert_allclose(zt.grad.numpy(), gz, rtol=0, atol=REFERENCE_ATOL)
    np.testing.assert_allclose(ut.grad.numpy(), gu, rtol=0, atol=REFERENCE_ATOL)


def test_masked_entries_get_zero_gradient():
    z = torch.tensor([1.0, NINF, 0.5, 0.2, 0.9], dtype=torch.float64, requires_grad=True)
    u = torch.tensor([0.3, 2.0, 0.3, 0.3, 0.3], dtype=torch.float64, requires_grad=True)
    (hfy.constrained_sparsemax(z, u) * torch.arange(5.0, dtype=torch.float64)).sum().backward()
    assert not torch.isnan(z.grad).any() and not torch.isnan(u.grad).any()
    assert z.grad[1] == 0 and u.grad[1] == 0


def test_regulariser_danskin():
    theta = torch.from_numpy(random_scores((3, 8), 2.0, seed=9)).requires_grad_()
    reg = hfy.ConstrainedSparsemax(torch.from_numpy(random_caps((8,), seed=9, high=0.3)))
    reg.conjugate(theta).sum().backward()
    np.testing.assert_allclose(theta.grad.numpy(), reg.predict(theta.detach()).numpy(), rtol=0, atol=PROPERTY_ATOL)
    np.testing.assert_allclose(reg.conjugate(theta.detach()).numpy(),
                               ref.ConstrainedSparsemax(reg.upper.numpy()).conjugate(theta.detach().numpy()),
                               rtol=0, atol=REFERENCE_ATOL)


# --- infeasibility and bad input --------------------------------------------------------------------------


def test_infeasible_caps_raise_naming_upper():
    z, u = torch.tensor([[0.1, 0.2, 0.3], [0.0, 0.0, 0.0]]), torch.tensor([[0.5, 0.5, 0.5], [0.3, 0.3, 0.3]])
    with pytest.raises(ValueError, match="`upper`"):
        hfy.constrained_sparsemax(z, u)
    with pytest.raises(ValueError, match="`upper`"):
        ref.constrained_sparsemax(z.numpy(), u.numpy())


def test_caps_of_masked_entries_do_not_count():
    z = torch.tensor([0.5, NINF, 0.1])
    u = torch.tensor([0.4, 0.9, 0.4])  # 1.7 in total, but only 0.8 on unmasked entries
    with pytest.raises(ValueError, match="`upper`"):
        hfy.constrained_sparsemax(z, u)
    with pytest.raises(ValueError, match="`upper`"):
        ref.constrained_sparsemax(z.numpy(), u.numpy())


def test_all_masked_raises_naming_upper():
    with pytest.raises(ValueError, match="`upper`"):
        hfy.constrained_sparsemax(torch.full((4,), NINF), torch.ones(4))


@pytest.mark.parametrize("bad", [-0.1, math.inf, math.nan])
def test_invalid_caps_raise(bad):
    with pytest.raises(ValueError, match="`upper`"):
        hfy.constrained_sparsemax(torch.zeros(3), torch.tensor([1.0, bad, 1.0]))


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nan_and_plus_inf_scores_raise(bad):
    with pytest.raises(ValueError, match="`z`"):
        hfy.constrained_sparsemax(torch.tensor([0.1, bad, 0.3]), torch.ones(3))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
def test_huge_scores_where_representable(dtype):
    """±1e30 is representable in these dtypes; the exact answer is too."""
    z = torch.tensor([1e30, -1e30, 0.0, 5.0], dtype=dtype)
    u = torch.full((4,), 0.5, dtype=dtype)
    expected = ref.constrained_sparsemax(z.double().numpy(), u.double().numpy())
    np.testing.assert_allclose(hfy.constrained_sparsemax(z, u).double().numpy(), expected, rtol=0,
                               atol=dtype_atol(dtype))


# --- CUDA ------------------------------------------------------------------------------------------------


@cuda
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_cuda_matches_cpu(dtype):
    z = torch.from_numpy(random_scores((64, 50), 3.0, seed=1)).to(dtype)
    u = torch.from_numpy(random_caps((64, 50), seed=1, high=0.1)).to(dtype)
    zc, uc = z.cuda().requires_grad_(), u.cuda().requires_grad_()
    out = hfy.constrained_sparsemax(zc, uc)
    assert out.device.type == "cuda"
    assert (out.cpu() - hfy.constrained_sparsemax(z, u)).abs().max().item() <= dtype_atol(dtype)
    (out * torch.linspace(-1, 1, 50, device="cuda", dtype=dtype)).sum().backward()
    assert not torch.isnan(zc.grad).any() and not torch.isnan(uc.grad).any()


# --- the double-constrained version: lower bounds -------------------------------------------------------------


def random_floors(upper, seed, scale=0.6):
    """Floors 0 <= l <= u whose rows sum to at most ``scale`` (< 1, so the problem is feasible)."""
    l = np.random.default_rng(seed).uniform(0.0, 1.0, size=upper.shape) * upper
    total = l.sum(-1, keepdims=True)
    return np.where(total > scale, l * scale / total, l)


@pytest.mark.parametrize("seed", range(6))
def test_lower_bounds_in_three_layers(seed):
    """clip(z − τ, l, u) with Σ = 1 (spec §9): the oracle's QP, the reference and the torch path agree, the
    output lies within its bounds and sums to 1; with masks and along a middle dim too."""
    z = random_scores((4, 7), 2.0, seed)
    u = random_caps((4, 7), seed + 10)
    l = random_floors(u, seed + 20)
    want = ref.constrained_sparsemax(z, u, lower=l)
    np.testing.assert_allclose(oracle.constrained_sparsemax(z, u, lower=l), want, rtol=0, atol=ORACLE_ATOL)
    got = hfy.constrained_sparsemax(torch.from_numpy(z), torch.from_numpy(u), lower=torch.from_numpy(l)).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=REFERENCE_ATOL)
    assert np.all(want >= l - PROPERTY_ATOL) and np.all(want <= u + PROPERTY_ATOL)
    np.testing.assert_allclose(want.sum(-1), 1.0, rtol=0, atol=PROPERTY_ATOL)
    zm = z.copy()
    zm[:, 0] = NINF  # masked: output 0 whatever its floor
    um = np.where(np.isfinite(zm), u, u)
    um[:, 1:] = random_caps((4, 6), seed + 30)
    lm = random_floors(um, seed + 40)
    masked = ref.constrained_sparsemax(zm, um, lower=lm)
    assert np.all(masked[:, 0] == 0.0)
    got = hfy.constrained_sparsemax(torch.from_numpy(zm), torch.from_numpy(um), lower=torch.from_numpy(lm))
    np.testing.assert_allclose(got.numpy(), masked, rtol=0, atol=REFERENCE_ATOL)
    mid = hfy.constrained_sparsemax(torch.from_numpy(z.T.copy()), torch.from_numpy(u.T.copy()), dim=0,
                                    lower=torch.from_numpy(l.T.copy()))
    np.testing.assert_allclose(mid.numpy().T, want, rtol=0, atol=REFERENCE_ATOL)


def test_lower_bound_gradients():
    """∂L/∂l = 1_{R0} ⊙ (g − ḡ) (spec §9): the reference VJP against central differences, and the torch
    backward against the reference and gradcheck in z, u and l together."""
    rng = np.random.default_rng(5)
    for seed in range(8):
        z = random_scores(6, 2.0, seed + 50)
        u = random_caps((6,), seed + 60)
        l = random_floors(u[None], seed + 70)[0]
        g = rng.normal(size=6)
        gz, gu, gl = constrained_sparsemax_vjp(z, u, g, lower=l)
        fd = finite_difference_jacobian(lambda t: ref.constrained_sparsemax(z, u, lower=t), l)
        np.testing.assert_allclose(gl, fd.T @ g, rtol=0, atol=FD_ATOL)
        zt, ut, lt = (torch.from_numpy(a).requires_grad_() for a in (z, u, l))
        out = hfy.constrained_sparsemax(zt, ut, lower=lt)
        tz, tu, tl = torch.autograd.grad(out, (zt, ut, lt), torch.from_numpy(g))
        for fast, slow in ((tz, gz), (tu, gu), (tl, gl)):
            np.testing.assert_allclose(fast.numpy(), slow, rtol=0, atol=REFERENCE_ATOL)
    z = torch.from_numpy(random_scores((3, 6), 2.0, 80)).requires_grad_()
    u = torch.from_numpy(random_caps((3, 6), 81)).requires_grad_()
    l = torch.from_numpy(random_floors(u.detach().numpy(), 82)).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b, c: hfy.constrained_sparsemax(a, b, lower=c), (z, u, l), **GRADCHECK)


def test_lower_bound_errors_and_edges():
    z = torch.randn(2, 5, dtype=torch.float64)
    u = torch.full((5,), 0.5, dtype=torch.float64)
    with pytest.raises(ValueError, match="`lower`"):
        hfy.constrained_sparsemax(z, u, lower=torch.full((5,), 0.6, dtype=torch.float64))  # above the caps
    with pytest.raises(ValueError, match="`lower`"):
        hfy.constrained_sparsemax(z, u, lower=torch.full((5,), 0.3, dtype=torch.float64))  # Σ l > 1
    with pytest.raises(ValueError, match="`lower`"):
        hfy.constrained_sparsemax(z, u, lower=torch.full((5,), -0.1, dtype=torch.float64))
    with pytest.raises(ValueError, match="`lower`"):
        ref.constrained_sparsemax(z.numpy(), u.numpy(), lower=np.full(5, 0.3))
    floors = torch.full((5,), 0.2, dtype=torch.float64)  # Σ l = 1: the only point is l
    np.testing.assert_allclose(hfy.constrained_sparsemax(z, u, lower=floors).numpy(), 0.2, rtol=0,
                               atol=PROPERTY_ATOL)
    reg = hfy.ConstrainedSparsemax(u, torch.full((5,), 0.1, dtype=torch.float64))
    np.testing.assert_allclose(reg.reference_point(5, z).numpy(), 0.2, rtol=0, atol=PROPERTY_ATOL)
    assert (reg.predict(z) >= 0.1 - PROPERTY_ATOL).all()


def _bisection(z, u, total=1.0, steps=200):
    """τ of Σ clip(z − τ, 0, u) = total by bisection on [min(z − u), max z] (spec §9), then the projection."""
    lo, hi = float(np.min(z - u)), float(np.max(z))
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        if np.clip(z - mid, 0.0, u).sum() >= total:
            lo = mid
        else:
            hi = mid
    return np.clip(z - 0.5 * (lo + hi), 0.0, u)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 12), st.integers(0, 10**6))
def test_breakpoints_bisection_permutation_and_shift(n, seed):
    """The breakpoint search agrees with bisection; the map is permutation-equivariant and shift-invariant,
    in the reference and the torch path."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n) * rng.choice([0.3, 1.0, 5.0])
    u = random_caps((n,), seed)
    want = ref.constrained_sparsemax(z, u)
    np.testing.assert_allclose(_bisection(z, u), want, rtol=0, atol=1e-12)
    perm = rng.permutation(n)
    np.testing.assert_allclose(ref.constrained_sparsemax(z[perm], u[perm]), want[perm], rtol=0, atol=PROPERTY_ATOL)
    shift = float(rng.choice([-7.5, 3.25, 1e3]))
    np.testing.assert_allclose(ref.constrained_sparsemax(z + shift, u), want, rtol=0, atol=1e-12)
    fast = hfy.constrained_sparsemax(torch.from_numpy(z[perm] + shift), torch.from_numpy(u[perm])).numpy()
    np.testing.assert_allclose(fast, want[perm], rtol=0, atol=1e-12)
