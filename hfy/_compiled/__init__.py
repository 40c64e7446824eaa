"""Compiled CPU kernels (numba), used by the torch fast path for CPU tensors where a solver is a long
sequence of small steps per row: the active set of sequential k-subsets (:mod:`.sequential`) and the
k-subsets threshold (:mod:`.capped`).

numba is optional (the ``jit`` extra): without it, or with the environment variable ``HFY_JIT=0``, the
batched torch solvers run instead, with the same results.  The kernels are compiled on first use and
cached next to their modules (a few seconds, once).
"""

from __future__ import annotations

import importlib
import os

_loaded = {}

#: the kernel modules of this package
MODULES = ("sequential", "capped")


def enabled() -> bool:
    """Whether the compiled kernels are used: numba importable and ``HFY_JIT`` not set to 0."""
    return kernels("sequential") is not None


def kernels(name: str):
    """The compiled kernel module ``name`` (one of :data:`MODULES`), or None: numba missing, or ``HFY_JIT=0``."""
    if os.environ.get("HFY_JIT", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    if name not in _loaded:
        if name not in MODULES:
            raise ValueError(f"no compiled kernels named {name!r}; known: {MODULES}")
        try:
            _loaded[name] = importlib.import_module(f"{__name__}.{name}")
        except ImportError:  # numba is not installed
            _loaded[name] = None
    return _loaded[name]
