"""Build the notebooks from their .md sources: pair, execute, clean, save.

    python tools/notebooks.py build [notebooks/01_senet.md ...]   # all by default
    python tools/notebooks.py header 05_new.ipynb   # badge + install cell to paste

The .md file (jupytext) is the source. Each .ipynb is rebuilt from it, executed
from the notebooks/ folder with the project's kernel, and cleaned so GitHub
renders it well: no ANSI colour codes, no carriage-return progress frames, no
widget state, and the portable `python3` kernelspec (Colab's).
"""

from __future__ import annotations

import re
import sys
import time
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


def main(argv: list[str]) -> int:
    if argv[:1] == ["header"] and len(argv) == 2:  # what a new notebook starts with
        print(colab_badge(argv[1]) + "\n\n```python\n" + install_cell() + "\n```")
        return 0
    if not argv or argv[0] != "build":
        print(__doc__)
        return 2
    paths = [Path(p) for p in argv[1:]] or sorted(NOTEBOOKS.glob("[0-9]*.md"))
    for md in paths:
        print(f"{md.name}: executed in {build(md.resolve()):.0f} s", flush=True)
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
