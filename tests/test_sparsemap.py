"""General SparseMAP (active set, Jacobian, user oracles) and structured HFY networks (energy, margins, retrieval)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hfy
import hfy.oracle as oracle
import hfy.reference as ref
from hfy.oracle.sequential_ksubsets import mixture_bonus_enumerated as oracle_bonus
from hfy.oracle.sequential_ksubsets import sparsemap_enumerated
from hfy.reference.sparsemap import sparsemap_bonus_derivative, sparsemap_jacobian
from hfy.testing import (
    FD_ATOL,
    FD_STEP,
    GRADCHECK,
    ORACLE_ATOL,
    PROPERTY_ATOL,
    REFERENCE_ATOL,
    dtype_atol,
    finite_difference_jacobian,
    random_scores,
)

INF = math.inf

cuda = pytest.mark.cuda
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# --- a user-defined structure: one pattern from each of two groups ----------------------------------------
#
# Memories 0..2 form group G1 and 3..6 group G2; a structure picks one of each.  The pairwise feature is 1
# when the two picks are "partners" (j = i + 3), so with weight w the MAP prefers partner pairs.

G1, G2 = 3, 4
N_GROUPS = G1 + G2
PAIRS = [(i, G1 + j) for i in range(G1) for j in range(G2)]
A_PAIRS = np.array([np.isin(np.arange(N_GROUPS), pair).astype(float) for pair in PAIRS])
B_PAIRS = np.array([float(j == i + G1) for i, j in PAIRS])


def two_groups(w: float = 0.0):
    """Batched MAP over the 12 structures (torch): scores vᵀa + w b, argmax per row."""
    A, b = torch.from_numpy(A_PAIRS), torch.from_numpy(B_PAIRS)

    def oracle(v):
        best = (v @ A.to(v).T + w * b.to(v)).argmax(-1)
        return A.to(v)[best], b.to(v)[best]

    return oracle


def two_groups_np(v):
    best = int(np.argmax(A_PAIRS @ v))
    return A_PAIRS[best], B_PAIRS[best]


def two_groups_np_bonus(w):
    def oracle(v):
        best = int(np.argmax(A_PAIRS @ v + w * B_PAIRS))
        return A_PAIRS[best], B_PAIRS[best]

    return oracle


def top_k_oracle(k):
    def oracle(v):
        idx = v.topk(k, dim=-1).indices
        return torch.zeros_like(v).scatter(-1, idx, 1.0), torch.zeros(v.shape[0], dtype=v.dtype)

    return oracle


def at_most_one(v):
    """Structures {0} ∪ {e_i}: the best single entry, or nothing when every score is <= 0."""
    best = v.argmax(-1, keepdim=True)
    a = torch.zeros_like(v).scatter(-1, best, 1.0) * (v.gather(-1, best) > 0).to(v.dtype)
    return a, torch.zeros(v.shape[0], dtype=v.dtype)


def at_most_one_np(v):
    a = np.zeros_like(v)
    if v.max() > 0:
        a[np.argmax(v)] = 1.0
    return a, 0.0


# --- general SparseMAP -------------------------------------------------------------------------------------


@pytest.mark.parametrize("w", [0.0, 0.7, -0.4])
def test_user_oracle_triangle(w):
    theta = random_scores((5, N_GROUPS), 1.0, seed=1)
    mu = hfy.sparsemap(torch.from_numpy(theta), two_groups(w), w).numpy()
    mu_ref = np.stack([ref.sparsemap_active_set(t, two_groups_np_bonus(w), w).mu for t in theta])
    np.testing.assert_allclose(mu, mu_ref, rtol=0, atol=REFERENCE_ATOL)
    mu_oracle = np.stack([sparsemap_enumerated(t, A_PAIRS, B_PAIRS, w) for t in theta[:3]])
    np.testing.assert_allclose(mu_oracle, mu_ref[:3], rtol=0, atol=ORACLE_ATOL)
    # the marginals live in the polytope: one unit of mass per group
    np.testing.assert_allclose(mu[:, :G1].sum(1), 1.0, rtol=0, atol=PROPERTY_ATOL)
    np.testing.assert_allclose(mu[:, G1:].sum(1), 1.0, rtol=0, atol=PROPERTY_ATOL)


def test_without_bonus_the_groups_decouple_into_two_sparsemaxes():
    """conv of the two-group structures is the product of two simplices: the projection is separable."""
    theta = torch.from_numpy(random_scores((6, N_GROUPS), 2.0, seed=2))
    mu = hfy.SparseMAP(two_groups()).predict(theta)
    expected = torch.cat([hfy.sparsemax(theta[:, :G1]), hfy.sparsemax(theta[:, G1:])], dim=1)
    np.testing.assert_allclose(mu.numpy(), expected.numpy(), rtol=0, atol=REFERENCE_ATOL)


def test_general_solver_with_top_k_is_ksubsets():
    theta = torch.from_numpy(random_scores((8, 10), 2.0, seed=3))
    for k in (1, 2, 4):
        np.testing.assert_allclose(hfy.sparsemap(theta, top_k_oracle(k)).numpy(), hfy.ksubsets(theta, k).numpy(),
                                   rtol=0, atol=REFERENCE_ATOL)


@pytest.mark.parametrize("w", [0.0, 0.7])
def test_active_set_certificate(w):
    """c_s − a_sᵀμ = τ on the active structures and <= τ on every structure (the KKT conditions)."""
    for seed in range(4):
        theta = random_scores((N_GROUPS,), 1.5, seed)
        act = ref.sparsemap_active_set(theta, two_groups_np_bonus(w), w)
        gains = A_PAIRS @ (theta - act.mu) + w * B_PAIRS
        active_gains = act.structures @ (theta - act.mu) + w * act.features
        np.testing.assert_allclose(active_gains, act.tau, rtol=0, atol=PROPERTY_ATOL)
        assert gains.max() <= act.tau + PROPERTY_ATOL
        np.testing.assert_allclose(act.structures.T @ act.weights, act.mu, rtol=0, atol=PROPERTY_ATOL)
        assert abs(act.weights.sum() - 1) <= PROPERTY_ATOL and (act.weights >= 0).all()


def test_marginals_unique_weights_not():
    """Two different mixtures of k-subsets with the same marginals: SparseMAP returns the marginals, not π."""
    a = np.array([[1, 1, 0, 0], [0, 0, 1, 1]], dtype=float)
    b = np.array([[1, 0, 1, 0], [0, 1, 0, 1]], dtype=float)
    assert np.array_equal(0.5 * a.sum(0), 0.5 * b.sum(0))
    theta = np.full(4, 0.3)  # μ = (k/N)·1 = ½·1, reachable from both mixtures
    np.testing.assert_allclose(ref.ksubsets(theta, 2), 0.5 * a.sum(0), rtol=0, atol=PROPERTY_ATOL)


def test_gradcheck_user_oracle():
    z = torch.from_numpy(random_scores((4, N_GROUPS), 1.0, seed=4)).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: hfy.sparsemap(t, two_groups()), (z,), **GRADCHECK)
    reg = hfy.SparseMAP(two_groups())
    assert torch.autograd.gradcheck(lambda t: reg.predict(t, dim=0), (z.detach().T.contiguous().requires_grad_(),),
                                    **GRADCHECK)


def test_gradcheck_user_oracle_in_the_bonus():
    z = torch.from_numpy(random_scores((4, N_GROUPS), 1.0, seed=5)).requires_grad_()
    w = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, s: hfy.sparsemap(t, two_groups(float(s.detach())), s), (z, w),
                                    **GRADCHECK)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reference_jacobians_match_finite_differences(seed):
    w = 0.7
    theta = random_scores((N_GROUPS,), 1.0, seed)
    oracle = two_groups_np_bonus(w)
    act = ref.sparsemap_active_set(theta, oracle, w)
    fd = finite_difference_jacobian(lambda t: ref.sparsemap_active_set(t, oracle, w).mu, theta)
    np.testing.assert_allclose(sparsemap_jacobian(act), fd, rtol=0, atol=FD_ATOL)
    fd_w = (ref.sparsemap_active_set(theta, two_groups_np_bonus(w + FD_STEP), w + FD_STEP).mu
            - ref.sparsemap_active_set(theta, two_groups_np_bonus(w - FD_STEP), w - FD_STEP).mu) / (2 * FD_STEP)
    np.testing.assert_allclose(sparsemap_bonus_derivative(act), fd_w, rtol=0, atol=FD_ATOL)
    auto = torch.autograd.functional.jacobian(lambda t: hfy.sparsemap(t[None], two_groups(w), w)[0],
                                              torch.from_numpy(theta))
    np.testing.assert_allclose(auto.numpy(), sparsemap_jacobian(act), rtol=0, atol=REFERENCE_ATOL)


def test_jacobian_with_the_empty_structure_active():
    """Structures {0, e_1, …, e_N}: μ is the projection onto {μ >= 0, Σμ <= 1}; at θ = (0.3, −1, −2) it is
    (0.3, 0, 0), a mixture of e_1 and 0, and locally μ_1 = θ_1, so ∂μ_1/∂θ_1 = 1."""
    theta = np.array([0.3, -1.0, -2.0])
    act = ref.sparsemap_active_set(theta, at_most_one_np)
    np.testing.assert_allclose(act.mu, [0.3, 0.0, 0.0], rtol=0, atol=PROPERTY_ATOL)
    expected = np.diag([1.0, 0.0, 0.0])
    np.testing.assert_allclose(finite_difference_jacobian(lambda t: ref.sparsemap_active_set(t, at_most_one_np).mu, theta), expected,
                               rtol=0, atol=FD_ATOL)
    np.testing.assert_allclose(sparsemap_jacobian(act), expected, rtol=0, atol=FD_ATOL)
    auto = torch.autograd.functional.jacobian(lambda t: hfy.sparsemap(t[None], at_most_one)[0], torch.from_numpy(theta))
    np.testing.assert_allclose(auto.numpy(), expected, rtol=0, atol=REFERENCE_ATOL)


def test_regulariser_danskin_and_conjugate():
    theta = torch.from_numpy(random_scores((4, N_GROUPS), 1.5, seed=6)).requires_grad_()
    w = 0.7
    reg = hfy.SparseMAP(two_groups(w), w)
    reg.conjugate(theta).sum().backward()
    mu = reg.predict(theta.detach())
    np.testing.assert_allclose(theta.grad.numpy(), mu.numpy(), rtol=0, atol=PROPERTY_ATOL)
    expected = ref.SparseMAP(two_groups_np_bonus(w), w).conjugate(theta.detach().numpy())
    np.testing.assert_allclose(reg.conjugate(theta.detach()).numpy(), expected, rtol=0, atol=REFERENCE_ATOL)
    # with a bonus, Ω subtracts the bonus of the best mixture (column generation): the loss is 0 at the
    # prediction and positive at the structures that are not it, and the reference agrees
    np.testing.assert_allclose(reg.loss(theta.detach(), mu).numpy(), 0.0, rtol=0, atol=PROPERTY_ATOL)
    y = torch.from_numpy(A_PAIRS[[0, 4, 6, 11]])
    loss = reg.loss(theta.detach(), y)
    assert (loss > 0).all()
    np.testing.assert_allclose(loss.numpy(), ref.SparseMAP(two_groups_np_bonus(w), w).loss(theta.detach().numpy(),
                                                                                           y.numpy()),
                               rtol=0, atol=REFERENCE_ATOL)
    plain = hfy.SparseMAP(two_groups())
    assert (plain.loss(theta.detach(), plain.predict(theta.detach())).abs() <= PROPERTY_ATOL).all()


def test_energy_needs_a_reference_point():
    X, q = torch.randn(N_GROUPS, 3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="reference_point"):
        hfy.energy(q, X, 1.0, hfy.SparseMAP(two_groups()))
    ybar = torch.from_numpy(A_PAIRS.mean(0))
    assert torch.isfinite(hfy.energy(q, X, 1.0, hfy.SparseMAP(two_groups(), reference_point=ybar)))


# --- Ω with a bonus for a user's structures: column generation with the MAP oracle ----------------------------


def two_group_points(rng, sizes=(1, 2, 3, 5, 12)):
    """Points of the two-group polytope: mixtures of 1 (a structure), 2, ... 12 random structures."""
    return np.stack([A_PAIRS[rng.choice(len(PAIRS), s, replace=False)].T @ rng.dirichlet(np.full(s, 0.7))
                     for s in sizes for _ in range(2)])


@pytest.mark.parametrize("w", [0.7, -0.4, 2.5])
def test_omega_with_a_bonus_triangle(w):
    """Ω(μ) = ½‖μ‖² − V_w(μ): column generation (torch and reference) against the program over all 12
    structures (cvxpy), at structures, on faces and inside the polytope, along either dim."""
    mu = two_group_points(np.random.default_rng(7))
    bonus = np.array([oracle_bonus(row, A_PAIRS, B_PAIRS, w) for row in mu])
    omega_ref = ref.SparseMAP(two_groups_np_bonus(w), w).omega(mu)
    np.testing.assert_allclose(omega_ref, 0.5 * (mu * mu).sum(1) - bonus, rtol=0, atol=ORACLE_ATOL)
    reg = hfy.SparseMAP(two_groups(w), w)
    np.testing.assert_allclose(reg.omega(torch.from_numpy(mu)).numpy(), omega_ref, rtol=0, atol=REFERENCE_ATOL)
    np.testing.assert_allclose(reg.omega(torch.from_numpy(mu.T), dim=0).numpy(), omega_ref, rtol=0,
                               atol=REFERENCE_ATOL)
    # at a structure the only mixture is the structure: V_w(a_s) = w b_s
    np.testing.assert_allclose(reg.omega(torch.from_numpy(A_PAIRS)).numpy(), 1.0 - w * B_PAIRS, rtol=0,
                               atol=REFERENCE_ATOL)


def test_omega_by_columns_on_random_structure_families():
    """Random families of 0/1 structures with real or integer features, and points mixed from a few of
    them with weights down to about 1e-7 (Dirichlet(0.2)): column generation against the program over the
    whole family (cvxpy), with no failure (HiGHS's presolve called one of these restricted programs, the
    54th, infeasible)."""
    rng = np.random.default_rng(5)
    for _ in range(60):
        n, m = int(rng.integers(3, 12)), int(rng.integers(2, 40))
        A = np.unique((rng.random((m, n)) < rng.uniform(0.2, 0.7)).astype(float), axis=0)
        b = rng.choice([rng.normal(size=len(A)), rng.integers(-2, 3, size=len(A)).astype(float)])
        w = float(rng.choice([0.3, -1.7, 5.0, 1e-3]))

        def family(v, A=A, b=b, w=w):
            best = int(np.argmax(A @ v + w * b))
            return A[best], b[best]

        support = int(rng.integers(1, len(A) + 1))
        picked = rng.choice(len(A), support, replace=False)
        mu = A[picked].T @ rng.dirichlet(np.full(support, rng.choice([0.2, 1.0])))
        expected = 0.5 * mu @ mu - oracle_bonus(mu, A, b, w)
        assert abs(float(ref.SparseMAP(family, w).omega(mu)) - expected) <= ORACLE_ATOL


@pytest.mark.parametrize("w, exactly_k", [(0.6, True), (-0.5, True), (1.2, False)])
def test_omega_by_columns_meets_the_lattice_program(w, exactly_k):
    """Budgeted Viterbi handed to the general regulariser as a user's oracle: column generation gives the
    value of the program on the Viterbi lattice that SequentialKSubsets solves, and the same losses."""
    n, k = 14, 4
    seq = hfy.SequentialKSubsets(k, w, exactly_k)
    general = hfy.SparseMAP(lambda v: hfy.budgeted_viterbi(v, k, w, exactly_k), w)
    theta = torch.from_numpy(random_scores((6, n), 0.6, seed=3))
    mu = seq.predict(theta)
    assert ((mu > 1e-6) & (mu < 1 - 1e-6)).any(-1).all()  # fractional rows: the programs have work to do
    np.testing.assert_allclose(general.omega(mu).numpy(), seq.omega(mu).numpy(), rtol=0, atol=REFERENCE_ATOL)
    y = hfy.budgeted_viterbi(torch.from_numpy(random_scores((6, n), 1.0, seed=4)), k, w, exactly_k)[0]
    for target in (mu, y, 0.5 * (mu + y)):
        np.testing.assert_allclose(general.loss(theta, target).numpy(), seq.loss(theta, target).numpy(), rtol=0,
                                   atol=REFERENCE_ATOL)


def test_omega_by_columns_is_convex_with_its_gradient():
    """V_w is concave and piecewise linear, so Ω is convex: the gradient autograd returns (μ minus the
    program's prices) is a subgradient, Ω(ν) >= Ω(μ) + ∇Ω(μ)ᵀ(ν − μ) everywhere in the polytope, and it is
    the directional derivative inside a linear piece (random points inside the polytope)."""
    w = 0.9
    reg = hfy.SparseMAP(two_groups(w), w)
    rng = np.random.default_rng(11)
    mu = torch.from_numpy(two_group_points(rng)).requires_grad_()
    reg.omega(mu).sum().backward()
    others = torch.from_numpy(two_group_points(rng))
    with torch.no_grad():
        for i in range(mu.shape[0]):
            gap = reg.omega(others) - reg.omega(mu[i]) - (others - mu[i]) @ mu.grad[i]
            assert (gap >= -PROPERTY_ATOL).all()
    inside = torch.from_numpy(A_PAIRS.T @ rng.dirichlet(np.ones(len(PAIRS)), size=4).T).T
    inside.requires_grad_()
    reg.omega(inside).sum().backward()
    direction = torch.from_numpy(two_group_points(rng, (12, 12))) - inside.detach()
    with torch.no_grad():
        for i in range(inside.shape[0]):
            step = FD_STEP * direction[i]
            slope = (reg.omega(inside[i] + step) - reg.omega(inside[i] - step)) / (2 * FD_STEP)
            assert abs(float(slope - inside.grad[i] @ direction[i])) <= FD_ATOL
    # gradcheck through the mixture weights (a coordinate step of μ itself would leave the polytope)
    logits = torch.from_numpy(rng.normal(size=(3, len(PAIRS)))).requires_grad_()
    structures = torch.from_numpy(A_PAIRS)
    assert torch.autograd.gradcheck(lambda r: reg.omega(torch.softmax(r, -1) @ structures), (logits,), **GRADCHECK)


def test_omega_by_columns_errors_and_precision():
    """Outside the polytope, a clear error naming the argument (`mu` for Ω, `y` for the loss), in both
    layers; marginals computed in float32 or bfloat16 miss the polytope by rounding and are accepted."""
    w = 0.7
    reg, reg_ref = hfy.SparseMAP(two_groups(w), w), ref.SparseMAP(two_groups_np_bonus(w), w)
    outside = [np.full(N_GROUPS, 2 / N_GROUPS),  # the right total, but not one unit per group
               np.r_[np.full(G1, 0.5), np.zeros(G2)],  # 1.5 units in the first group, none in the second
               np.r_[1.2, np.zeros(G1 - 1), 1.0, np.zeros(G2 - 1)],  # an entry above 1
               np.r_[np.nan, np.zeros(N_GROUPS - 1)]]
    theta = torch.zeros(N_GROUPS, dtype=torch.float64)
    for mu in outside:
        with pytest.raises(ValueError, match="`mu`"):
            reg.omega(torch.from_numpy(mu))
        with pytest.raises(ValueError, match="`mu`"):
            reg_ref.omega(mu)
        with pytest.raises(ValueError, match="`y`"):
            reg.loss(theta, torch.from_numpy(mu))
        with pytest.raises(ValueError, match="`y`"):
            reg_ref.loss(theta.numpy(), mu)
    assert reg.omega(torch.zeros(0, N_GROUPS, dtype=torch.float64)).shape == (0,)
    with pytest.raises(ValueError, match="`w`"):
        ref.SparseMAP(two_groups_np_bonus(1.0), math.inf).omega(A_PAIRS[0])
    scores = torch.from_numpy(random_scores((4, N_GROUPS), 1.0, seed=12))
    exact = reg.loss(scores, reg.predict(scores))
    for dtype in (torch.float32, torch.bfloat16):
        low = scores.to(dtype)
        loss = reg.loss(low, reg.predict(low))
        assert loss.dtype == dtype and torch.isfinite(loss).all()
        np.testing.assert_allclose(loss.double().numpy(), exact.numpy(), rtol=0, atol=8 * dtype_atol(dtype))


def test_energy_constant_with_a_bonus_for_a_users_structures():
    """The 'fy' constant of the energy evaluates Ω at the reference point: with budgeted Viterbi as the
    user's oracle and the barycentre as reference point, the energy is that of SequentialKSubsets."""
    n, k, w = 9, 3, 0.8
    seq = hfy.SequentialKSubsets(k, w)
    general = hfy.SparseMAP(lambda v: hfy.budgeted_viterbi(v, k, w), w,
                            reference_point=seq.reference_point(n, torch.zeros(n, dtype=torch.float64)))
    X = torch.from_numpy(random_scores((n, 5), 1.0, seed=13))
    q = torch.from_numpy(random_scores((3, 5), 1.0, seed=14))
    np.testing.assert_allclose(hfy.energy(q, X, 2.0, general).numpy(), hfy.energy(q, X, 2.0, seq).numpy(), rtol=0,
                               atol=REFERENCE_ATOL)
    # the program at the reference point is remembered: evaluating the constant again calls no oracle
    calls = []
    general.map_oracle = lambda v: calls.append(v) or hfy.budgeted_viterbi(v, k, w)
    point = general.reference_point(n, X)
    assert general.omega(point).item() == pytest.approx(seq.omega(point).item(), abs=REFERENCE_ATOL) and not calls
    other = seq.predict(q @ X.T)
    np.testing.assert_allclose(general.omega(other).numpy(), seq.omega(other).numpy(), rtol=0, atol=REFERENCE_ATOL)
    assert calls


# --- structured HFY: energies -----------------------------------------------------------------------------


def structured_regularisers():
    u = torch.from_numpy(np.random.default_rng(0).uniform(0.1, 0.3, 12))
    return [
        ("KSubsets(1)", hfy.KSubsets(1), 12),
        ("KSubsets(2)", hfy.KSubsets(2), 12),
        ("KSubsets(3)", hfy.KSubsets(3), 12),
        ("KSubsets(3, at most)", hfy.KSubsets(3, exactly_k=False), 12),
        ("SequentialKSubsets(2, 0)", hfy.SequentialKSubsets(2, 0.0), 12),
        ("SequentialKSubsets(2, 0.5)", hfy.SequentialKSubsets(2, 0.5), 12),
        ("SequentialKSubsets(3, -0.3, at most)", hfy.SequentialKSubsets(3, -0.3, exactly_k=False), 12),
        ("SequentialKSubsets(2, inf)", hfy.SequentialKSubsets(2, INF), 12),
        ("ConstrainedSparsemax(u)", hfy.ConstrainedSparsemax(u), 12),
        ("SparseMAP(two groups)", hfy.SparseMAP(two_groups(), reference_point=torch.from_numpy(A_PAIRS.mean(0))),
         N_GROUPS),
    ]


#: trajectories checked by :func:`test_energy_decreases_along_trajectories`: 10 regularisers × 3 β × 16 queries.
N_TRAJECTORIES = 10 * 3 * 16


@pytest.mark.usefixtures("sequential_solver")  # (both CPU solvers of sequential k-subsets)
@pytest.mark.parametrize("name,omega,n", structured_regularisers(), ids=[r[0] for r in structured_regularisers()])
def test_energy_decreases_along_trajectories(name, omega, n):
    """E(q_{t+1}) <= E(q_t) along the CCCP iteration, for 48 random trajectories per regulariser."""
    g = torch.Generator().manual_seed(7)
    X = torch.randn(n, 6, generator=g, dtype=torch.float64)
    q0 = 2.0 * torch.randn(16, 6, generator=g, dtype=torch.float64)
    for beta in (0.3, 1.0, 4.0):
        res = hfy.retrieve(q0, X, beta, omega, max_iter=10, trace=True)
        steps = res.energies[1:] - res.energies[:-1]
        assert steps.max().item() <= PROPERTY_ATOL, f"β = {beta}: energy rose by {steps.max().item():.2e}"
        assert torch.isfinite(res.energies).all()


@pytest.mark.usefixtures("sequential_solver")  # (both CPU solvers of sequential k-subsets)
@pytest.mark.parametrize("name,omega,omega_ref", [
    ("KSubsets(2)", hfy.KSubsets(2), ref.KSubsets(2)),
    ("KSubsets(3, at most)", hfy.KSubsets(3, exactly_k=False), ref.KSubsets(3, exactly_k=False)),
    ("SequentialKSubsets(2, 0.5)", hfy.SequentialKSubsets(2, 0.5), ref.SequentialKSubsets(2, 0.5)),
    ("SequentialKSubsets(3, inf)", hfy.SequentialKSubsets(3, INF), ref.SequentialKSubsets(3, INF)),
])
def test_energy_and_update_agree_with_reference(name, omega, omega_ref):
    X, q = random_scores((10, 5), 1.0, 1), random_scores((6, 5), 2.0, 2)
    e = hfy.energy(torch.from_numpy(q), torch.from_numpy(X), 0.8, omega).numpy()
    np.testing.assert_allclose(e, ref.energy(q, X, 0.8, omega_ref), rtol=0, atol=REFERENCE_ATOL)
    q1 = hfy.update(torch.from_numpy(q), torch.from_numpy(X), 0.8, omega).numpy()
    np.testing.assert_allclose(q1, ref.update(q, X, 0.8, omega_ref)[0], rtol=0, atol=REFERENCE_ATOL)


def test_ksubsets_energy_uses_the_structured_reference_point():
    """'fy': E = ½‖q‖² − β⁻¹Ω*(βXq) + ½‖Xᵀȳ‖² − β⁻¹½‖ȳ‖² with ȳ = (k/N)·1."""
    X, q = torch.from_numpy(random_scores((9, 4), 1.0, 3)), torch.from_numpy(random_scores((5, 4), 1.0, 4))
    beta, k = 1.7, 3
    ybar = torch.full((9,), k / 9, dtype=torch.float64)
    theta = beta * q @ X.T
    mu = hfy.ksubsets(theta, k)
    conj = (theta * mu).sum(-1) - 0.5 * (mu * mu).sum(-1)
    expected = 0.5 * (q * q).sum(-1) - conj / beta + 0.5 * (ybar @ X).square().sum() - 0.5 * ybar.square().sum() / beta
    np.testing.assert_allclose(hfy.energy(q, X, beta, hfy.KSubsets(k)).numpy(), expected.numpy(), rtol=0,
                               atol=REFERENCE_ATOL)


def test_ksubsets_energy_with_a_mask_matches_the_unmasked_memories():
    X, q = torch.from_numpy(random_scores((8, 5), 1.0, 5)), torch.from_numpy(random_scores((3, 5), 1.0, 6))
    mask = torch.tensor([True] * 6 + [False] * 2)
    masked = hfy.energy(q, X, 1.3, hfy.KSubsets(2), mask=mask)
    np.testing.assert_allclose(masked.numpy(), hfy.energy(q, X[mask], 1.3, hfy.KSubsets(2)).numpy(), rtol=0,
                               atol=REFERENCE_ATOL)
    expected = ref.energy(q.numpy(), X.numpy(), 1.3, ref.KSubsets(2), mask=mask.numpy())
    np.testing.assert_allclose(masked.numpy(), expected, rtol=0, atol=REFERENCE_ATOL)
    np.testing.assert_allclose(hfy.update(q, X, 1.3, hfy.KSubsets(2), mask=mask).numpy(),
                               hfy.update(q, X[mask], 1.3, hfy.KSubsets(2)).numpy(), rtol=0, atol=REFERENCE_ATOL)


# --- structured HFY: margins and association retrieval ------------------------------------------------


def test_update_returns_the_sum_of_the_retrieved_patterns():
    """Integral marginals with Σμ = k: q ← Xᵀμ is a sum of k patterns, never their average."""
    X = torch.from_numpy(random_scores((6, 4), 1.0, 7))
    q = gap_scaled_queries(X, 2, 5, 1.0, 1.5, seed=0)
    q1, mu = hfy.update(q, X, 1.0, hfy.KSubsets(2), return_weights=True)
    top = (q @ X.T).topk(2, dim=-1).indices
    assert ((mu == 0) | (mu == 1)).all() and (mu.sum(-1) == 2).all()
    np.testing.assert_allclose(q1.numpy(), X[top].sum(1).numpy(), rtol=0, atol=REFERENCE_ATOL)
    assert (q1 - X[top].mean(1)).abs().max().item() > 0.1


def gap_scaled_queries(X, k, n_queries, beta, gap, seed):
    """Random queries rescaled so that the k-gap of βXq equals ``gap`` times a factor in [1, 2]."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n_queries, X.shape[1], generator=g, dtype=torch.float64)
    s = (q @ X.T).sort(-1, descending=True).values
    raw = s[:, k - 1] - s[:, k]
    factor = 1.0 + torch.rand(n_queries, 1, generator=g, dtype=torch.float64)
    return q * (gap * factor / (beta * raw[:, None]))


@pytest.mark.parametrize("n", [30, 300])  # 300 > 4 × 64 runs the update's sparse top-64 path
@pytest.mark.parametrize("k", [2, 3])
def test_exact_association_retrieval_when_the_k_gap_is_at_least_one_over_beta(k, n):
    """1200 random queries per case whose k-gap of βXq is >= 1: one update gives Σ_{top-k} x_i exactly."""
    X = torch.from_numpy(random_scores((n, 16), 1.0, 8 + k))
    beta = 0.7
    q = gap_scaled_queries(X, k, 1200, beta, 1.0, seed=k)
    q1 = hfy.update(q, X, beta, hfy.KSubsets(k))
    _, mu = hfy.update(q, X, beta, hfy.KSubsets(k), return_weights=True)
    top = (q @ X.T).topk(k, dim=-1).indices
    expected = X[top].sum(1)
    assert (q1 - expected).abs().max().item() <= REFERENCE_ATOL
    assert (mu.sum(-1) - k).abs().max().item() <= PROPERTY_ATOL
    # "exact": the marginals are the 0/1 indicator of the top k, bit for bit, as in the reference
    theta = beta * (q @ X.T)
    for row in range(0, 1200, 100):
        target = np.isin(np.arange(n), top[row].numpy()).astype(float)
        assert np.array_equal(ref.ksubsets(theta[row].numpy(), k), target)
    assert ((mu == 0) | (mu == 1)).all(), f"{int((((mu > 0) & (mu < 1)).any(-1)).sum())} of 1200 rows not 0/1"
    assert (mu.gather(-1, top) == 1).all()
    # just below the margin the marginals are fractional and the update is not a sum of k patterns
    q_near = gap_scaled_queries(X, k, 200, beta, 0.999 / 2.0, seed=k + 50)
    _, mu_near = hfy.update(q_near, X, beta, hfy.KSubsets(k), return_weights=True)
    assert ((mu_near > 0) & (mu_near < 1)).any(-1).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("k", [2, 5])
def test_sparse_update_with_wide_supports_matches_the_dense_update(k, dtype):
    """More than 4 × 64 memories take the update's sparse path; rows of small scores (wide supports, where
    every score of the subsample gets weight) go dense there.  Batches of such rows alone, and mixed with
    narrow rows, give the dense update's result."""
    X = torch.from_numpy(random_scores((300, 16), 1.0, 31)).to(dtype)
    g = torch.Generator().manual_seed(k)
    wide = 0.05 * torch.randn(40, 16, generator=g, dtype=torch.float64).to(dtype)
    narrow = gap_scaled_queries(X.double(), k, 40, 1.0, 1.0, seed=k).to(dtype)
    tol = REFERENCE_ATOL if dtype == torch.float64 else 1e-4
    for q in (wide, wide[:1], torch.cat([wide, narrow])):
        for beta in (0.1, 1.0):
            fast = hfy.update(q, X, beta, hfy.KSubsets(k))
            dense = hfy.update(q, X, beta, hfy.KSubsets(k), return_weights=True)[1] @ X
            assert (fast - dense).abs().max().item() <= tol


