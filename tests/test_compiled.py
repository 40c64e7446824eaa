"""The compiled row-by-row active set of sequential k-subsets (hfy._compiled.sequential) against the batched
torch solver, the reference and brute force: its MAP, its start, its active sets, its gradients, its fallbacks."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import hfy
import hfy._compiled as compiled
import hfy.reference as ref
from hfy._torch import sequential_ksubsets as sq
from hfy.testing import PROPERTY_ATOL, REFERENCE_ATOL, random_scores

pytestmark = pytest.mark.skipif(not compiled.enabled(), reason="numba is not installed (or HFY_JIT=0)")

TOL = 1e3 * np.finfo(np.float64).eps


def kernels():
    return compiled.sequential_kernels()


def brute_force(theta, k, w, mode):
    """The best score θᵀy + w b(y) over the structures, by enumeration."""
    n = theta.shape[0]
    best = 0.0 if mode == kernels().AT_MOST else -math.inf
    sizes = range(1, k + 1) if mode == kernels().AT_MOST else [k]
    for size in sizes:
        for sel in itertools.combinations(range(n), size):
            b = sum(1 for a, c in zip(sel, sel[1:]) if c == a + 1)
            if mode == kernels().WINDOWS and b != k - 1:
                continue
            best = max(best, float(theta[list(sel)].sum()) + (0.0 if mode == kernels().WINDOWS else w * b))
    return best


@pytest.mark.parametrize("mode_name", ["EXACTLY", "AT_MOST", "WINDOWS"])
@pytest.mark.parametrize("w", [-1.5, 0.0, 0.4, 3.0])
def test_map_kernel_matches_brute_force(mode_name, w):
    """The kernel's budgeted Viterbi (and best window) reaches the enumerated best score, its count of
    adjacent pairs is that of its positions, and the positions are distinct and ascending; ties included."""
    K = kernels()
    mode = getattr(K, mode_name)
    rng = np.random.default_rng(5)
    for n in range(1, 9):
        for k in range(1, n + 1):
            for draw in range(3):
                theta = rng.normal(size=n) if draw else np.round(rng.normal(size=n))  # integers: ties
                E, P, out = np.empty((k, n)), np.zeros((k, n), dtype=np.int64), np.zeros(k, dtype=np.int64)
                count, b = K._map(theta, k, w, mode, E, P, out)
                sel = out[:count]
                assert np.all(np.diff(sel) > 0) and (count == k or mode == K.AT_MOST)
                assert b == int(np.sum(np.diff(sel) == 1))
                score = float(theta[sel].sum()) + (0.0 if mode == K.WINDOWS else w * b)
                assert score == pytest.approx(brute_force(theta, k, w, mode), abs=1e-12)


@pytest.mark.parametrize("exactly_k", [True, False])
def test_projection_kernel_is_the_ksubsets_projection(exactly_k):
    """The start's projection (a walk down the breakpoints of the top candidates) is hfy.ksubsets, on random
    rows, rows with ties, k = N and k = 1 (sparsemax)."""
    K = kernels()
    rng = np.random.default_rng(2)
    rows = [rng.normal(size=40) * s for s in (0.05, 1.0, 10.0)] + [np.round(rng.normal(size=40)), np.zeros(40)]
    for theta in rows:
        for k in (1, 3, 17, 40):
            mu, bp = np.zeros(40), np.zeros(80)
            K._projection(theta, k, K.EXACTLY if exactly_k else K.AT_MOST, mu, bp)
            expected = ref.ksubsets(theta, k, exactly_k=exactly_k)
            np.testing.assert_allclose(mu, expected, rtol=0, atol=REFERENCE_ATOL)


def test_layout_kernel_is_the_chain_layout():
    """The kernel lays the entries out in the same order as the batched start's chain layout."""
    K = kernels()
    theta = torch.from_numpy(np.concatenate([random_scores((20, 60), 1.0, seed=1),
                                             0.2 * random_scores((20, 60), 1.0, seed=2)]))
    for k in (2, 5, 12):
        mu = hfy.ksubsets(theta, k)
        tol = sq._rounding(theta, k)
        expected = sq.chain_layout(mu, tol).numpy()
        for r in range(theta.shape[0]):
            order, key = np.zeros(60, dtype=np.int64), np.zeros(60, dtype=np.int64)
            K._layout(mu[r].numpy(), float(tol[r]), key, order, sq.LAYOUT_FILL_STEPS, sq.LAYOUT_MAX_ROUNDS)
            np.testing.assert_array_equal(order, expected[r])


