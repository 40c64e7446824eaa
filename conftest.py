"""Root pytest configuration.

``pytest --nbmake book`` must run the MyST-markdown chapters, but nbmake only
collects ``.ipynb`` files.  This shim converts each chapter that carries a
jupytext header (``kernelspec``) into a notebook under ``.nbtest/`` and hands it
to nbmake's own ``NotebookItem``.  It relies on nbmake internals
(``nbmake.pytest_items.NotebookItem``, nbmake >=1.5.5,<2); ``tests/test_conftest_shim.py``
checks that the shim still collects and runs a chapter.
"""

from __future__ import annotations

from pathlib import Path

import pytest

NBTEST_DIR = ".nbtest"


def is_myst_notebook(path: Path) -> bool:
    """True for a markdown file whose front matter declares a jupytext kernel."""
    if path.suffix != ".md":
        return False
    try:
        head = path.read_text(encoding="utf-8")[:2000]
    except OSError:
        return False
    if not head.startswith("---"):
        return False
    front = head.split("---", 2)[1] if head.count("---") >= 2 else ""
    return "jupytext" in front and "kernelspec" in front


class MystNotebookFile(pytest.File):
    """A MyST chapter, converted to ``.ipynb`` and run by nbmake."""

    def collect(self):
        import jupytext
        import nbformat
        from nbmake.pytest_items import NotebookItem

        root = Path(self.config.rootpath)
        try:
            rel = Path(self.path).resolve().relative_to(root.resolve())
        except ValueError:
            rel = Path(Path(self.path).name)
        target = root / NBTEST_DIR / rel.with_suffix(".ipynb")
        target.parent.mkdir(parents=True, exist_ok=True)
        notebook = jupytext.read(str(self.path))
        nbformat.write(notebook, str(target))
        yield NotebookItem.from_parent(self, filename=str(target))


def pytest_collect_file(file_path: Path, parent):
    option = parent.config.option
    if not getattr(option, "nbmake", False):
        return None
    if "_build" in file_path.parts or NBTEST_DIR in file_path.parts:
        return None
    if is_myst_notebook(file_path):
        return MystNotebookFile.from_parent(parent, path=file_path)
    return None
