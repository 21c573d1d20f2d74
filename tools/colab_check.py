"""Install the package the way a Colab notebook does, then run notebook 1 there.

`make colab-check`: builds a wheel of this repository, installs it into a
fresh virtual environment resolving pyproject.toml's version ranges (not the
lock, which `make` uses), imports it and executes notebooks/01_senet_attention
.ipynb from a folder outside the repository, so the installed package is the
one imported. Colab ships torch preinstalled; so does this check: it installs
torch==2.13.0 (the lock's CPU build) first, because an unpinned torch from PyPI
is a multi-GB CUDA build. It also installs what Colab has and the package does
not ask for: ipykernel, nbclient and nbformat to run the notebook. Prints the
time of each step; exits non-zero when a step fails.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "01_senet_attention.ipynb"
PREINSTALLED = ["torch==2.13.0"]  # as on Colab: there before the package
RUNNER = ["ipykernel", "nbclient", "nbformat"]  # Colab's own, not the package's

EXECUTE = """
import sys
import nbformat
from nbclient import NotebookClient

nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=600, kernel_name="python3").execute()
nbformat.write(nb, sys.argv[2])
print(f"executed {len(nb.cells)} cells")
"""

IMPORTED = """
import fibinet_tutorial, torch, torchkeras
print("fibinet_tutorial from", fibinet_tutorial.__file__)
print("torch", torch.__version__, "torchkeras", torchkeras.__version__)
"""


def step(title: str, cmd: list[str], cwd: Path | None = None) -> float:
    start = time.perf_counter()
    print(f"== {title}", flush=True)
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        print(out[-4000:])
        print(f"colab-check: {title} failed (exit {proc.returncode})")
        sys.exit(1)
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln]
    for line in lines[-3:]:
        print("  ", line)
    print(f"   {seconds:.0f} s", flush=True)
    return seconds


def main() -> int:
    times = {}
    with tempfile.TemporaryDirectory(prefix="colab-check-") as tmp:
        tmp = Path(tmp)
        venv, dist, work = tmp / "venv", tmp / "dist", tmp / "work"
        work.mkdir()
        py = str(venv / "bin" / "python")
        pip = [py, "-m", "pip", "install", "--quiet"]
        times["wheel"] = step(
            "build a wheel of this repository",
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
             "--wheel-dir", str(dist), str(ROOT)],
        )  # fmt: skip
        wheel = next(dist.glob("fibinet_tutorial-*.whl"))
        times["venv"] = step("a fresh venv", [sys.executable, "-m", "venv", str(venv)])
        times["torch"] = step("torch as Colab has it", [*pip, *PREINSTALLED])
        times["package"] = step(
            f"pip install {wheel.name} (pyproject.toml's ranges)", [*pip, str(wheel)]
        )
        times["runner"] = step("a notebook runner", [*pip, *RUNNER])
        times["import"] = step("import it", [py, "-c", IMPORTED], cwd=work)
        times["notebook"] = step(
            f"execute {NOTEBOOK.name}",
            [py, "-c", EXECUTE, str(NOTEBOOK), str(work / NOTEBOOK.name)],
            cwd=work,
        )
        freeze = subprocess.run(
            [py, "-m", "pip", "freeze"], capture_output=True, text=True
        ).stdout.split()
    resolved = [p for p in freeze if p.split("==")[0].lower() in _DIRECT]
    print("resolved:", ", ".join(resolved))
    print("colab-check: ok in " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
    print(f"colab-check: total {sum(times.values()):.0f} s")
    return 0


_DIRECT = {
    "torch", "numpy", "pandas", "pyarrow", "torchkeras", "accelerate", "tqdm",
    "matplotlib", "ipython", "requests", "scikit-learn",
}  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
