"""Harnesses of the papers' experiments, one module per book chapter in ``book/experiments``.

Each harness takes a ``tier`` ('smoke', 'book', 'full'): 'smoke' runs in the tests,
'book' inside the executed chapter (seconds), 'full' is the paper-scale protocol,
never run by default (the chapters switch it on with ``HFY_FULL=1``).
"""
