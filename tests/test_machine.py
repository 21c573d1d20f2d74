"""What the machine gives a process (cores, CPU quota, memory) and what the
package does with it: default threads, CPU settings scoped to training, files
too big for memory. Machines are faked: sysfs, cgroups and /proc/meminfo are
small files in a temporary folder."""

import json
import subprocess
import sys

import pytest
import torch

from fibinet_tutorial import data as D
from fibinet_tutorial import fast
from fibinet_tutorial import train as T
from fibinet_tutorial.data import reading
from fibinet_tutorial.fast import cpu, machine
from fibinet_tutorial.synthetic import SyntheticCriteo
from fibinet_tutorial.train import cli

GIB = 2**30


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def fake_machine(tmp_path, monkeypatch):
    """A machine with 8 logical CPUs on 4 cores (two threads each), no cgroup
    limits, 16 GiB available; returns a function that changes it."""
    root = tmp_path / "machine"
    monkeypatch.setattr(machine, "SYS_CPU", root / "sys")
    monkeypatch.setattr(machine, "CGROUP_ROOT", root / "cgroup")
    monkeypatch.setattr(machine, "PROC_SELF_CGROUP", root / "self_cgroup")
    monkeypatch.setattr(machine, "MEMINFO", root / "meminfo")
    for name in machine.LOCAL_SIZE_VARIABLES + ("OMP_NUM_THREADS",):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(machine.os, "sched_getaffinity", lambda pid: set(range(8)))
    for n in range(8):
        topology = root / "sys" / f"cpu{n}" / "topology"
        _write(topology / "physical_package_id", "0\n")
        _write(topology / "core_id", f"{n % 4}\n")
    _write(root / "self_cgroup", "0::/\n")
    _write(root / "meminfo", f"MemTotal: 33554432 kB\nMemAvailable: {16 << 20} kB\n")
    (root / "cgroup").mkdir()
    return root


def test_physical_cores_not_logical_ones(fake_machine, monkeypatch):
    assert machine.physical_cores() == 4
    assert machine.default_threads() == 4
    # allowed on CPUs 0 and 4 only: two threads of one core
    monkeypatch.setattr(machine.os, "sched_getaffinity", lambda pid: {0, 4})
    assert machine.physical_cores() == 1


def test_threads_follow_omp_the_quota_and_the_processes(fake_machine, monkeypatch):
    cgroup = fake_machine / "cgroup"
    _write(cgroup / "cpu.max", "max 100000\n")  # cgroup v2, no quota
    assert machine.cpu_quota() is None and machine.default_threads() == 4
    _write(cgroup / "cpu.max", "250000 100000\n")  # 2.5 CPUs
    assert machine.cpu_quota() == 2.5 and machine.default_threads() == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two processes share it
    assert machine.default_threads() == 1
    (cgroup / "cpu.max").unlink()
    assert machine.default_threads() == 2  # 4 cores / 2 processes
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # a choice per process: kept
    assert machine.default_threads() == 3


def test_cgroup_v1_quota_and_a_nested_cgroup(fake_machine):
    _write(fake_machine / "self_cgroup", "4:cpu,cpuacct:/docker/abc\n1:memory:/\n")
    v1 = fake_machine / "cgroup" / "cpu,cpuacct"
    _write(v1 / "cpu.cfs_quota_us", "-1\n")  # the root: unlimited
    _write(v1 / "cpu.cfs_period_us", "100000\n")
    _write(v1 / "docker" / "abc" / "cpu.cfs_quota_us", "300000\n")
    _write(v1 / "docker" / "abc" / "cpu.cfs_period_us", "100000\n")
    assert machine.cpu_quota() == 3.0
    assert machine.default_threads() == 3


def test_memory_available_is_the_tighter_of_the_machine_and_the_cgroup(
    fake_machine,
):
    assert machine.memory_available() == 16 * GIB
    cgroup = fake_machine / "cgroup"
    _write(cgroup / "memory.max", f"{4 * GIB}\n")
    _write(cgroup / "memory.current", f"{GIB}\n")
    _write(cgroup / "memory.stat", f"anon 1\ninactive_file {GIB // 2}\n")
    assert machine.memory_available() == 4 * GIB - GIB // 2
    _write(cgroup / "memory.max", "max\n")
    assert machine.memory_available() == 16 * GIB
    _write(fake_machine / "self_cgroup", "7:memory:/box\n")  # cgroup v1
    v1 = cgroup / "memory" / "box"
    _write(v1 / "memory.limit_in_bytes", f"{2 * GIB}\n")
    _write(v1 / "memory.usage_in_bytes", f"{GIB}\n")
    assert machine.memory_available() == GIB


def test_the_command_line_defaults_to_the_machines_threads(fake_machine):
    assert cli.parse_args([]).threads == 4
    assert cli.parse_args(["--threads", "1"]).threads == 1


