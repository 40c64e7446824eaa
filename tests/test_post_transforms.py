"""Post-transformations Ψ: the triangle, Danskin, idempotence, the layer-norm radius, guards and the Ψ-loss.

Each Ψ is checked as the definition says it is (book/models/post_transforms.md):
ŷ_Ψ(z) = argmax_q ⟨z, q⟩ − Ψ(q) against the cvxpy program, ŷ_Ψ = ∇Ψ* by autograd,
Ψ = +inf outside its set, and L_Ψ(z; q) >= 0 with equality at q = ŷ_Ψ(z).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import hfy
import hfy.oracle as oracle
import hfy.reference as ref
from hfy.testing import (
    ORACLE_ATOL,
    ORACLE_POWER_ATOL,
    PROPERTY_ATOL,
    REFERENCE_ATOL,
    dtype_atol,
    random_scores,
)

#: "A few ulps": idempotence of the normalisations holds up to this many units in the last place
#: of the largest entry (observed: at most 2 in float32 and float64).
FEW_ULPS = 4

#: (id, torch Ψ, reference Ψ, oracle Ψ or None, tolerance of the oracle's maximiser).
#: The ball, the centred ball and the cube are second-order-cone / linear programs (ORACLE_ATOL);
#: the tanh entropy is an exponential-cone program whose maximiser is looser (ORACLE_POWER_ATOL).
PSIS = [
    ("identity", hfy.Identity(), ref.Identity(), oracle.Identity(), ORACLE_ATOL),
    ("l2", hfy.L2Normalize(), ref.L2Normalize(), oracle.L2Normalize(), ORACLE_ATOL),
    ("l2-radius2.5", hfy.L2Normalize(radius=2.5), ref.L2Normalize(radius=2.5), oracle.L2Normalize(2.5), ORACLE_ATOL),
    ("layernorm", hfy.LayerNorm(), ref.LayerNorm(), oracle.LayerNorm(), ORACLE_ATOL),
    ("layernorm-unbiased", hfy.LayerNorm(unbiased=True), ref.LayerNorm(unbiased=True), None, None),
    ("sign", hfy.Sign(), ref.Sign(), oracle.Sign(), ORACLE_ATOL),
    ("tanh", hfy.Tanh(), ref.Tanh(), oracle.Tanh(), ORACLE_POWER_ATOL),
    ("tanh-beta3", hfy.Tanh(3.0), ref.Tanh(3.0), oracle.Tanh(3.0), ORACLE_POWER_ATOL),
]
IDS = [p[0] for p in PSIS]
ORACLE_PSIS = [p for p in PSIS if p[3] is not None]

#: the idempotent maps.
IDEMPOTENT = ["identity", "l2", "l2-radius2.5", "layernorm", "layernorm-unbiased", "sign"]


def by_id(name):
    return next(p for p in PSIS if p[0] == name)


def assert_few_ulps(a, b, dtype):
    """max |a − b| <= FEW_ULPS ulps of max |b| (in ``dtype``)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(float(np.max(np.abs(b))), np.finfo(np.float64).tiny)
    eps = float(torch.finfo(dtype).eps)
    assert float(np.max(np.abs(a - b))) <= FEW_ULPS * eps * scale


def inside_point(name, d, seed):
    """A random point of dom Ψ (strictly inside where the set has an interior)."""
    rng = np.random.default_rng(seed)
    if name == "identity":
        return rng.standard_normal(d) * 2
    if name.startswith("l2"):
        r = 2.5 if name.endswith("2.5") else 1.0
        v = rng.standard_normal(d)
        return r * rng.uniform(0, 1) * v / np.linalg.norm(v)
    if name.startswith("layernorm"):
        v = rng.standard_normal(d)
        v -= v.mean()
        radius = math.sqrt(d - 1 if "unbiased" in name else d)
        return radius * rng.uniform(0, 1) * v / np.linalg.norm(v)
    return rng.uniform(-1, 1, d)  # sign, tanh: the open cube


# --- the triangle ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,fast,reference,orc,atol", ORACLE_PSIS, ids=[p[0] for p in ORACLE_PSIS])
def test_oracle_agrees_with_reference(name, fast, reference, orc, atol):
    z = np.concatenate([random_scores((3, 6), 1.0, seed=1), random_scores((1, 6), 0.2, seed=2)])
    np.testing.assert_allclose(orc.predict(z), reference.predict(z), rtol=0, atol=atol)