@pytest.mark.parametrize("exactly_k", [True, False])
@pytest.mark.parametrize("k", [2, 5])
def test_start_kernel_is_an_affinely_independent_mixture_with_the_projection_as_mean(k, exactly_k):
    """The start's structures are admissible and distinct, their lifted Gram matrix is positive definite
    (affinely independent), and their weights sum to 1 with the k-subsets projection as mean."""
    K = kernels()
    mode = K.EXACTLY if exactly_k else K.AT_MOST
    theta = random_scores((30, 25), 1.0, seed=7)
    if not exactly_k:
        theta = theta - 0.5
    n, cap = 25, 27
    for row in theta:
        pos, cnt = np.zeros((cap, k), dtype=np.int64), np.zeros(cap, dtype=np.int64)
        feat, pi, mu = np.zeros(cap, dtype=np.int64), np.zeros(cap), np.zeros(n)
        tol = float(sq._rounding(torch.from_numpy(row[None]), k))
        S, nfrac = K._start(row, k, mode, tol, pos, cnt, feat, pi, mu, np.zeros(2 * n), np.zeros(n, dtype=np.int64),
                            np.zeros(n, dtype=np.int64), sq.LAYOUT_FILL_STEPS, sq.LAYOUT_MAX_ROUNDS)
        expected = ref.ksubsets(row, k, exactly_k=exactly_k)
        assert nfrac == int(((expected > 1e-9) & (expected < 1 - 1e-9)).sum())
        A = np.zeros((S, n))
        for s in range(S):
            sel = pos[s, :cnt[s]]
            assert np.all(np.diff(sel) > 0) and (cnt[s] == k or not exactly_k) and cnt[s] <= k
            assert feat[s] == int(np.sum(np.diff(sel) == 1))
            A[s, sel] = 1.0
        assert len({tuple(a) for a in A}) == S
        assert np.linalg.eigvalsh(A @ A.T + 1.0).min() > 1e-9
        assert pi[:S].sum() == pytest.approx(1.0, abs=1e-12)
        np.testing.assert_allclose(pi[:S] @ A, expected, rtol=0, atol=1e-9)


def batched(fn, monkeypatch):
    with monkeypatch.context() as m:
        m.setenv("HFY_JIT", "0")
        return fn()


@pytest.mark.parametrize("exactly_k", [True, False], ids=["exactly", "at-most"])
@pytest.mark.parametrize("w", [-2.0, -0.3, 0.0, 0.01, 0.5, 3.0, math.inf])
def test_compiled_agrees_with_the_batched_solver_and_the_reference(monkeypatch, w, exactly_k):
    """μ of the compiled solver equals the batched solver's and the reference's (narrow and wide supports, where
    the rows start from the mixture or from the MAP structure), and its active sets are affinely
    independent mixtures of admissible structures with mean μ."""
    if math.isinf(w) and not exactly_k:
        pytest.skip("windows have exactly k entries")
    theta = torch.from_numpy(np.concatenate([random_scores((24, 30), 1.0, seed=3),
                                             0.1 * random_scores((8, 30), 1.0, seed=4)]))
    for k in (1, 3, 7):
        fast = hfy.sequential_ksubsets(theta, k, w, exactly_k=exactly_k)
        slow = batched(lambda: hfy.sequential_ksubsets(theta, k, w, exactly_k=exactly_k), monkeypatch)
        np.testing.assert_allclose(fast.numpy(), slow.numpy(), rtol=0, atol=REFERENCE_ATOL)
        np.testing.assert_allclose(fast[:6].numpy(), ref.sequential_ksubsets(theta[:6].numpy(), k, w,
                                                                             exactly_k=exactly_k),
                                   rtol=0, atol=REFERENCE_ATOL)
        sol = sq._solve_rows(theta, k, w, exactly_k, 1000, TOL, True, True)
        np.testing.assert_allclose((sol.weights.unsqueeze(-1) * sol.structures).sum(1).numpy(), fast.numpy(),
                                   rtol=0, atol=REFERENCE_ATOL)
        A, valid = sol.structures, sol.valid
        assert bool((sol.weights[~valid] == 0).all()) and bool((sol.weights >= 0).all())
        sizes = A.sum(-1)
        assert bool(((sizes == k) | ~valid).all()) if exactly_k else bool((sizes <= k).all())
        adjacent = (A[..., :-1] * A[..., 1:]).sum(-1)
        assert torch.equal(adjacent * valid, sol.features * valid)
        if math.isinf(w):
            assert bool(((adjacent == k - 1) | ~valid).all())
        gram = (A @ A.transpose(1, 2) + 1.0) * valid.unsqueeze(-1) * valid.unsqueeze(-2)
        gram = gram + torch.diag_embed((~valid).double())
        assert bool((torch.linalg.eigvalsh(gram).amin(-1) > 1e-9).all())


@pytest.mark.parametrize("w", [-0.4, 0.3, math.inf])
def test_compiled_gradients_equal_the_batched_solver_gradients(monkeypatch, w):
    """The backward pass through the compiled solver's active sets gives the batched solver's gradients in z and
    in the bonus (generic scores: the Jacobian does not depend on which optimal mixture is held)."""
    theta = torch.from_numpy(random_scores((12, 14), 1.0, seed=9))
    g = torch.from_numpy(random_scores((12, 14), 1.0, seed=10))

    def grads():
        t = theta.clone().requires_grad_()
        if math.isinf(w):
            (hfy.sequential_ksubsets(t, 3, w) * g).sum().backward()
            return t.grad, None
        wt = torch.tensor(w, dtype=torch.float64, requires_grad=True)
        (hfy.sequential_ksubsets(t, 3, wt) * g).sum().backward()
        return t.grad, wt.grad

    fast, slow = grads(), batched(grads, monkeypatch)
    np.testing.assert_allclose(fast[0].numpy(), slow[0].numpy(), rtol=0, atol=PROPERTY_ATOL)
    if fast[1] is not None:
        assert float(fast[1]) == pytest.approx(float(slow[1]), abs=PROPERTY_ATOL)