def test_update_with_constrained_sparsemax_on_many_memories():
    """Constrained sparsemax caps belong to positions: the update never restricts it to the top scores, and
    gives the dense result on more than 4 × 64 memories (it raised before)."""
    X = torch.from_numpy(random_scores((300, 16), 1.0, 32))
    q = torch.from_numpy(random_scores((5, 16), 1.0, 33))
    upper = torch.from_numpy(np.random.default_rng(34).uniform(0.05, 0.35, 300))
    omega = hfy.ConstrainedSparsemax(upper)
    q1, p = hfy.update(q, X, 1.0, omega, return_weights=True)
    np.testing.assert_allclose(hfy.update(q, X, 1.0, omega).numpy(), (p @ X).numpy(), rtol=0, atol=REFERENCE_ATOL)
    assert (p <= upper + PROPERTY_ATOL).all()


@pytest.mark.parametrize("layer", ["torch", "reference"])
def test_certify_refuses_regularisers_off_the_simplex(layer):
    """The single-memory certificate needs a map on the simplex: k-subsets output k units of mass and capped
    sparsemax cannot reach a vertex with caps below 1, so neither may certify a memory as a fixed point
    (with X = 3·I and k = 2 the update of x_0 is [3, .75, .75, .75, .75], not x_0)."""
    X = 3.0 * np.eye(5)
    assert not np.allclose(hfy.update(torch.from_numpy(X[:1]), torch.from_numpy(X), 1.0, hfy.KSubsets(2)).numpy(), X[:1])
    if layer == "torch":
        certify, Xl = hfy.certify, torch.from_numpy(X)
        regs = [hfy.KSubsets(2), hfy.ConstrainedSparsemax(torch.full((5,), 0.5, dtype=torch.float64))]
    else:
        certify, Xl = ref.certify, X
        regs = [ref.KSubsets(2), ref.ConstrainedSparsemax(np.full(5, 0.5))]
    for omega in regs:
        with pytest.raises(ValueError, match="omega"):
            certify(Xl, 1.0, omega)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_general_solver_refuses_non_finite_scores(bad):
    """NaN or ±inf gave all-NaN marginals silently; now a clear error names theta (predict, conjugate)."""
    def top_2(v):
        idx = v.topk(2, dim=-1).indices
        return torch.zeros_like(v).scatter(-1, idx, 1.0), torch.zeros(v.shape[0], dtype=v.dtype)

    theta = torch.tensor([[0.1, bad, 0.3, 0.2]], dtype=torch.float64)
    with pytest.raises(ValueError, match="`theta`"):
        hfy.sparsemap(theta, top_2)
    with pytest.raises(ValueError, match="`theta`"):
        hfy.SparseMAP(top_2).predict(theta)
    with pytest.raises(ValueError, match="`theta`"):
        hfy.SparseMAP(top_2, w=0.5).conjugate(theta)


