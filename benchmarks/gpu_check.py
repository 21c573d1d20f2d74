"""One-shot check on a CUDA GPU (`make gpu-check`, under 5 minutes): the CUDA
tests, the layer and training-step benchmarks on the GPU, and one epoch of the
default run; writes benchmarks/GPU.md.

Runs with the machine's own Python and packages, without the lock or a venv
(a GPU machine may have no network). torchkeras, and IPython which it imports,
are installed from wheels in .whl/ when missing: `make gpu-wheels` downloads
them on a machine with network (pinned as in requirements-lock.txt, for
Python 3.12 by default). On a machine without a GPU it says so in one line and
exits 0, measuring nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "benchmarks" / "GPU.md"
# What torchkeras needs at import that a plain PyTorch image may lack.
WHEELS = (
    "torchkeras",
    "ipython",
    "ipython_pygments_lexers",
    "jedi",
    "parso",
    "matplotlib-inline",
    "pexpect",
    "ptyprocess",
    "prompt_toolkit",
    "wcwidth",
    "stack-data",
    "executing",
    "asttokens",
    "pure_eval",
    "traitlets",
)
BUDGET_S = 285  # the whole check; each step gets what is left, up to its cap
STEPS_S = {"tests": 110, "bench": 80, "run": 150}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def download_wheels(python_version: str, dest: Path) -> int:
    """Fetch WHEELS at the lock's versions into dest (needs network)."""
    pins = {}
    for line in (ROOT / "requirements-lock.txt").read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep:
            pins[_canonical(name)] = version.strip()
    specs = [f"{name}=={pins[_canonical(name)]}" for name in WHEELS]
    dest.mkdir(exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
        "--only-binary=:all:", "--python-version", python_version,
        "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
        "--platform", "manylinux2014_x86_64", "-d", str(dest), *specs,
    ]  # fmt: skip
    code = subprocess.call(cmd)
    if code == 0:
        print(f"{len(specs)} wheels in {dest} (carry it to the GPU machine)")
    return code


def _missing(modules) -> list[str]:
    import importlib.util

    return [m for m in modules if importlib.util.find_spec(m) is None]


def _install_wheels(env: dict) -> str | None:
    """Install .whl/*.whl into a temporary folder on the path when torchkeras
    or IPython is missing; returns a problem to report, or None."""
    missing = _missing(["torchkeras", "IPython"])
    if not missing:
        return None
    wheels = sorted((ROOT / ".whl").glob("*.whl"))
    if not wheels:
        return (
            f"{', '.join(missing)} not installed and no wheels in .whl/: run "
            "`make gpu-wheels` where there is network, and carry .whl/"
        )
    site = Path(tempfile.mkdtemp(prefix="gpu-check-site-"))
    subprocess.check_call(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-index",
         "--no-deps", "--no-compile", "--target", str(site), *map(str, wheels)]
    )  # fmt: skip
    sys.path.insert(0, str(site))
    env["PYTHONPATH"] = os.pathsep.join([str(site), env["PYTHONPATH"]])
    return None


def _step(cmd: list[str], env: dict, cap: float, deadline: float) -> dict:
    """Run one step with what is left of the budget; its output and time."""
    limit = max(10.0, min(cap, deadline - time.monotonic()))
    start = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=limit
        )
        code, out, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as e:
        code = None
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else e.stdout or ""
        err = f"stopped after {limit:.0f} s (the check's time budget)"
    return {
        "cmd": " ".join(["python3" if cmd[0] == sys.executable else cmd[0], *cmd[1:]]),
        "code": code,
        "out": out,
        "err": err,
        "seconds": time.monotonic() - start,
    }


def _status(step: dict) -> str:
    if step["code"] == 0:
        return f"ok, {step['seconds']:.0f} s"
    if step["code"] is None:
        return step["err"]
    last = (step["err"].strip() or step["out"].strip() or "no output").splitlines()
    return f"failed (exit {step['code']}, {step['seconds']:.0f} s): `{last[-1]}`"


def _tests_section(step: dict) -> list[str]:
    lines = step["out"].strip().splitlines()
    summary = next(
        (ln for ln in reversed(lines) if re.search(r"\d+ (passed|failed)", ln)), ""
    )
    out = [f"`{step['cmd']}`: {_status(step)}", "", f"    {summary.strip('= ')}"]
    if step["code"] not in (0, None):
        failed = [ln for ln in lines if ln.startswith(("FAILED", "ERROR"))]
        out += ["", *[f"    {ln}" for ln in failed[:20]]]
    return out


