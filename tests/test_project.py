"""Project files agree with each other: lock, environment.yml, pyproject, CI."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#")[0].strip().lstrip("- ").strip()
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if m:
            pins[_norm(m.group(1))] = m.group(2)
    return pins


def _pyproject_names() -> set[str]:
    text = (ROOT / "pyproject.toml").read_text()
    names = set()
    for block in re.findall(r"(?:dependencies|dev) = \[(.*?)\]", text, re.S):
        for req in re.findall(r'"([^"]+)"', block):
            names.add(_norm(re.split(r"[<>=!~ ;\[]", req)[0]))
    return names


def test_lock_pins_cpu_torch_2_13():
    lock = _pins((ROOT / "requirements-lock.txt").read_text().splitlines())
    assert lock["torch"] == "2.13.0"


def test_environment_yml_lists_the_direct_dependencies_with_the_lock_pins():
    lock = _pins((ROOT / "requirements-lock.txt").read_text().splitlines())
    env = _pins((ROOT / "environment.yml").read_text().splitlines())
    assert set(env) == _pyproject_names()
    for name, version in env.items():
        assert lock.get(name) == version, (
            f"{name}: env {version}, lock {lock.get(name)}"
        )


def test_lock_covers_every_direct_dependency():
    lock = _pins((ROOT / "requirements-lock.txt").read_text().splitlines())
    assert _pyproject_names() <= set(lock)


def test_pyproject_uses_ranges_not_pins():
    text = (ROOT / "pyproject.toml").read_text()
    deps = re.search(r"^dependencies = \[(.*?)\]", text, re.S | re.M).group(1)
    assert "==" not in deps


def test_ci_runs_make_test_and_readme_shows_both_commands():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme


def test_readme_benchmark_figures_are_on_their_pages():
    # each row of README's "What the benchmarks measured" quotes a generated page:
    # every number it quotes must still be there, so a rerun cannot leave it stale
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## What the benchmarks measured")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if "](benchmarks/" in line]
    assert len(rows) >= 5
    for row in rows:
        figure = row.split(" | ")[1]
        page_name = re.search(r"\]\((benchmarks/[A-Z_]+\.md)\)", row).group(1)
        page = (ROOT / page_name).read_text()
        numbers = re.findall(r"[+-]?\d+\.\d+x?", figure)
        assert numbers, row
        missing = [n for n in numbers if n not in page]
        assert not missing, f"{page_name} no longer shows {missing} ({row[:60]}...)"