@pytest.mark.usefixtures("sequential_solver")  # (both CPU solvers of sequential k-subsets)
def test_windows_association_retrieval():
    """k = 2, w = inf: the update returns x_i + x_{i+1} exactly when pair {i, i+1} beats every overlapping pair
    by >= 1 and every disjoint pair by >= 2 (in βXq), and is fractional otherwise."""
    X = torch.from_numpy(random_scores((10, 8), 1.0, 9))
    g = torch.Generator().manual_seed(3)
    q = 1.5 * torch.randn(400, 8, generator=g, dtype=torch.float64)
    beta = 1.0
    q1, nu = hfy.update(q, X, beta, hfy.SequentialKSubsets(2, INF), return_weights=True)
    theta = beta * q @ X.T
    pair = theta[:, :-1] + theta[:, 1:]
    best = pair.argmax(-1)
    lead = pair.gather(-1, best[:, None]) - pair
    dist = (torch.arange(9)[None, :] - best[:, None]).abs()
    ok = ((lead >= 1) | (dist != 1)).all(-1) & ((lead >= 2) | (dist < 2)).all(-1)
    assert 0 < int(ok.sum()) < 400
    expected = X[best] + X[best + 1]
    exact = (q1 - expected).abs().amax(-1) <= REFERENCE_ATOL
    integral = ((nu == 0) | (nu == 1)).all(-1)
    assert torch.equal(exact & integral, ok)


