"""The benchmark module: the structured suite runs at any bonus, and its command line passes the bonus on."""

from __future__ import annotations

import re

from hfy import bench


def test_structured_suite_runs_at_another_bonus_without_targets():
    rows = bench.bench_structured(reps=1, ks=(2,), cvxpy=False, seq_rows_reference=2, transition=1.0)
    sequential = [r for r in rows if r["case"].startswith("sequential_ksubsets")]
    assert [r["case"] for r in sequential] == ["sequential_ksubsets k=2, 256×128, w=1"]
    (row,) = sequential
    assert row["target"] is None and row["ours_ms"] > 0 and row["peer_ms"] > 0
    assert float(re.search(r"max abs\(hfy − ref\) ([^;\s]+)", row["note"]).group(1)) <= 1e-8
    assert row["note"].endswith(("; compiled solver", "; batched torch solver"))
    table = bench.format_structured_table(rows)
    (line,) = [line for line in table.splitlines() if line.startswith("| sequential_ksubsets k=2, 256×128, w=1 |")]
    assert "| – |" in line


def test_structured_command_line_passes_the_bonus(monkeypatch, capsys):
    seen = {}

    def fake(**kwargs):
        seen.update(kwargs)
        return []

    monkeypatch.setattr(bench, "bench_structured", fake)
    assert bench.main(["structured", "--no-cvxpy", "--reps", "1", "--transition", "0.5"]) == 0
    assert seen == {"reps": 1, "cvxpy": False, "transition": 0.5}
    assert "hfy.bench structured" in capsys.readouterr().out
