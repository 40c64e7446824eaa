"""Dense associative memories: separable Ω* = Σ F(θ_i) with polynomial or exponential F.

book/models/dense.md: on the cube the HFY energy is −β⁻¹ Σ F(β x_iᵀq) and the update is
q ← ŷ_Ψ(Xᵀ F'(βXq)).  F must be convex (even n, or rectified); ``convex=False`` keeps the
paper scripts' odd-n polynomial outside the theory.  ``ExponentialDAM(shift=True)``
rescales the weights by exp(−max θ), which the scale-invariant Ψ (sign, ℓ2, LN) ignore.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import hfy
import hfy.reference as ref
from hfy.testing import PROPERTY_ATOL, REFERENCE_ATOL, dtype_atol


def pm1(shape, seed):
    return np.sign(np.random.default_rng(seed).standard_normal(shape))


def T(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


#: (id, torch Ω, reference Ω, F, F').
MODELS = [
    ("poly2", hfy.PolynomialDAM(2), ref.PolynomialDAM(2), lambda t: t**2 / 2, lambda t: t),
    ("poly4", hfy.PolynomialDAM(4), ref.PolynomialDAM(4), lambda t: t**4 / 4, lambda t: t**3),
    ("poly6", hfy.PolynomialDAM(6), ref.PolynomialDAM(6), lambda t: t**6 / 6, lambda t: t**5),
    ("poly3-rectified", hfy.PolynomialDAM(3, rectified=True), ref.PolynomialDAM(3, rectified=True),
     lambda t: np.maximum(t, 0) ** 3 / 3, lambda t: np.maximum(t, 0) ** 2),
    ("poly5-rectified", hfy.PolynomialDAM(5, rectified=True), ref.PolynomialDAM(5, rectified=True),
     lambda t: np.maximum(t, 0) ** 5 / 5, lambda t: np.maximum(t, 0) ** 4),
    ("exp", hfy.ExponentialDAM(), ref.ExponentialDAM(), np.exp, np.exp),
]
IDS = [m[0] for m in MODELS]


@pytest.mark.parametrize("name,fast,reference,F,F_prime", MODELS, ids=IDS)
@pytest.mark.parametrize("beta", [0.05, 0.3])
def test_energy_on_the_cube(name, fast, reference, F, F_prime, beta):
    """E = −β⁻¹ Σ_i F(β x_iᵀq) on the cube (constants 'none' and 'fy' agree: ȳ = 0, Ψ*(0) = Ω(0) = 0)."""
    X = pm1((7, 12), 1)
    q = np.concatenate([pm1((10, 12), 2), np.random.default_rng(3).uniform(-1, 1, (10, 12))])
    want = ref.dam_energy(beta * q, X, F) / beta
    tol = PROPERTY_ATOL * (1 + np.abs(want))
    for constant in ("none", "fy"):
        got_t = hfy.energy(T(q), T(X), beta, fast, "sign", constant).numpy()
        got_r = ref.energy(q, X, beta, reference, "sign", constant)
        assert np.all(np.abs(got_t - want) <= tol) and np.all(np.abs(got_r - want) <= tol)
    # the same numbers from the textbook formula written out
    np.testing.assert_allclose(want, -np.sum(F(beta * q @ X.T), -1) / beta, rtol=0, atol=PROPERTY_ATOL)


@pytest.mark.parametrize("name,fast,reference,F,F_prime", MODELS, ids=IDS)
@pytest.mark.parametrize("psi,rpsi", [("sign", ref.Sign()), ("tanh", ref.Tanh(0.2)), ("l2", ref.L2Normalize()),
                                      ("layernorm", ref.LayerNorm())], ids=["sign", "tanh", "l2", "layernorm"])
def test_update(name, fast, reference, F, F_prime, psi, rpsi):
    """q ← ŷ_Ψ(Xᵀ F'(βXq)), in the reference and the fast path."""
    X = pm1((7, 12), 4)
    q = np.random.default_rng(5).uniform(-1, 1, (2, 4, 12))  # inside the cube: no exact ties Xᵀy = 0
    if psi in ("l2", "layernorm"):
        q = rpsi.predict(q)
    beta = 0.3
    want = rpsi.predict(F_prime(beta * q @ X.T) @ X)
    tpsi = hfy.Tanh(0.2) if psi == "tanh" else psi
    got_t, y = hfy.update(T(q), T(X), beta, fast, tpsi, return_weights=True)
    got_r, y_r = ref.update(q, X, beta, reference, rpsi)
    np.testing.assert_allclose(y.numpy(), F_prime(beta * q @ X.T), rtol=0, atol=REFERENCE_ATOL)
    np.testing.assert_allclose(y_r, y.numpy(), rtol=0, atol=REFERENCE_ATOL)
    np.testing.assert_allclose(got_t.numpy(), want, rtol=0, atol=REFERENCE_ATOL)
    np.testing.assert_allclose(got_r, want, rtol=0, atol=REFERENCE_ATOL)


@pytest.mark.parametrize("name,fast,reference,F,F_prime", MODELS, ids=IDS)
def test_regulariser_is_a_conjugate_pair(name, fast, reference, F, F_prime):
    """Ω* = Σ F, ŷ_Ω = F' = ∇Ω* (autograd), and Fenchel-Young: Ω*(θ) + Ω(ŷ) = ⟨θ, ŷ⟩."""
    theta = np.random.default_rng(6).uniform(-2, 2, (4, 6))
    for reg, wrap in ((fast, T), (reference, np.asarray)):
        np.testing.assert_allclose(np.asarray(reg.conjugate(wrap(theta))), np.sum(F(theta), -1), rtol=0,
                                   atol=PROPERTY_ATOL)
        np.testing.assert_allclose(np.asarray(reg.predict(wrap(theta))), F_prime(theta), rtol=0, atol=PROPERTY_ATOL)
        y = np.asarray(reg.predict(wrap(theta)))
        gap = np.asarray(reg.conjugate(wrap(theta))) + np.asarray(reg.omega(wrap(y))) - np.sum(theta * y, -1)
        np.testing.assert_allclose(gap, 0.0, rtol=0, atol=PROPERTY_ATOL * (1 + np.abs(theta * y).sum()))
        assert reg.margin == math.inf
    th = T(theta).requires_grad_()
    (grad,) = torch.autograd.grad(fast.conjugate(th).sum(), th)
    np.testing.assert_allclose(grad.numpy(), F_prime(theta), rtol=0, atol=PROPERTY_ATOL)


def test_polynomial_equals_quadratic_at_n2():
    X = pm1((5, 8), 7)
    q = np.random.default_rng(8).uniform(-1, 1, (6, 8))
    for psi in ("sign", "tanh"):
        np.testing.assert_allclose(hfy.energy(T(q), T(X), 0.4, hfy.PolynomialDAM(2), psi).numpy(),
                                   hfy.energy(T(q), T(X), 0.4, hfy.Quadratic(), psi).numpy(), rtol=0,
                                   atol=REFERENCE_ATOL)
        np.testing.assert_allclose(hfy.update(T(q), T(X), 0.4, hfy.PolynomialDAM(2), psi).numpy(),
                                   hfy.update(T(q), T(X), 0.4, hfy.Quadratic(), psi).numpy(), rtol=0,
                                   atol=REFERENCE_ATOL)


@pytest.mark.parametrize("cls", [hfy.PolynomialDAM, ref.PolynomialDAM], ids=["torch", "reference"])
def test_odd_polynomial_needs_rectification_or_convex_false(cls):
    for n in (3, 5, 11):
        with pytest.raises(ValueError, match="`n`"):
            cls(n)
        assert cls(n, rectified=True).rectified
        assert not cls(n, convex=False).convex
    for bad in (1, 0, 2.0, True, "4"):
        with pytest.raises(ValueError, match="`n`"):
            cls(bad)
    assert cls(4).n == 4 and cls(4).convex


def test_non_convex_polynomial_parity_mode():
    """``PolynomialDAM(11, convex=False)`` has weights (βXq)^10, the scripts' "10-Poly DAM" (with tanh)."""
    X = pm1((5, 10), 9)
    q = np.random.default_rng(10).uniform(-1, 1, (4, 10))
    beta, psi_beta = 0.1, 0.01
    want = np.tanh(psi_beta * (beta * q @ X.T) ** 10 @ X)
    for reg, layer, wrap in ((hfy.PolynomialDAM(11, convex=False), hfy, T),
                             (ref.PolynomialDAM(11, convex=False), ref, np.asarray)):
        psi = hfy.Tanh(psi_beta) if layer is hfy else ref.Tanh(psi_beta)
        out = layer.update(wrap(q), wrap(X), beta, reg, psi)
        out = out[0] if isinstance(out, tuple) else out
        np.testing.assert_allclose(np.asarray(out), want, rtol=0, atol=REFERENCE_ATOL)


@pytest.mark.parametrize("psi", ["sign", "l2", "layernorm"])
def test_exponential_shift_gives_the_same_updates(psi):
    """exp(θ − max θ) is a positive rescaling of exp(θ): the scale-invariant Ψ give the same update."""
    X = pm1((8, 16), 11)
    q = np.random.default_rng(12).uniform(-1, 1, (2, 5, 16))
    for beta in (0.01, 0.1, 1.0):
        plain = hfy.update(T(q), T(X), beta, hfy.ExponentialDAM(), psi).numpy()
        shifted = hfy.update(T(q), T(X), beta, hfy.ExponentialDAM(shift=True), psi).numpy()
        assert np.all(np.isfinite(plain))
        if psi == "sign":
            np.testing.assert_array_equal(shifted, plain)
        else:
            np.testing.assert_allclose(shifted, plain, rtol=0, atol=REFERENCE_ATOL)
        # the energy uses F = exp unshifted either way
        np.testing.assert_array_equal(hfy.energy(T(q), T(X), beta, hfy.ExponentialDAM(shift=True), psi).numpy(),
                                      hfy.energy(T(q), T(X), beta, hfy.ExponentialDAM(), psi).numpy())


@pytest.mark.parametrize("psi", ["sign", "l2", "layernorm"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_exponential_shift_does_not_overflow(psi, dtype):
    """Where exp(βXq) overflows, shift=True stays finite and equals the softmax update (same weights up to scale)."""
    X = T(pm1((10, 64), 13)).to(dtype)
    q = T(np.sign(np.random.default_rng(14).standard_normal((6, 64)))).to(dtype)
    q[:3] = X[:3]  # exact patterns: scores of 64β
    beta = 20.0  # 64·20 = 1280 > log(max float64) ≈ 709.8
    _, y_plain = hfy.update(q, X, beta, hfy.ExponentialDAM(), psi, return_weights=True)
    assert not bool(torch.isfinite(y_plain).all())  # the overflow the option exists for
    shifted, y_shift = hfy.update(q, X, beta, hfy.ExponentialDAM(shift=True), psi, return_weights=True)
    assert bool(torch.isfinite(shifted).all()) and bool(torch.isfinite(y_shift).all())
    assert bool((y_shift.amax(-1) == 1).all())  # exp(θ − max θ): the largest weight is exactly 1
    soft = hfy.update(q, X, beta, "softmax", psi)
    atol = REFERENCE_ATOL if dtype == torch.float64 else dtype_atol(dtype)
    np.testing.assert_allclose(shifted.double().numpy(), soft.double().numpy(), rtol=0, atol=atol)
    if psi == "sign":
        np.testing.assert_array_equal(shifted[:3].numpy(), X[:3].numpy())  # stored patterns are retrieved


def test_exponential_shift_rescales_the_weights():
    """The shifted weights are the plain ones divided by e^{max θ}; a Ψ that is not scale invariant (identity,
    tanh) would see the factor, so update, retrieve and HFY refuse the pair, naming `psi`."""
    X = pm1((5, 8), 15)
    q = np.random.default_rng(16).uniform(-1, 1, (3, 8))
    beta = 0.5
    theta = beta * q @ X.T
    y_plain = hfy.ExponentialDAM().predict(T(theta))
    y_shift = hfy.ExponentialDAM(shift=True).predict(T(theta))
    np.testing.assert_allclose(y_shift.numpy(), y_plain.numpy() / np.exp(theta.max(-1, keepdims=True)), rtol=0,
                               atol=REFERENCE_ATOL)
    assert np.allclose(y_shift.numpy().max(-1), 1.0, rtol=0, atol=REFERENCE_ATOL)
    shifted = hfy.ExponentialDAM(shift=True)
    for psi in ("identity", "tanh", hfy.Tanh(0.3)):
        for call in (lambda: hfy.update(T(q), T(X), beta, shifted, psi),
                     lambda: hfy.update(T(q), T(X), beta, shifted, psi, return_weights=True),
                     lambda: hfy.retrieve(T(q), T(X), beta, shifted, psi),
                     lambda: hfy.HFY(T(X), beta, shifted, psi)):
            with pytest.raises(ValueError, match="`psi`"):
                call()


def test_exponential_conjugate_domain():
    """Ω(y) = Σ y log y − y on y >= 0 (+inf for a negative entry); Ω(0) = 0."""
    for reg, wrap in ((hfy.ExponentialDAM(), T), (ref.ExponentialDAM(), np.asarray)):
        assert float(reg.omega(wrap(np.zeros(4)))) == 0.0
        assert float(reg.omega(wrap(np.array([1.0, -0.1])))) == math.inf
        y = np.array([0.5, 2.0, 0.0])
        np.testing.assert_allclose(float(reg.omega(wrap(y))), 0.5 * np.log(0.5) - 0.5 + 2 * np.log(2) - 2, rtol=0,
                                   atol=PROPERTY_ATOL)
    for reg, wrap in ((hfy.PolynomialDAM(3, rectified=True), T), (ref.PolynomialDAM(3, rectified=True), np.asarray)):
        assert float(reg.omega(wrap(np.array([1.0, -0.1])))) == math.inf
        np.testing.assert_allclose(float(reg.omega(wrap(np.array([8.0])))), 2 / 3 * 8 ** 1.5, rtol=PROPERTY_ATOL)


@pytest.mark.parametrize("name,fast,reference,F,F_prime", MODELS, ids=IDS)
def test_dense_memory_retrieves_patterns_with_sign(name, fast, reference, F, F_prime):
    """Random ±1 patterns (N = 4, D = 64) are fixed points and attract queries with 6 flipped bits."""
    X = pm1((4, 64), 17)
    beta = 0.05
    rng = np.random.default_rng(18)
    for i in range(4):
        np.testing.assert_array_equal(hfy.update(T(X[i]), T(X), beta, fast, "sign").numpy(), X[i])
        noisy = X[i].copy()
        noisy[rng.choice(64, 6, replace=False)] *= -1
        r = hfy.retrieve(T(noisy), T(X), beta, fast, "sign", max_iter=10, tol=0.0)
        np.testing.assert_array_equal(r.q.numpy(), X[i])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name,fast,reference,F,F_prime", MODELS, ids=IDS)
def test_cuda_matches_cpu(name, fast, reference, F, F_prime):
    X = T(pm1((7, 12), 19))
    q = T(np.random.default_rng(20).uniform(-1, 1, (2, 4, 12)))
    for psi in ("sign", "tanh", "l2"):
        e = hfy.energy(q.cuda(), X.cuda(), 0.3, fast, psi).cpu()
        np.testing.assert_allclose(e.numpy(), hfy.energy(q, X, 0.3, fast, psi).numpy(), rtol=0,
                                   atol=REFERENCE_ATOL * (1 + float(e.abs().max())))
        out = hfy.update(q.cuda(), X.cuda(), 0.3, fast, psi).cpu()
        np.testing.assert_allclose(out.numpy(), hfy.update(q, X, 0.3, fast, psi).numpy(), rtol=0, atol=REFERENCE_ATOL)
    shifted = hfy.update(X.cuda(), X.cuda(), 20.0, hfy.ExponentialDAM(shift=True), "sign")
    assert torch.equal(shifted.cpu(), X)