@pytest.mark.usefixtures("sequential_solver")  # (both CPU solvers of sequential k-subsets)
def test_sequential_recall_step_recovers_the_neighbour():
    """The update is a sum, so q ← Xᵀν − q removes the current pattern from the pair and leaves its successor."""
    H = torch.tensor([[1.0]])
    for _ in range(4):
        H = torch.cat([torch.cat([H, H], 1), torch.cat([H, -H], 1)], 0)
    X = H.to(torch.float64)  # 16 orthogonal ±1 patterns of dimension 16
    for c in range(1, 14):
        penalty = torch.zeros(16, dtype=torch.float64)
        penalty[c - 1] = 1e3  # the previous pattern was already used
        theta = 0.2 * X @ X[c] - penalty  # pair (c, c+1) leads overlapping pairs by 3.2, disjoint ones by 3.2
        nu = hfy.sequential_ksubsets(theta, 2, INF)
        q_next = nu @ X - X[c]
        assert torch.equal(nu, torch.eye(16, dtype=torch.float64)[[c, c + 1]].sum(0))
        assert torch.equal(q_next, X[c + 1])


def test_small_beta_limit_is_k_times_the_mean_pattern():
    X, q = torch.from_numpy(random_scores((12, 5), 1.0, 10)), torch.from_numpy(random_scores((4, 5), 1.0, 11))
    for k in (1, 3):
        q1 = hfy.update(q, X, 1e-12, hfy.KSubsets(k))
        assert (q1 - k * X.mean(0)).abs().max().item() <= PROPERTY_ATOL


