"""The notebooks: paired with their sources, executed, clean, following the template.

Executing them is nbmake's job (`make notebooks-test`); this checks what a reader
on GitHub sees and that the committed outputs match the committed sources.
"""

import re
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from notebooks import colab_badge, install_cell  # noqa: E402

SOURCES = sorted((ROOT / "notebooks").glob("[0-9]*.md"))
NAMES = [p.stem for p in SOURCES]
TEMPLATE = [
    "What you will learn",
    "Prerequisites",
    "Estimated time",
    "Summary",
    "Exercises",
    "<details>",
    "Further reading",
]


def _cells(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def test_there_are_notebooks():
    assert len(SOURCES) >= 4, NAMES


@pytest.mark.parametrize("name", NAMES)
def test_ipynb_matches_its_md_source(name):
    md = jupytext.read(ROOT / "notebooks" / f"{name}.md")
    ipynb_path = ROOT / "notebooks" / f"{name}.ipynb"
    assert ipynb_path.exists(), f"{name}.ipynb missing: run `make notebooks`"
    ipynb = nbformat.read(ipynb_path, as_version=4)
    assert _cells(ipynb) == _cells(md), (
        f"{name}.ipynb differs from {name}.md: run `make notebooks`"
    )


@pytest.mark.parametrize("name", NAMES)
def test_outputs_present_and_clean(name):
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    assert code and all(c.execution_count for c in code), "not executed"
    assert "widgets" not in nb.metadata
    assert nb.metadata["kernelspec"]["name"] == "python3"
    images = 0
    for cell in code:
        for out in cell.outputs:
            assert out.output_type != "error", cell.source[:80]
            text = out.get("text", "") + str(out.get("data", {}).get("text/plain", ""))
            assert "\x1b[" not in text, f"ANSI codes in output of {cell.source[:60]!r}"
            assert "\r" not in text, f"progress-bar frames in {cell.source[:60]!r}"
            assert "widget" not in str(out.get("data", {}).keys())
            images += "image/png" in out.get("data", {})
    assert images >= 1, "every notebook shows at least one figure"


@pytest.mark.parametrize("name", NAMES)
def test_template_badge_and_install_cell(name):
    text = (ROOT / "notebooks" / f"{name}.md").read_text()
    for heading in TEMPLATE:
        assert heading in text, f"{name}.md lacks {heading!r}"
    nb = jupytext.read(ROOT / "notebooks" / f"{name}.md")
    assert colab_badge(f"{name}.ipynb") in nb.cells[0].source
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert first_code.source.strip() == install_cell().strip()
    # images must be files made by code; only the Colab badge (inside a link) is remote
    assert not re.search(r"(?<!\[)!\[[^\]]*\]\(https?://", text), "hot-linked image"


@pytest.mark.parametrize("name", NAMES)
def test_readme_lists_the_notebook(name):
    readme = (ROOT / "README.md").read_text()
    assert f"notebooks/{name}.ipynb" in readme
    assert colab_badge(f"{name}.ipynb").split("](")[-1].rstrip(")") in readme


def _solutions():
    """Python code blocks inside <details> (exercise solutions) of every notebook."""
    found = []
    for path in SOURCES:
        for details in re.findall(r"<details>(.*?)</details>", path.read_text(), re.S):
            for code in re.findall(r"```python\n(.*?)```", details, re.S):
                found.append(pytest.param(code, id=f"{path.stem}-{len(found)}"))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("code", _solutions())
def test_exercise_solutions_run(code, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
