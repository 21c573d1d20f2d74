"""Build the notebooks from their .md sources: pair, execute, clean, save.

    python tools/notebooks.py build [notebooks/01_senet.md ...]   # all by default
    python tools/notebooks.py solutions [notebooks/01_senet.md ...]  # all by default
    python tools/notebooks.py header 05_new.ipynb   # badge + install cell to paste

The .md file (jupytext) is the source. Each .ipynb is rebuilt from it, executed
from the notebooks/ folder with the project's kernel, and cleaned so GitHub
renders it well: no ANSI colour codes, no carriage-return progress frames, no
widget state, and the portable `python3` kernelspec (Colab's).

`solutions` runs every exercise solution (a ```python block inside
<details>), each from a fresh temporary folder as the test suite does, and
writes what it printed right below it ("Output:" and a ```text block);
tests/test_notebooks.py fails when a shown output no longer matches.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
KERNEL = "fibinet-tutorial"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def clean_text(text: str) -> str:
    """Drop ANSI codes; keep only the last frame of each \\r-rewritten line."""
    text = ANSI.sub("", text)
    return "\n".join(line.split("\r")[-1] for line in text.split("\n"))


def clean(nb) -> None:
    nb.metadata.pop("widgets", None)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            out.get("metadata", {}).pop(
                "application/vnd.jupyter.widget-view+json", None
            )
            if "data" in out:
                out["data"].pop("application/vnd.jupyter.widget-view+json", None)
            if out.get("output_type") == "stream":
                out["text"] = clean_text(out["text"])


def build(md: Path, timeout: int = 900) -> float:
    """Rebuild md's .ipynb, execute it, clean it; return seconds spent."""
    nb = jupytext.read(md)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    start = time.perf_counter()
    NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=KERNEL,
        resources={"metadata": {"path": str(md.parent)}},
    ).execute()
    seconds = time.perf_counter() - start
    clean(nb)
    nbformat.write(nb, md.with_suffix(".ipynb"))
    return seconds


# An exercise solution inside <details>: its code, then (once written by
# `solutions`) the output it printed.
SOLUTION = re.compile(
    r"```python\n(?P<code>.*?)```\n"
    r"(?:\nOutput:\n\n```text\n(?P<output>.*?)```\n)?",
    re.S,
)
# A number as printed: sign, digits, optional fraction and exponent.
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


@dataclass
class Solution:
    """One exercise solution of a notebook source."""

    name: str  # "<notebook stem>-<k>", k counting from 1 in the file
    code: str
    output: str | None  # the output shown below it; None when there is none
    span: tuple[int, int]  # where code and output stand in the file's text


def find_solutions(md: Path) -> list[Solution]:
    """Every ```python block inside a <details> of md, with its shown output."""
    text = Path(md).read_text()
    found = []
    for details in re.finditer(r"<details>.*?</details>", text, re.S):
        for m in SOLUTION.finditer(text, details.start(), details.end()):
            name = f"{Path(md).stem}-{len(found) + 1}"
            start, end = m.span()
            found.append(Solution(name, m["code"], m["output"], (start, end)))
    return found


def run_solution(code: str, timeout: int = 600) -> str:
    """Run a solution from a fresh temporary folder; return what it printed.

    Raises RuntimeError (with the end of stderr) when it fails.
    """
    with tempfile.TemporaryDirectory(prefix="solution-") as tmp:
        proc = subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"exit status {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc.stdout


def write_solution_outputs(md: Path) -> list[tuple[str, float]]:
    """Run md's solutions and write each one's output below it; (name, seconds)."""
    md = Path(md)
    solutions = find_solutions(md)
    text, timings = md.read_text(), []
    for s in reversed(solutions):  # from the end: earlier spans stay valid
        start = time.perf_counter()
        try:
            output = run_solution(s.code)
        except RuntimeError as err:
            raise RuntimeError(f"{md.name}, solution {s.name}: {err}") from None
        timings.append((s.name, time.perf_counter() - start))
        output += "" if output.endswith("\n") else "\n"
        block = f"```python\n{s.code}```\n\nOutput:\n\n```text\n{output}```\n"
        text = text[: s.span[0]] + block + text[s.span[1] :]
    md.write_text(text)
    return timings[::-1]


def _tokens(text: str) -> list[str]:
    """Text split into numbers and the words between them (spaces collapsed)."""
    tokens, last = [], 0
    for m in NUMBER.finditer(text):
        tokens += [" ".join(text[last : m.start()].split()), m.group()]
        last = m.end()
    return tokens + [" ".join(text[last:].split())]


def compare_outputs(shown: str, actual: str, rtol: float, atol: float) -> list[str]:
    """Where `actual` differs from `shown`; [] when they match.

    Words and integers must be equal; numbers with a decimal point or an
    exponent may differ by atol + rtol * |actual|.
    """
    a, b = _tokens(shown), _tokens(actual)
    if len(a) != len(b):
        return [f"shown {len(a) // 2} numbers, printed {len(b) // 2}"]
    problems = []
    for k, (x, y) in enumerate(zip(a, b)):
        if k % 2 == 0 or not any(c in x + y for c in ".eE"):
            if x != y:
                problems.append(f"shown {x!r}, printed {y!r}")
        elif abs(float(x) - float(y)) > atol + rtol * abs(float(y)):
            problems.append(f"shown {x}, printed {y} (beyond the float tolerance)")
    return problems


def main(argv: list[str]) -> int:
    if argv[:1] == ["header"] and len(argv) == 2:  # what a new notebook starts with
        print(colab_badge(argv[1]) + "\n\n```python\n" + install_cell() + "\n```")
        return 0
    if not argv or argv[0] not in ("build", "solutions"):
        print(__doc__)
        return 2
    paths = [Path(p) for p in argv[1:]] or sorted(NOTEBOOKS.glob("[0-9]*.md"))
    for md in paths:
        if argv[0] == "build":
            print(f"{md.name}: executed in {build(md.resolve()):.0f} s", flush=True)
            continue
        for name, seconds in write_solution_outputs(md.resolve()):
            print(f"{name}: ran in {seconds:.0f} s", flush=True)
    return 0


def repository_url() -> str:
    """The project's URL, defined once: [project.urls] Repository in pyproject."""
    text = (ROOT / "pyproject.toml").read_text()
    return re.search(r'^Repository = "([^"]+)"', text, re.M).group(1).rstrip("/")


def colab_badge(notebook: str) -> str:
    """Markdown of the 'Open in Colab' badge for notebooks/<notebook>.ipynb."""
    path = repository_url().removeprefix("https://github.com/")
    url = f"https://colab.research.google.com/github/{path}/blob/main/notebooks/{notebook}"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


def install_cell() -> str:
    """The first code cell of every notebook: installs the package on Colab only."""
    return f"""# On Colab only: install the helper package (`make` did it elsewhere)
import importlib.util
import subprocess
import sys

on_colab = "google.colab" in sys.modules
if on_colab and importlib.util.find_spec("fibinet_tutorial") is None:
    url = "git+{repository_url()}"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", url], check=True)"""


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
