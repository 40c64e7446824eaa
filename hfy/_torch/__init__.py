"""Private modules of the torch fast path; the public API is re-exported by :mod:`hfy`."""
