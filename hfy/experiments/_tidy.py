"""Tidy result rows shared by the experiment harnesses: one row per (setting, seed, metric).

The columns follow the project's results format: ``experiment, dataset, method,
omega, omega_param, psi, beta, N, sigma, k, seed, tier, parity, metric, value,
hfy_version``.  Settings that do not apply are NaN (numbers) or '' (strings).
"""

from __future__ import annotations

import csv
import gzip
import math
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import hfy

COLUMNS: tuple = ("experiment", "dataset", "method", "omega", "omega_param", "psi", "beta", "N", "sigma", "k",
                  "seed", "tier", "parity", "metric", "value", "hfy_version")

_NUMERIC = ("omega_param", "beta", "N", "sigma", "k", "seed", "value")


def row(**fields) -> Dict[str, object]:
    """One result row with every column present (missing numbers NaN, missing strings '').

    Raises
    ------
    ValueError
        If a field is not one of :data:`COLUMNS`.
    """
    unknown = set(fields) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown result columns: {sorted(unknown)}")
    out: Dict[str, object] = {}
    for name in COLUMNS:
        default = math.nan if name in _NUMERIC else ""
        out[name] = fields.get(name, default)
    if not out["hfy_version"]:
        out["hfy_version"] = hfy.__version__
    return out


def _open(path, mode: str):
    if str(path).endswith(".gz"):
        return gzip.open(path, mode + "t", newline="", encoding="utf-8")
    return open(path, mode, newline="", encoding="utf-8")


def write_csv(rows: Iterable[Dict[str, object]], path) -> None:
    """Write rows to ``path`` with the columns in :data:`COLUMNS` order (gzip-compressed if it ends in '.gz')."""
    with _open(path, "w") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow({name: r.get(name, "") for name in COLUMNS})


def read_csv(path) -> List[Dict[str, object]]:
    """Read rows written by :func:`write_csv`; numeric columns come back as floats."""
    rows = []
    with _open(path, "r") as fh:
        for r in csv.DictReader(fh):
            for name in _NUMERIC:
                r[name] = float(r[name]) if r[name] not in ("", None) else math.nan
            rows.append(r)
    return rows


def select(rows: Sequence[Dict[str, object]], **match) -> List[Dict[str, object]]:
    """The rows whose columns equal every ``match`` value (floats compared with ==)."""
    return [r for r in rows if all(r[k] == v for k, v in match.items())]


def stored_path(name: str) -> Optional[Path]:
    """Path of a results file stored with the book (``book/experiments/data/<name>``), or None.

    The file is found next to the package when hfy runs from a source checkout
    (an editable install); an installed wheel has no stored results.
    """
    path = Path(__file__).resolve().parents[2] / "book" / "experiments" / "data" / name
    return path if path.is_file() else None