# --- CUDA ------------------------------------------------------------------------------------------------


@cuda
@needs_cuda
def test_cuda_structured_update_and_general_sparsemap():
    X = torch.from_numpy(random_scores((300, 16), 1.0, 1))
    q = gap_scaled_queries(X, 2, 64, 1.0, 1.0, seed=1)
    cpu = hfy.update(q, X, 1.0, hfy.KSubsets(2))
    gpu = hfy.update(q.cuda(), X.cuda(), 1.0, hfy.KSubsets(2))
    assert (gpu.cpu() - cpu).abs().max().item() <= REFERENCE_ATOL
    theta = torch.from_numpy(random_scores((16, N_GROUPS), 1.0, 2))
    mu = hfy.sparsemap(theta.cuda(), two_groups(0.7), 0.7)
    assert (mu.cpu() - hfy.sparsemap(theta, two_groups(0.7), 0.7)).abs().max().item() <= REFERENCE_ATOL
    # Ω with the bonus (column generation on the CPU, the oracle called on the device) and its gradient
    reg = hfy.SparseMAP(two_groups(0.7), 0.7)
    on_gpu = mu.detach().clone().requires_grad_()
    reg.omega(on_gpu).sum().backward()
    on_cpu = mu.detach().cpu().requires_grad_()
    reg.omega(on_cpu).sum().backward()
    assert on_gpu.grad.device == mu.device
    assert (on_gpu.grad.cpu() - on_cpu.grad).abs().max().item() <= REFERENCE_ATOL