def _tiny_fit(tmp_path, seen, **fit_kwargs):
    df = SyntheticCriteo().sample(1200)
    pre = D.CriteoPreprocessor(min_count=2).fit(df[:800])
    ds_train = D.CTRDataset.from_frame(df[:800], pre)
    ds_val = D.CTRDataset.from_frame(df[800:], pre)
    torch.manual_seed(0)
    net = T.build_model(
        {"model": "lr", "d_numerical": 13, "categories": pre.categories}
    )
    net.register_forward_hook(
        lambda module, args, out: seen.append(
            (module.training, torch.get_num_threads(), fast.denormals_flushed())
        )
    )
    model = T.CTRKerasModel(net, lr=0.01)
    model.fit(
        D.make_loader(ds_train, 256, True),
        T.eval_loader(ds_val),
        epochs=1,
        ckpt_path=tmp_path / "lr.pt",
        progress="none",
        **fit_kwargs,
    )
    return model


def test_fit_applies_the_cpu_settings_while_it_trains(tmp_path, monkeypatch):
    threads = torch.get_num_threads()
    monkeypatch.setattr(cpu, "_STARTUP_THREADS", threads)  # nobody chose threads
    monkeypatch.setattr(cpu, "default_threads", lambda: threads + 1)
    torch.set_flush_denormal(False)
    seen = []
    _tiny_fit(tmp_path, seen)
    assert {s for s in seen if s[0]} == {(True, threads + 1, True)}
    # afterwards: the thread count and the denormal mode as they were
    assert torch.get_num_threads() == threads
    assert not fast.denormals_flushed()
    # a number someone chose is kept; an explicit one wins
    torch.set_num_threads(1)
    try:
        seen.clear()
        _tiny_fit(tmp_path, seen)
        assert {s[1] for s in seen if s[0]} == {1}
        seen.clear()
        _tiny_fit(tmp_path, seen, threads=2)
        assert {s[1] for s in seen if s[0]} == {2}
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


def _file(tmp_path, rows=400):
    path = tmp_path / "small.txt"
    SyntheticCriteo().write(path, rows)
    return path


def test_a_file_too_big_for_memory_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = _file(tmp_path)
    size = path.stat().st_size
    need = size * reading.IN_MEMORY_BYTES_PER_TEXT_BYTE
    monkeypatch.setattr(reading, "memory_available", lambda: 10 * need)
    assert len(D.read_criteo(path)) == 400
    monkeypatch.setattr(reading, "memory_available", lambda: need)  # > 70%
    with pytest.raises(D.FileTooLargeError) as e:
        D.read_criteo(path)
    message = str(e.value)
    assert "\n" not in message and message.startswith(str(path))
    assert "streamed_dir=" in message and "nrows=" in message
    assert len(D.read_criteo(path, nrows=50)) == 50  # a few rows still fit
    with D.cli_hints():  # the command line's flags instead
        with pytest.raises(D.FileTooLargeError, match=r"--streamed\).*--rows N"):
            D.read_criteo(path)
    with pytest.raises(D.FileTooLargeError):
        T.prepare_data(path)


def test_gzip_files_are_judged_by_their_text(tmp_path):
    import gzip

    path = _file(tmp_path, 2000)
    packed = tmp_path / "small.txt.gz"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    assert packed.stat().st_size < path.stat().st_size / 2
    estimate = reading.text_bytes(packed)
    assert abs(estimate - path.stat().st_size) < 0.1 * path.stat().st_size
    per_line = path.stat().st_size / 2000
    assert abs(reading.text_bytes(path, nrows=100) - 100 * per_line) < 10 * per_line


@pytest.mark.slow
def test_the_command_line_streams_a_file_too_big_for_memory(
    tmp_path, monkeypatch, capsys
):
    path = _file(tmp_path, 3000)
    monkeypatch.setattr(reading, "memory_available", lambda: path.stat().st_size)
    out = tmp_path / "run"
    args = ["--data", str(path), "--out", str(out), "--model", "lr"]
    assert cli.main([*args, "--epochs", "1", "--progress", "none"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    notes = [line for line in printed if line.startswith("note: ")]
    assert len(notes) == 1 and "streamed" in notes[0] and str(path) in notes[0]
    assert (out / "arrays" / "x_cat.npy").exists()
    assert json.loads(printed[-1])["model"] == "lr"


@pytest.mark.slow
def test_the_in_memory_estimate_covers_a_real_read(tmp_path):
    # the peak memory of prepare_data per byte of text, in a fresh process (at
    # this size; fixed costs weigh more on smaller files, less on larger ones)
    path = tmp_path / "file.txt"
    SyntheticCriteo().write(path, 250_000)
    code = """
import resource, sys
from pathlib import Path
from fibinet_tutorial.train import prepare_data
path = Path(sys.argv[1])
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) * 1024
base = rss()
prepare_data(path)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print((peak - base) / path.stat().st_size)
"""
    proc = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    per_byte = float(proc.stdout.strip().splitlines()[-1])
    assert 2 < per_byte < reading.IN_MEMORY_BYTES_PER_TEXT_BYTE
