"""Shared settings of the unit tests.

Hypothesis runs derandomised (a fixed seed per test), so a red test is red on
every machine, and without deadlines (the first call of a map may be slow
while torch warms up).  Each property test sets its own ``max_examples``.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "hfy",
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("hfy")