def _structures(n, k):
    """Every k-subset of n positions (rows, 0/1) and its adjacent pairs b."""
    import itertools

    A = np.array([[1.0 if i in s else 0.0 for i in range(n)] for s in itertools.combinations(range(n), k)])
    return A, (A[:, :-1] * A[:, 1:]).sum(1)


def _margin_slack(theta, A, b, w, s):
    """min over s' != s of score(a_s) − score(a_s') − ½‖a_s − a_s'‖² (spec §7.6, structures of equal norm)."""
    score = A @ theta + w * b
    others = np.arange(A.shape[0]) != s
    return float((score[s] - score[others] - 0.5 * ((A[s] - A[others]) ** 2).sum(1)).min())


@pytest.mark.usefixtures("sequential_solver")  # (both CPU solvers of sequential k-subsets)
@pytest.mark.parametrize("w", [-0.6, 0.3, 1.5])
def test_structured_margin_with_a_finite_bonus(w):
    """ŷ(θ) = a_s iff score(a_s) − score(a_s') >= ½‖a_s − a_s'‖² for every other structure s', with the
    score θᵀa + w·b(a) of sequential k-subsets (eq-sparsemap-margin), on random instances of both outcomes."""
    n, k = 7, 3
    A, b = _structures(n, k)
    rng = np.random.default_rng(int(10 * w) + 40)
    outcomes = {True: 0, False: 0}
    for _ in range(300):
        theta = rng.normal(size=n) * rng.choice([0.5, 1.5, 3.0])
        slack = [_margin_slack(theta, A, b, w, s) for s in range(A.shape[0])]
        best = int(np.argmax(slack))
        if abs(slack[best]) < 1e-9:  # (on the boundary either outcome is within rounding)
            continue
        mu = hfy.sequential_ksubsets(torch.from_numpy(theta), k, w).numpy()
        holds = slack[best] > 0
        assert (np.abs(mu - A[best]).max() <= 1e-12) == holds
        if not holds:  # then no structure is the output
            assert np.abs(mu - A).max(1).min() > 1e-9
        outcomes[holds] += 1
    assert min(outcomes.values()) >= 30, outcomes


