"""Shared settings of the unit tests.

Hypothesis runs derandomised (a fixed seed per test), so a red test is red on
every machine, and without deadlines (the first call of a map may be slow
while torch warms up).  Each property test sets its own ``max_examples``.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "hfy",
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("hfy")


@pytest.fixture(params=["sorted", "newton"])
def small_batch_path(request, monkeypatch):
    """The test runs twice: every batch of sparsemax and 1.5-entmax sorted, and every batch through the
    Newton iteration, whatever its size (see ``SPARSEMAX_SORT_SIZE`` and ``ENTMAX15_SORT_SIZE``)."""
    from hfy._torch import entmax as fast

    size = 10**18 if request.param == "sorted" else -1
    monkeypatch.setattr(fast, "SPARSEMAX_SORT_SIZE", size)
    monkeypatch.setattr(fast, "ENTMAX15_SORT_SIZE", size)
    return request.param


@pytest.fixture(params=["compiled", "batched"])
def sequential_solver(request, monkeypatch):
    """The test runs twice: with CPU scores solved by the compiled row-by-row active set of sequential
    k-subsets (:mod:`hfy._compiled.sequential`, skipped without numba), and by the batched torch solver
    (``HFY_JIT=0``), the one CUDA tensors always use."""
    import hfy._compiled as compiled

    if request.param == "compiled":
        monkeypatch.setenv("HFY_JIT", "1")
        if not compiled.enabled():
            pytest.skip("numba is not installed: no compiled kernels")
    else:
        monkeypatch.setenv("HFY_JIT", "0")
    return request.param
