"""Compiled CPU kernels (numba), used by the torch fast path for CPU tensors where a solver is a long
sequence of small steps per row (the active set of sequential k-subsets).

numba is optional (the ``jit`` extra): without it, or with the environment variable ``HFY_JIT=0``, the
batched torch solvers run instead, with the same results.  The kernels are compiled on first use and
cached next to the module (about 20 s, once).
"""

from __future__ import annotations

import os

_loaded = {}


def enabled() -> bool:
    """Whether the compiled kernels are used: numba importable and ``HFY_JIT`` not set to 0."""
    if os.environ.get("HFY_JIT", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if "sequential" not in _loaded:
        try:
            from . import sequential as module
        except ImportError:  # numba is not installed
            module = None
        _loaded["sequential"] = module
    return _loaded["sequential"] is not None


def sequential_kernels():
    """The compiled sequential k-subsets module, or None (see :func:`enabled`)."""
    return _loaded["sequential"] if enabled() else None
