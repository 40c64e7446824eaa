"""The classical Hopfield network as an HFY network: Ω = ½‖·‖² (Quadratic) with Ψ = the cube (Sign).

book/models/classical.md: the HFY energy is −(β/2) qᵀXᵀXq on the cube, the CCCP update is the
synchronous rule q ← sign(Wq) with the Hebbian W = XᵀX *including* its diagonal, which makes
the energy decrease; with the textbook zero diagonal W is indefinite and 2-cycles appear.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hfy
import hfy.reference as ref
from hfy.testing import PROPERTY_ATOL, REFERENCE_ATOL


def pm1(shape, seed):
    return np.sign(np.random.default_rng(seed).standard_normal(shape))


def T(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


@pytest.mark.parametrize("omega", [hfy.Quadratic(), "identity"], ids=["object", "name"])
@pytest.mark.parametrize("beta", [0.05, 1.0, 3.0])
def test_energy_is_beta_times_the_classical_energy(omega, beta):
    X = pm1((6, 16), 1)
    q = np.concatenate([pm1((20, 16), 2), np.random.default_rng(3).uniform(-1, 1, (20, 16))])  # vertices and interior
    want = beta * ref.classical_energy(q, X)
    tol = PROPERTY_ATOL * (1 + np.abs(want))
    got_t = hfy.energy(T(q), T(X), beta, omega, "sign", "none").numpy()
    got_r = ref.energy(q, X, beta, ref.Quadratic(), "sign", "none")
    assert np.all(np.abs(got_t - want) <= tol) and np.all(np.abs(got_r - want) <= tol)
    # ȳ = 0 for the quadratic: the FY constant Ψ*(0) − Ω(0)/β is zero
    np.testing.assert_array_equal(hfy.energy(T(q), T(X), beta, omega, "sign", "fy").numpy(), got_t)
    # off the cube the energy is +inf
    assert float(hfy.energy(T(1.5 * q[:1]), T(X), beta, omega, "sign")) == np.inf


@pytest.mark.parametrize("beta", [0.05, 1.0, 3.0])
def test_update_is_the_classical_update(beta):
    X = pm1((5, 15), 4)
    q = pm1((40, 15), 5)
    want = ref.classical_update(q, X)
    np.testing.assert_array_equal(hfy.update(T(q), T(X), beta, "identity", "sign").numpy(), want)
    np.testing.assert_array_equal(ref.update(q, X, beta, ref.Quadratic(), "sign")[0], want)
    q_next, y = hfy.update(T(q), T(X), beta, hfy.Quadratic(), "sign", return_weights=True)
    np.testing.assert_allclose(y.numpy(), beta * q @ X.T, rtol=0, atol=REFERENCE_ATOL)  # ŷ_Ω = θ: no simplex


def test_quadratic_regulariser():
    theta = np.random.default_rng(6).standard_normal((3, 7))
    for reg, wrap in ((hfy.Quadratic(), T), (ref.Quadratic(), np.asarray)):
        np.testing.assert_array_equal(np.asarray(reg.predict(wrap(theta))), theta)
        np.testing.assert_allclose(np.asarray(reg.conjugate(wrap(theta))), 0.5 * np.sum(theta**2, -1), rtol=0,
                                   atol=REFERENCE_ATOL)
        np.testing.assert_allclose(np.asarray(reg.omega(wrap(theta))), 0.5 * np.sum(theta**2, -1), rtol=0,
                                   atol=REFERENCE_ATOL)
        assert reg.margin == np.inf
    with pytest.raises(ValueError, match="entropy"):
        hfy.Quadratic().max_entropy(4)
    th = T(theta).requires_grad_()
    (grad,) = torch.autograd.grad(hfy.Quadratic().conjugate(th).sum(), th)
    np.testing.assert_allclose(grad.numpy(), theta, rtol=0, atol=REFERENCE_ATOL)


def test_hebbian_weights_keep_the_diagonal():
    X = pm1((4, 9), 7)
    W = ref.hebbian_weights(X)
    np.testing.assert_array_equal(W, X.T @ X)
    np.testing.assert_array_equal(np.diag(W), 4.0)  # diag(W) = N I for ±1 patterns
    W0 = ref.hebbian_weights(X, zero_diagonal=True)
    np.testing.assert_array_equal(np.diag(W0), 0.0)
    np.testing.assert_array_equal(W0 + 4.0 * np.eye(9), W)
    assert np.linalg.eigvalsh(W).min() >= -PROPERTY_ATOL * 9 * 4  # positive semidefinite
    assert np.linalg.eigvalsh(W0).min() < 0  # indefinite without the diagonal
    # on the cube the diagonal only shifts the energy by the constant N·D/2
    q = pm1((10, 9), 8)
    np.testing.assert_allclose(ref.classical_energy(q, X) - ref.classical_energy(q, X, zero_diagonal=True),
                               -0.5 * 4 * 9, rtol=0, atol=PROPERTY_ATOL)


def run_sync(q, X, zero_diagonal, steps):
    """Synchronous trajectory q, sign(Wq), ... (``steps`` updates)."""
    traj = [q]
    for _ in range(steps):
        traj.append(ref.classical_update(traj[-1], X, zero_diagonal))
    return traj


def test_synchronous_updates_decrease_energy_with_the_diagonal():
    """W = XᵀX ⪰ 0: −½qᵀWq never increases and every trajectory ends at a fixed point (no 2-cycles)."""
    rng = np.random.default_rng(9)
    for trial in range(60):
        n, d = int(rng.integers(1, 12)), int(rng.integers(2, 40))
        X = np.sign(rng.standard_normal((n, d)))
        q = np.sign(rng.standard_normal((50, d)))
        traj = run_sync(q, X, False, 2 * d + 2)
        energies = np.stack([ref.classical_energy(t, X) for t in traj])
        assert np.all(energies[1:] <= energies[:-1] + PROPERTY_ATOL * (1 + np.abs(energies[:-1])))
        np.testing.assert_array_equal(traj[-1], traj[-2])  # converged to a fixed point
        # the torch update gives the same trajectory
        np.testing.assert_array_equal(hfy.update(T(traj[3]), T(X), 1.0, "identity", "sign").numpy(), traj[4])


def test_zero_diagonal_two_cycle():
    """Without the diagonal, synchronous updates can oscillate: a hand-made 2-cycle and a seeded random one."""
    X = np.array([[1.0, 1.0]])
    q0 = np.array([1.0, -1.0])
    q1 = ref.classical_update(q0, X, zero_diagonal=True)
    q2 = ref.classical_update(q1, X, zero_diagonal=True)
    np.testing.assert_array_equal(q1, [-1.0, 1.0])
    np.testing.assert_array_equal(q2, q0)
    assert ref.classical_energy(q1, X, True) == ref.classical_energy(q0, X, True)  # no decrease
    # random ±1 patterns: search deterministically for a start that ends in a 2-cycle
    rng = np.random.default_rng(10)
    found = None
    for trial in range(200):
        X = np.sign(rng.standard_normal((3, 12)))
        q = np.sign(rng.standard_normal((64, 12)))
        traj = run_sync(q, X, True, 60)
        cycling = np.all(traj[-1] == traj[-3], -1) & np.any(traj[-1] != traj[-2], -1)
        if cycling.any():
            found = (X, q[np.argmax(cycling)])
            break
    assert found is not None, "no 2-cycle found"
    X, start = found
    traj = run_sync(start, X, True, 60)
    assert np.any(traj[-1] != traj[-2]) and np.all(traj[-1] == traj[-3])
    # the same start with the diagonal (the HFY update) settles at a fixed point
    with_diag = run_sync(start, X, False, 60)
    np.testing.assert_array_equal(with_diag[-1], with_diag[-2])
    np.testing.assert_array_equal(hfy.update(T(with_diag[-1]), T(X), 1.0, "identity", "sign").numpy(), with_diag[-1])


@pytest.mark.parametrize("psi_beta", [0.05, 0.5])
def test_smoothed_classical_update_is_tanh(psi_beta):
    """Ψ = tanh entropy: q ← tanh(β_Ψ · β XᵀXq)."""
    X = pm1((5, 10), 11)
    q = np.random.default_rng(12).uniform(-1, 1, (8, 10))
    beta = 0.7
    want = np.tanh(psi_beta * beta * q @ X.T @ X)
    got = hfy.update(T(q), T(X), beta, "identity", hfy.Tanh(psi_beta)).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=REFERENCE_ATOL)
    np.testing.assert_allclose(ref.update(q, X, beta, ref.Quadratic(), ref.Tanh(psi_beta))[0], want, rtol=0,
                               atol=REFERENCE_ATOL)


def test_reference_agrees_with_torch():
    X = pm1((6, 11), 13)
    q = np.random.default_rng(14).uniform(-1, 1, (2, 3, 11))
    for psi, rpsi in (("sign", ref.Sign()), ("tanh", ref.Tanh()), ("l2", ref.L2Normalize())):
        qq = rpsi.predict(q)
        for constant in ("fy", "none"):
            e_t = hfy.energy(T(qq), T(X), 0.3, "identity", psi, constant).numpy()
            e_r = ref.energy(qq, X, 0.3, ref.Quadratic(), rpsi, constant)
            np.testing.assert_allclose(e_t, e_r, rtol=0, atol=REFERENCE_ATOL * (1 + np.abs(e_r).max()))
        np.testing.assert_allclose(hfy.update(T(qq), T(X), 0.3, "identity", psi).numpy(),
                                   ref.update(qq, X, 0.3, ref.Quadratic(), rpsi)[0], rtol=0, atol=REFERENCE_ATOL)


def test_mask_selects_memories():
    """A 1-D mask on a non-simplex Ω removes rows of X; the returned weights are 0 on masked memories."""
    X = pm1((6, 9), 15)
    q = pm1((4, 9), 16)
    mask = np.array([True, False, True, True, False, True])
    q_next, y = hfy.update(T(q), T(X), 1.0, "identity", "sign", T(mask).bool(), return_weights=True)
    np.testing.assert_array_equal(q_next.numpy(), ref.classical_update(q, X[mask]))
    assert bool((y[:, ~torch.from_numpy(mask)] == 0).all())
    e = hfy.energy(T(q), T(X), 1.0, "identity", "sign", "none", T(mask).bool()).numpy()
    np.testing.assert_allclose(e, ref.classical_energy(q, X[mask]), rtol=0, atol=REFERENCE_ATOL)
    r_next, r_y = ref.update(q, X, 1.0, ref.Quadratic(), "sign", mask)
    np.testing.assert_array_equal(r_next, q_next.numpy())
    np.testing.assert_allclose(r_y, y.numpy(), rtol=0, atol=REFERENCE_ATOL)


def test_retrieval_of_a_stored_pattern():
    """Orthogonal ±1 patterns (Hadamard rows) are fixed points, and a query with a few flipped bits returns."""
    H = np.array([[1.0]])
    for _ in range(5):
        H = np.block([[H, H], [H, -H]])
    X = H[1:5]  # 4 orthogonal patterns of length 32
    for i in range(4):
        np.testing.assert_array_equal(hfy.update(T(X[i]), T(X), 1.0, "identity", "sign").numpy(), X[i])
        noisy = X[i].copy()
        noisy[[0, 7, 19]] *= -1
        r = hfy.retrieve(T(noisy), T(X), 1.0, "identity", "sign", max_iter=10, tol=0.0)
        np.testing.assert_array_equal(r.q.numpy(), X[i])
        assert bool(r.converged)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    X = pm1((6, 20), 21)
    q = pm1((50, 20), 22)
    out = hfy.update(T(q).cuda(), T(X).cuda(), 1.0, "identity", "sign").cpu().numpy()
    np.testing.assert_array_equal(out, ref.classical_update(q, X))
    e = hfy.energy(T(q).cuda(), T(X).cuda(), 0.5, "identity", "sign", "none").cpu().numpy()
    want = 0.5 * ref.classical_energy(q, X)
    assert np.all(np.abs(e - want) <= REFERENCE_ATOL * (1 + np.abs(want)))
    r = hfy.retrieve(T(q).cuda(), T(X).cuda(), 1.0, "identity", "sign", max_iter=50, tol=0.0, trace=True)
    assert bool((r.energies[1:] <= r.energies[:-1]).all())
