"""The root ``conftest.py`` shim turns MyST chapters into notebooks for nbmake.

It relies on nbmake internals (``nbmake.pytest_items.NotebookItem``), so these
tests guard against an nbmake upgrade silently collecting nothing.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

HEADER = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
    format_version: 0.13
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# {title}

```{{code-cell}} ipython3
{code}
```
"""


def load_root_conftest():
    """Import the repository's root conftest.py under its own name (tests/ has a conftest too)."""
    spec = importlib.util.spec_from_file_location("hfy_root_conftest", ROOT / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_pytest(args, cwd):
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_is_myst_notebook():
    shim = load_root_conftest()
    assert shim.is_myst_notebook(ROOT / "book" / "models" / "sparsemax.md")
    assert not shim.is_myst_notebook(ROOT / "book" / "notation.md")
    assert not shim.is_myst_notebook(ROOT / "conftest.py")


def test_is_myst_notebook_needs_both_keys(tmp_path):
    shim = load_root_conftest()
    only_jupytext = tmp_path / "a.md"
    only_jupytext.write_text("---\njupytext:\n  formats: md\n---\n# a\n", encoding="utf-8")
    no_front_matter = tmp_path / "b.md"
    no_front_matter.write_text("# b\n\nkernelspec and jupytext in prose only\n", encoding="utf-8")
    full = tmp_path / "c.md"
    full.write_text(HEADER.format(title="c", code="1"), encoding="utf-8")
    assert not shim.is_myst_notebook(only_jupytext)
    assert not shim.is_myst_notebook(no_front_matter)
    assert shim.is_myst_notebook(full)


def test_collects_every_chapter_with_a_jupytext_header():
    shim = load_root_conftest()
    expected = {p.relative_to(ROOT).as_posix() for p in (ROOT / "book").rglob("*.md")
                if "_build" not in p.parts and shim.is_myst_notebook(p)}
    assert "book/models/sparsemax.md" in expected
    result = run_pytest(["--nbmake", "--collect-only", "-q", "book"], cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    collected = {line.split("::", 1)[0] for line in result.stdout.splitlines() if "::" in line}
    assert collected == expected


def test_a_passing_chapter_passes_and_a_failing_one_fails(tmp_path):
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (tmp_path / "good.md").write_text(HEADER.format(title="good", code="x = 1 + 1\nassert x == 2"),
                                      encoding="utf-8")
    (tmp_path / "bad.md").write_text(HEADER.format(title="bad", code="assert False"), encoding="utf-8")
    (tmp_path / "prose.md").write_text("# not a notebook\n", encoding="utf-8")
    report = tmp_path / "report.xml"
    result = run_pytest(["--nbmake", "--rootdir", str(tmp_path), f"--junitxml={report}", "."], cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    outcomes = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        failed = case.find("failure") is not None or case.find("error") is not None
        outcomes[case.get("name")] = "failed" if failed else "passed"
    assert outcomes == {"good.md": "passed", "bad.md": "failed"}, (outcomes, result.stdout)
    assert (tmp_path / ".nbtest" / "good.ipynb").exists()


@pytest.mark.parametrize("flag", [[], ["--collect-only", "-q"]], ids=["run", "collect"])
def test_without_nbmake_chapters_are_not_collected(tmp_path, flag):
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (tmp_path / "good.md").write_text(HEADER.format(title="good", code="assert True"), encoding="utf-8")
    result = run_pytest(["--rootdir", str(tmp_path), *flag, "."], cwd=tmp_path)
    assert result.returncode == 5, result.stdout + result.stderr  # pytest: no tests collected