@pytest.mark.usefixtures("sequential_solver")  # (both CPU solvers of sequential k-subsets)
@pytest.mark.parametrize("name,omega,w", [("KSubsets(3)", hfy.KSubsets(3), 0.0),
                                          ("SequentialKSubsets(3, 0.4)", hfy.SequentialKSubsets(3, 0.4), 0.4),
                                          ("SequentialKSubsets(3, -0.5)", hfy.SequentialKSubsets(3, -0.5), -0.5)])
def test_associations_are_fixed_points_iff_the_margin_holds_there(name, omega, w):
    """Spec §7.6 part 2: Xᵀa_s is a fixed point of the structured update iff the margin inequality holds at
    q = Xᵀa_s (with N <= D generic memories, Xᵀy = Xᵀa_s forces y = a_s: the structured hull condition).
    Every structure of random instances, at β giving both outcomes."""
    n, d, k = 7, 10, 3
    A, b = _structures(n, k)
    rng = np.random.default_rng(5)
    outcomes = {True: 0, False: 0}
    for trial in range(12):
        X = torch.from_numpy(rng.normal(size=(n, d)) / math.sqrt(d))
        beta = float(rng.choice([0.5, 1.0, 2.0, 4.0]))
        Q = torch.from_numpy(A) @ X  # every association Xᵀa_s
        fixed = (hfy.update(Q, X, beta, omega) - Q).abs().amax(-1) <= 1e-10
        for s in range(A.shape[0]):
            slack = _margin_slack(beta * (X @ Q[s]).numpy(), A, b, w, s)
            if abs(slack) < 1e-9:
                continue
            assert bool(fixed[s]) == (slack > 0), (trial, s, slack)
            outcomes[slack > 0] += 1
    assert min(outcomes.values()) >= 30, outcomes