@pytest.mark.parametrize("name,fast,reference,orc,atol", PSIS, ids=IDS)
@pytest.mark.parametrize("shape", [(7,), (3, 7), (2, 3, 7)], ids=str)
def test_reference_agrees_with_torch_float64(name, fast, reference, orc, atol, shape):
    z = random_scores(shape, 2.0, seed=len(shape))
    q = np.stack([inside_point(name, 7, s) for s in range(int(np.prod(shape[:-1])))]).reshape(shape)
    zt, qt = torch.from_numpy(z), torch.from_numpy(q)
    np.testing.assert_allclose(fast.predict(zt).numpy(), reference.predict(z), rtol=0, atol=REFERENCE_ATOL)
    np.testing.assert_allclose(fast.conjugate(zt).numpy(), reference.conjugate(z), rtol=0, atol=REFERENCE_ATOL)
    np.testing.assert_allclose(fast.psi(qt).numpy(), reference.psi(q), rtol=0, atol=REFERENCE_ATOL)
    np.testing.assert_allclose(fast.loss(zt, qt).numpy(), reference.loss(z, q), rtol=0, atol=REFERENCE_ATOL)


@pytest.mark.parametrize("name,fast,reference,orc,atol", PSIS, ids=IDS)
def test_float32_agrees_with_float64(name, fast, reference, orc, atol):
    z = torch.from_numpy(random_scores((4, 9), 1.0, seed=5))
    out64, out32 = fast.predict(z), fast.predict(z.float())
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32.double().numpy(), out64.numpy(), rtol=0, atol=dtype_atol(torch.float32))


# --- Danskin: ŷ_Ψ = ∇Ψ* -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name,fast,reference,orc,atol", PSIS, ids=IDS)
def test_autograd_of_conjugate_is_predict(name, fast, reference, orc, atol):
    z = torch.from_numpy(random_scores((5, 6), 1.5, seed=7)).requires_grad_()
    (grad,) = torch.autograd.grad(fast.conjugate(z).sum(), z)
    np.testing.assert_allclose(grad.numpy(), fast.predict(z.detach()).numpy(), rtol=0, atol=REFERENCE_ATOL)


@pytest.mark.parametrize("name,fast,reference,orc,atol", PSIS, ids=IDS)
def test_conjugate_is_attained_by_predict(name, fast, reference, orc, atol):
    """Ψ*(z) = ⟨z, ŷ⟩ − Ψ(ŷ): the Fenchel-Young loss vanishes at q = ŷ_Ψ(z)."""
    z = random_scores((6, 5), 2.0, seed=8)
    for layer, zz in [(reference, z), (fast, torch.from_numpy(z))]:
        y = layer.predict(zz)
        loss = np.asarray(layer.loss(zz, y))
        conj = np.asarray(layer.conjugate(zz))
        assert np.all(np.isfinite(loss))
        assert np.all(np.abs(loss) <= PROPERTY_ATOL * (1 + np.abs(conj)))


@pytest.mark.parametrize("name,fast,reference,orc,atol", PSIS, ids=IDS)
def test_loss_is_nonnegative_on_the_domain(name, fast, reference, orc, atol):
    z = random_scores((200, 5), 2.0, seed=9)
    q = np.stack([inside_point(name, 5, 100 + s) for s in range(200)])
    for layer, zz, qq in [(reference, z, q), (fast, torch.from_numpy(z), torch.from_numpy(q))]:
        loss = np.asarray(layer.loss(zz, qq))
        conj = np.asarray(layer.conjugate(zz))
        assert np.all(np.isfinite(loss))
        assert np.all(loss >= -PROPERTY_ATOL * (1 + np.abs(conj)))
        # strictly positive away from the maximiser (random q is not ŷ_Ψ(z))
        assert np.median(loss) > PROPERTY_ATOL


# --- idempotence and the image ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", IDEMPOTENT)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_idempotent_maps(name, dtype):
    _, fast, reference, _, _ = by_id(name)
    assert fast.idempotent and reference.idempotent
    scales = torch.logspace(-3, 3, 300, dtype=torch.float64)[:, None]
    z = torch.from_numpy(random_scores((300, 8), 1.0, seed=11)) * scales
    y = fast.predict(z.to(dtype))
    assert_few_ulps(fast.predict(y).numpy(), y.numpy(), dtype)
    if dtype == torch.float64:
        yr = reference.predict(z.numpy())
        assert_few_ulps(reference.predict(yr), yr, dtype)


def test_identity_and_sign_are_exactly_idempotent():
    z = torch.from_numpy(random_scores((50, 6), 3.0, seed=12))
    z[0, 2] = 0.0
    for psi in (hfy.Identity(), hfy.Sign()):
        y = psi.predict(z)
        assert torch.equal(psi.predict(y), y)
    assert hfy.Sign().predict(z)[0, 2] == 0  # sign(0) = 0