def test_compiled_edge_cases(monkeypatch):
    """One entry; k = N; all scores tied; integer scores (many tied MAP structures); a row of huge scores."""
    cases = [(torch.zeros(3, 1, dtype=torch.float64), 1, 0.5), (torch.randn(4, 6, dtype=torch.float64), 6, 0.5),
             (torch.zeros(5, 9, dtype=torch.float64), 3, 0.2), (torch.zeros(5, 9, dtype=torch.float64), 3, -0.2),
             (torch.randint(-2, 3, (16, 11)).double(), 4, 1.0),
             (torch.tensor([[1e30, -1e30, 0.5, 0.2, 0.1, 1e30]], dtype=torch.float64), 3, 0.3)]
    for theta, k, w in cases:
        fast = hfy.sequential_ksubsets(theta, k, w)
        slow = batched(lambda: hfy.sequential_ksubsets(theta, k, w), monkeypatch)
        np.testing.assert_allclose(fast.numpy(), slow.numpy(), rtol=0, atol=REFERENCE_ATOL)
        assert bool(torch.isfinite(fast).all()) and torch.allclose(fast.sum(-1), torch.full_like(fast[:, 0], k))


def test_the_compiled_solver_is_used_on_cpu_and_can_be_switched_off(monkeypatch):
    """CPU scores go to the compiled kernel unless HFY_JIT=0 or numba is missing (then the batched solver gives
    the same result); a start marked ``pinned`` always runs the batched solver."""
    from hfy._torch import sparsemap as sm

    theta = torch.from_numpy(random_scores((6, 10), 1.0, seed=1))
    expected = hfy.sequential_ksubsets(theta, 3, 0.2)
    calls = []
    K = kernels()
    solve = K.solve

    def counting(*args):
        calls.append(args[1:4])
        return solve(*args)

    monkeypatch.setattr(K, "solve", counting)
    hfy.sequential_ksubsets(theta, 3, 0.2)
    hfy.SequentialKSubsets(3, 0.2).conjugate(theta)
    assert calls == [(3, 0.2, K.EXACTLY)] * 2
    monkeypatch.setenv("HFY_JIT", "0")
    np.testing.assert_allclose(hfy.sequential_ksubsets(theta, 3, 0.2).numpy(), expected.numpy(), rtol=0,
                               atol=REFERENCE_ATOL)
    monkeypatch.setenv("HFY_JIT", "1")
    monkeypatch.setitem(compiled._loaded, "sequential", None)  # as without numba
    np.testing.assert_allclose(hfy.sequential_ksubsets(theta, 3, 0.2).numpy(), expected.numpy(), rtol=0,
                               atol=REFERENCE_ATOL)
    monkeypatch.setitem(compiled._loaded, "sequential", K)
    wt = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)  # the right derivative at w = 0: pinned
    hfy.sequential_ksubsets(theta, 3, wt)
    assert len(calls) == 3  # (the pinned start's own solve at a tiny bonus, not the solve at w = 0)
    sol = sm.active_set(theta, sq._oracle(3, 0.2, True), 0.2, start=sq._start(3, 0.2, True))
    assert len(calls) == 4 and sol.structures.shape[1] > 0


def test_compiled_max_iter_raises():
    theta = torch.from_numpy(random_scores((4, 40), 0.3, seed=2))
    with pytest.raises(RuntimeError, match="`max_iter`"):
        hfy.sequential_ksubsets(theta, 6, 0.2, max_iter=1)


def test_rows_that_fill_their_slots_are_solved_again_with_more():
    """A row whose start or active set outgrows the slots is solved again with twice as many, with the same
    result (from 1 slot here; wide supports need dozens of structures)."""
    K = kernels()
    theta = np.ascontiguousarray(0.05 * random_scores((6, 40), 1.0, seed=5))
    for start in (True, False):
        rounding = sq._rounding(torch.from_numpy(theta), 9).reshape(-1).numpy()
        args = (theta, 9, 0.01, K.EXACTLY, 2000, TOL, True, start, rounding, sq.compiled_rules())
        wide = K.solve(*args)
        narrow = K.solve(*args, 1)
        assert wide[6].max() > 8
        np.testing.assert_allclose(narrow[0], wide[0], rtol=0, atol=REFERENCE_ATOL)
        np.testing.assert_allclose(narrow[0], ref.sequential_ksubsets(theta, 9, 0.01), rtol=0, atol=REFERENCE_ATOL)