def _structured_triples():
    u = np.random.default_rng(3).uniform(0.2, 0.5, 6)
    return [
        ("KSubsets(2)", oracle.KSubsets(2), ref.KSubsets(2), hfy.KSubsets(2)),
        ("KSubsets(3, at most)", oracle.KSubsets(3, False), ref.KSubsets(3, False), hfy.KSubsets(3, False)),
        ("ConstrainedSparsemax", oracle.ConstrainedSparsemax(u), ref.ConstrainedSparsemax(u),
         hfy.ConstrainedSparsemax(torch.from_numpy(u))),
        ("ConstrainedSparsemax with floors", oracle.ConstrainedSparsemax(u, 0.3 * u), ref.ConstrainedSparsemax(u, 0.3 * u),
         hfy.ConstrainedSparsemax(torch.from_numpy(u), torch.from_numpy(0.3 * u))),
        ("SequentialKSubsets(2, 0.3)", oracle.SequentialKSubsets(2, 0.3), ref.SequentialKSubsets(2, 0.3),
         hfy.SequentialKSubsets(2, 0.3)),
        ("SequentialKSubsets(3, -0.4, at most)", oracle.SequentialKSubsets(3, -0.4, False),
         ref.SequentialKSubsets(3, -0.4, False), hfy.SequentialKSubsets(3, -0.4, False)),
        ("SequentialKSubsets(2, inf)", oracle.SequentialKSubsets(2, INF), ref.SequentialKSubsets(2, INF),
         hfy.SequentialKSubsets(2, INF)),
    ]


@pytest.mark.usefixtures("sequential_solver")  # (both CPU solvers of sequential k-subsets)
@pytest.mark.parametrize("name,orc,reference,fast", _structured_triples(), ids=[t[0] for t in _structured_triples()])
def test_structured_regularisers_in_three_layers(name, orc, reference, fast):
    """The oracle regularisers (the quadratic programs, solved by cvxpy) agree with the reference and the
    torch path on the prediction, Ω*, the energy and one update, and the loss is 0 at a structure predicted
    exactly (with the bonus counted)."""
    theta = random_scores((3, 6), 1.5, 21)
    np.testing.assert_allclose(orc.predict(theta), reference.predict(theta), rtol=0, atol=ORACLE_ATOL)
    np.testing.assert_allclose(orc.conjugate(theta), reference.conjugate(theta), rtol=0, atol=ORACLE_ATOL)
    np.testing.assert_allclose(fast.conjugate(torch.from_numpy(theta)).numpy(), reference.conjugate(theta), rtol=0,
                               atol=REFERENCE_ATOL)
    X, q = random_scores((6, 4), 1.0, 22), random_scores((2, 4), 1.0, 23)
    e_orc = oracle.energy(q, X, 0.8, orc)
    np.testing.assert_allclose(e_orc, ref.energy(q, X, 0.8, reference), rtol=0, atol=ORACLE_ATOL)
    np.testing.assert_allclose(e_orc, hfy.energy(torch.from_numpy(q), torch.from_numpy(X), 0.8, fast).numpy(), rtol=0,
                               atol=ORACLE_ATOL)
    q1, _ = oracle.update(q, X, 0.8, orc)
    np.testing.assert_allclose(q1, hfy.update(torch.from_numpy(q), torch.from_numpy(X), 0.8, fast).numpy(), rtol=0,
                               atol=ORACLE_ATOL)
    if not name.startswith("ConstrainedSparsemax"):  # (caps below 1: no structure is a vertex of its domain)
        k = 2 if "(2" in name else 3
        y = np.zeros((1, 6))
        y[0, [1, 2, 4][:k]] = 1.0
        planted = 40.0 * y - 20.0
        np.testing.assert_allclose(orc.loss(planted, y), 0.0, rtol=0, atol=ORACLE_ATOL)
        np.testing.assert_allclose(fast.loss(torch.from_numpy(planted), torch.from_numpy(y)).numpy(), 0.0, rtol=0,
                                   atol=1e-9)


@settings(max_examples=80, deadline=None)
@given(st.integers(2, 9), st.integers(0, 10**6))
def test_general_solver_properties(n, seed):
    """The general active set with a top-k oracle, on random scores of random scale (hypothesis): the
    marginals lie in the k-subsets polytope (0 <= μ <= 1, Σ μ = k), equal the k-subsets projection, and are
    permutation-equivariant."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, n))
    theta = torch.from_numpy(rng.normal(size=(3, n)) * rng.choice([0.1, 1.0, 10.0]))

    def top_k(v):
        idx = v.topk(k, dim=-1).indices
        return torch.zeros_like(v).scatter(-1, idx, 1.0), torch.zeros(v.shape[0], dtype=v.dtype)

    mu = hfy.SparseMAP(top_k).predict(theta)
    assert (mu >= -PROPERTY_ATOL).all() and (mu <= 1 + PROPERTY_ATOL).all()
    np.testing.assert_allclose(mu.sum(-1).numpy(), k, rtol=0, atol=PROPERTY_ATOL)
    np.testing.assert_allclose(mu.numpy(), hfy.ksubsets(theta, k).numpy(), rtol=0, atol=REFERENCE_ATOL)
    perm = torch.from_numpy(rng.permutation(n))
    np.testing.assert_allclose(hfy.SparseMAP(top_k).predict(theta[:, perm]).numpy(), mu[:, perm].numpy(), rtol=0,
                               atol=REFERENCE_ATOL)