def test_tanh_is_not_idempotent():
    psi = hfy.Tanh(1.0)
    assert not psi.idempotent and not ref.Tanh().idempotent
    z = torch.from_numpy(random_scores((10, 5), 1.0, seed=13))
    y = psi.predict(z)
    assert (psi.predict(y) - y).abs().max() > 1e3 * PROPERTY_ATOL
    assert bool((y.abs() < 1).all())  # the image is the open cube


@pytest.mark.parametrize("unbiased", [False, True], ids=["biased", "unbiased"])
@pytest.mark.parametrize("d", [2, 5, 64])
def test_layernorm_radius(unbiased, d):
    """‖LN(z)‖² = D with the biased std, D − 1 with the unbiased option; the output is centred."""
    z = random_scores((20, d), 3.0, seed=d) + 5.0
    want = d - 1 if unbiased else d
    for out in (hfy.LayerNorm(unbiased=unbiased).predict(torch.from_numpy(z)).numpy(),
                ref.LayerNorm(unbiased=unbiased).predict(z)):
        np.testing.assert_allclose(np.sum(out * out, -1), want, rtol=0, atol=PROPERTY_ATOL * want)
        np.testing.assert_allclose(out.sum(-1), 0.0, rtol=0, atol=PROPERTY_ATOL * d)
    # the biased map is torch's own layer norm without affine parameters and with eps = 0
    if not unbiased:
        zt = torch.from_numpy(z)
        expected = torch.nn.functional.layer_norm(zt, (d,), eps=0.0)
        np.testing.assert_allclose(hfy.LayerNorm().predict(zt).numpy(), expected.numpy(), rtol=0,
                                   atol=REFERENCE_ATOL)


def test_l2_radius():
    z = random_scores((20, 6), 3.0, seed=14)
    for r in (1.0, 0.3, 4.0):
        for out in (hfy.L2Normalize(radius=r).predict(torch.from_numpy(z)).numpy(), ref.L2Normalize(r).predict(z)):
            np.testing.assert_allclose(np.linalg.norm(out, axis=-1), r, rtol=0, atol=PROPERTY_ATOL * r)


def test_layernorm_eps_breaks_idempotence():
    d = 6
    z = random_scores((10, d), 0.5, seed=15)
    fast, reference = hfy.LayerNorm(eps=1e-2), ref.LayerNorm(eps=1e-2)
    assert not fast.idempotent and not reference.idempotent
    y_fast = fast.predict(torch.from_numpy(z))
    y_ref = reference.predict(z)
    np.testing.assert_allclose(y_fast.numpy(), y_ref, rtol=0, atol=REFERENCE_ATOL)
    for y, again in ((y_fast.numpy(), fast.predict(y_fast).numpy()), (y_ref, reference.predict(y_ref))):
        assert np.abs(again - y).max() > 1e3 * PROPERTY_ATOL
        # strictly inside the centred ball: not the argmax over {1ᵀq = 0, ‖q‖ <= √D}
        assert np.all(np.sum(y * y, -1) < d * (1 - 1e3 * PROPERTY_ATOL))
    with pytest.raises(ValueError, match="`eps`"):
        hfy.LayerNorm(eps=-1.0)


# --- guards and the domain -------------------------------------------------------------------------------


@pytest.mark.parametrize("name,fast,reference,orc,atol", PSIS, ids=IDS)
def test_zero_input_gives_zero_without_nan(name, fast, reference, orc, atol):
    z = torch.zeros(2, 5, dtype=torch.float64)
    for out in (fast.predict(z).numpy(), reference.predict(z.numpy())):
        np.testing.assert_array_equal(out, 0.0)
    zg = z.clone().requires_grad_()
    (grad,) = torch.autograd.grad(fast.conjugate(zg).sum(), zg)
    assert bool(torch.isfinite(grad).all())


@pytest.mark.parametrize("unbiased", [False, True], ids=["biased", "unbiased"])
def test_layernorm_of_a_constant_is_zero(unbiased):
    """P z = 0 (constant z, any offset): every point of the set is a maximiser; the map returns 0, not NaN."""
    z = np.array([[7.0] * 5, [-1e4] * 5, [0.0] * 5])
    for out in (hfy.LayerNorm(unbiased=unbiased).predict(torch.from_numpy(z)).numpy(),
                ref.LayerNorm(unbiased=unbiased).predict(z)):
        np.testing.assert_array_equal(out, 0.0)


