"""The package's shape: a light front door, modules of one job with docstrings,
and a README quick start that runs."""

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import fibinet_tutorial

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted((ROOT / "fibinet_tutorial").rglob("*.py"))


def test_front_door_names_resolve():
    for name in fibinet_tutorial.__all__:
        assert getattr(fibinet_tutorial, name) is not None, name
    from fibinet_tutorial import FiBiNET, read_criteo, train_one  # noqa: F401


def test_import_stays_light():
    code = (
        "import sys, fibinet_tutorial; "
        "print(sorted(m for m in ('torchkeras', 'accelerate') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        fibinet_tutorial.no_such_name  # noqa: B018


every_module = pytest.mark.parametrize(
    "path", MODULES, ids=lambda p: str(p.relative_to(ROOT))
)


@every_module
def test_every_module_says_what_it_holds_and_stays_readable(path):
    source = path.read_text()
    assert ast.get_docstring(ast.parse(source)), f"{path.name} has no docstring"
    if path.name != "__main__.py":
        assert len(source.splitlines()) <= 500, f"{path} is over 500 lines"


def _resolve(pointer: str):
    """`fast.bilinear_kernel` or `train.evaluation.predict_proba` -> the object
    it names in the package (its longest prefix that is a module, then
    attributes); None when no prefix is a module or an attribute is missing."""
    parts = pointer.split(".")
    for i in range(len(parts), 0, -1):
        path = ROOT.joinpath("fibinet_tutorial", *parts[:i])
        if path.with_suffix(".py").is_file() or (path / "__init__.py").is_file():
            obj = importlib.import_module(".".join(["fibinet_tutorial", *parts[:i]]))
            for name in parts[i:]:
                obj = getattr(obj, name, None)
            return obj
    return None


@every_module
def test_every_module_says_what_it_does_not_hold_and_where_that_lives(path):
    """A `Not here:` paragraph sends a reader who opened the wrong file to the
    right one: each (`module.name`) pointer in it must name something real."""
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    paragraphs = [p for p in doc.split("\n\n") if p.startswith("Not here:")]
    assert len(paragraphs) == 1, f"{path.name}: no single 'Not here:' paragraph"
    pointers = re.findall(r"\(`([\w.]+)`\)", paragraphs[0])
    assert pointers, f"{path.name}: 'Not here:' names no (`module`) to go to"
    for pointer in pointers:
        assert _resolve(pointer) is not None, f"{path.name}: no `{pointer}`"


@pytest.mark.slow
def test_readme_quick_start_runs(tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Use it from Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    auc = float(re.search(r"test AUC ([0-9.]+)", proc.stdout).group(1))
    assert 0.6 < auc < 0.9


def test_the_wheel_ships_every_subpackage():
    """pyproject's package list finds every folder of the package (a wheel
    missing `fibinet_tutorial/train/` would install and then fail on Colab)."""
    import setuptools

    text = (ROOT / "pyproject.toml").read_text()
    include = re.search(r"\[tool\.setuptools\.packages\.find\]\ninclude = (.*)", text)
    patterns = ast.literal_eval(include.group(1))
    found = set(setuptools.find_packages(str(ROOT), include=patterns))
    folders = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "fibinet_tutorial").rglob("__init__.py")
    }
    assert folders and folders <= found