def _run_section(step: dict) -> list[str]:
    out = [f"`{step['cmd']}`: {_status(step)}", ""]
    summary = None
    for line in reversed(step["out"].strip().splitlines()):
        if line.startswith("{"):
            summary = json.loads(line)
            break
    if summary is None:
        return out
    out += [
        "| model | test AUC | test log loss | seconds / epoch | precision |",
        "|---|---:|---:|---:|---|",
    ]
    for row in summary["comparison"]:
        if row["model"] == "oracle":
            continue
        out.append(
            f"| {row['model']} | {row['test_auc']:.4f} | {row['test_logloss']:.4f} "
            f"| {row.get('seconds_per_epoch', float('nan')):.1f} "
            f"| {row.get('precision', '')} |"
        )
    out += ["", f"Oracle test AUC {summary['oracle_auc']:.4f}."]
    return out


def check() -> int:
    import torch

    if not torch.cuda.is_available():
        print(
            f"gpu-check: no CUDA GPU here (torch {torch.__version__} sees none); "
            f"nothing measured, {PAGE.relative_to(ROOT)} left as it was"
        )
        return 0
    start = time.monotonic()
    deadline = start + BUDGET_S
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p
    )
    problem = _install_wheels(env)
    if problem:
        print(f"gpu-check: {problem}")
        return 1
    sys.path.insert(0, str(ROOT))
    from fibinet_tutorial.fast import default_threads
    from fibinet_tutorial.train import auto_precision

    py = sys.executable
    tests = _step(
        [
            py,
            "-m",
            "pytest",
            "tests/test_devices.py",
            "-o",
            "addopts=",
            "-q",
            "-rfE",
            "-p",
            "no:cacheprovider",
        ],  # fmt: skip
        env,
        STEPS_S["tests"],
        deadline,
    )
    print("tests:", _status(tests), flush=True)
    bench = _step(
        [py, "benchmarks/bench_layers.py", "--device", "cuda", "--rounds", "5"],
        env,
        STEPS_S["bench"],
        deadline,
    )
    print("bench:", _status(bench), flush=True)
    run = _step(
        [py, "-m", "fibinet_tutorial.train", "--model", "fibinet", "deepfm", "lr",
         "--epochs", "1", "--progress", "none", "--out", "runs/gpu-check"],
        env,
        STEPS_S["run"],
        deadline,
    )  # fmt: skip
    print("one epoch:", _status(run), flush=True)

    props = torch.cuda.get_device_properties(0)
    cap = torch.cuda.get_device_capability(0)
    page = [
        "# On a CUDA GPU",
        "",
        f"Measured {date.today()} by `make gpu-check` (benchmarks/gpu_check.py) on "
        f"{props.name} (compute capability {cap[0]}.{cap[1]}, "
        f"{props.total_memory / 2**30:.0f} GiB), torch {torch.__version__} "
        f"(CUDA {torch.version.cuda}), Python {platform.python_version()}, "
        f'{os.cpu_count()} CPUs. `precision="auto"` chose '
        f"{auto_precision('cuda')} here; default threads {default_threads()}. "
        f"The whole check took {time.monotonic() - start:.0f} s.",
        "",
        "## CUDA tests",
        "",
        *_tests_section(tests),
        "",
        "## Layers and training step on the GPU",
        "",
        f"`{bench['cmd']}`: {_status(bench)}",
        "",
    ]
    if bench["code"] == 0:
        page += [ln for ln in bench["out"].strip().splitlines()]
    page += ["", "## One epoch of the default run (`make run`, 1 epoch)", ""]
    page += _run_section(run)
    PAGE.write_text("\n".join(page) + "\n")
    print(f"gpu-check: wrote {PAGE.relative_to(ROOT)}")
    return 0 if all(s["code"] == 0 for s in (tests, bench, run)) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--download-wheels",
        metavar="PYTHON_VERSION",
        help="download the wheels the GPU machine lacks into .whl/ for this "
        "Python version (e.g. 3.12) and exit",
    )
    args = parser.parse_args()
    if args.download_wheels:
        return download_wheels(args.download_wheels, ROOT / ".whl")
    return check()


if __name__ == "__main__":
    sys.exit(main())