def test_psi_is_infinite_outside_its_set():
    d = 4
    cases = [
        ("l2", [0.6, 0.0, 0.0, 0.0], [1.1, 0.0, 0.0, 0.0]),
        ("l2-radius2.5", [2.0, 0.0, 1.0, 0.0], [2.0, 2.0, 0.0, 0.0]),
        ("layernorm", [1.0, -1.0, 1.0, -1.0], [1.0, 0.0, 0.0, 0.0]),  # off the centred hyperplane
        ("layernorm", [0.5, -0.5, 0.0, 0.0], [2.0, -2.0, 0.0, 0.0]),  # centred but ‖q‖ = √8 > √4
        ("layernorm-unbiased", [1.0, -1.0, 0.5, -0.5], [1.0, -1.0, 1.0, -1.0]),  # ‖q‖ = 2 > √3
        ("sign", [1.0, -1.0, 0.0, 0.3], [1.0, -1.5, 0.0, 0.0]),
        ("tanh", [0.9, -0.9, 0.0, 1.0], [0.0, 0.0, 1.2, 0.0]),
    ]
    for name, inside, outside in cases:
        _, fast, reference, _, _ = by_id(name)
        q_in, q_out = np.array(inside), np.array(outside)
        assert len(q_in) == d
        for layer, wrap in ((reference, np.asarray), (fast, torch.tensor)):
            v_in, v_out = float(layer.psi(wrap(q_in))), float(layer.psi(wrap(q_out)))
            assert math.isfinite(v_in), (name, inside)
            if name != "tanh":
                assert v_in == 0.0  # indicators are 0 on their set
            assert v_out == math.inf, (name, outside)
            assert float(layer.loss(wrap(np.ones(d)), wrap(q_out))) == math.inf


def test_tanh_psi_is_the_scaled_negative_binary_entropy():
    q = np.array([0.0, 0.5, -0.9, 1.0, -1.0])
    phi = np.array([
        (1 + t) / 2 * np.log((1 + t) / 2 if t > -1 else 1.0) + (1 - t) / 2 * np.log((1 - t) / 2 if t < 1 else 1.0)
        for t in q
    ])
    for beta in (1.0, 2.5):
        for layer, wrap in ((ref.Tanh(beta), np.asarray), (hfy.Tanh(beta), torch.tensor)):
            np.testing.assert_allclose(float(layer.psi(wrap(q))), phi.sum() / beta, rtol=0, atol=PROPERTY_ATOL)
        # the conjugate is β⁻¹ Σ log(2 cosh βz), stable for large |z|
        z = np.array([0.3, -2.0, 800.0])
        want = np.sum(np.abs(beta * z) + np.log1p(np.exp(-2 * np.abs(beta * z)))) / beta
        np.testing.assert_allclose(float(hfy.Tanh(beta).conjugate(torch.tensor(z))), want, rtol=PROPERTY_ATOL)
        np.testing.assert_allclose(float(ref.Tanh(beta).conjugate(z)), np.log(2 * np.cosh(beta * 0.3)) / beta
                                   + np.log(2 * np.cosh(beta * 2.0)) / beta + 800.0, rtol=PROPERTY_ATOL)


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="`radius`"):
        hfy.L2Normalize(radius=0.0)
    with pytest.raises(ValueError, match="`radius`"):
        ref.L2Normalize(radius=-1.0)
    with pytest.raises(ValueError, match="`beta`"):
        hfy.Tanh(beta=0.0)
    with pytest.raises(ValueError, match="`beta`"):
        ref.Tanh(beta=-2.0)


# --- CUDA ------------------------------------------------------------------------------------------------------

cuda = pytest.mark.cuda
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def check_device_matches_cpu(device, fast):
    z = torch.from_numpy(random_scores((3, 4, 9), 2.0, 21))
    z[0, 0] = 0.0  # the zero guard
    for dtype in (torch.float64, torch.float32):
        atol = REFERENCE_ATOL if dtype == torch.float64 else dtype_atol(dtype)
        zd = z.to(device, dtype).clone().requires_grad_()
        y = fast.predict(zd)
        assert y.device.type == device and y.dtype == dtype and bool(torch.isfinite(y).all())
        np.testing.assert_allclose(y.detach().cpu().double().numpy(), fast.predict(z).numpy(), rtol=0, atol=atol)
        conj = fast.conjugate(zd)
        (grad,) = torch.autograd.grad(conj.sum(), zd)
        np.testing.assert_allclose(grad.cpu().double().numpy(), fast.predict(z).numpy(), rtol=0, atol=atol)
        c_cpu = fast.conjugate(z)
        assert bool(((conj.detach().cpu().double() - c_cpu).abs() <= atol * (1 + c_cpu.abs())).all())
        assert bool(torch.isfinite(fast.psi(y.detach())).all())  # the image lies in dom Ψ in every dtype


@cuda
@needs_cuda
@pytest.mark.parametrize("name,fast,reference,orc,atol", PSIS, ids=IDS)
def test_cuda_matches_cpu(name, fast, reference, orc, atol):
    check_device_matches_cpu("cuda", fast)
