"""What this machine gives a process: cores, a container's CPU quota, memory.

`default_threads` is the thread count the trainer and the command line use
when nobody chose one; `memory_available` is what the readers compare a file
with before they read it into memory (`data.reading.check_fits_in_memory`).
Both read Linux's own figures (sysfs, cgroups v1 and v2, /proc/meminfo) and
fall back to what Python knows elsewhere.

Not here: the settings that change the process, threads included (`fast.cpu`), the
check that reads `memory_available` (`data.reading`), the `--threads` flag
(`train.cli`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

# Where Linux publishes the figures; tests point these at fake files.
SYS_CPU = Path("/sys/devices/system/cpu")
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
MEMINFO = Path("/proc/meminfo")

# How launchers tell each process how many processes share its machine:
# torchrun and `accelerate launch` set the first, MPI launchers the others.
LOCAL_SIZE_VARIABLES = (
    "LOCAL_WORLD_SIZE",
    "MPI_LOCALNRANKS",
    "OMPI_COMM_WORLD_LOCAL_SIZE",
    "MV2_COMM_WORLD_LOCAL_SIZE",
)
_UNLIMITED = 1 << 60  # cgroup v1 writes "no limit" as a number near 2**63


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _usable_cpus() -> list[int]:
    """The logical CPUs this process may run on (its affinity mask)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def physical_cores() -> int:
    """Physical cores among the CPUs this process may use (hyperthreads of one
    core count once): Linux's CPU topology, else psutil, else logical CPUs.

    Two threads on one core share its arithmetic units; the dense matrix
    products of training gain little from the second one.
    """
    cpus = _usable_cpus()
    cores = set()
    for cpu in cpus:
        topology = SYS_CPU / f"cpu{cpu}" / "topology"
        package = _read(topology / "physical_package_id")
        core = _read(topology / "core_id")
        if package is None or core is None:
            break
        cores.add((package.strip(), core.strip()))
    else:
        if cores:
            return len(cores)
    try:
        import psutil  # accelerate depends on it

        return max(1, min(len(cpus), psutil.cpu_count(logical=False) or len(cpus)))
    except ImportError:
        return max(1, len(cpus))


def _cgroup_dirs(controller: str) -> list[tuple[Path, int]]:
    """Directories of this process's cgroups that can hold `controller`'s
    limits, from its own cgroup up to the root: (directory, cgroup version).

    Both the v2 hierarchy ("0::/path") and v1 controllers ("4:memory:/path")
    of /proc/self/cgroup are followed; inside a container whose cgroup is the
    mount's root, the walk up from a path the container cannot see ends there.
    """
    dirs = []
    for line in (_read(PROC_SELF_CGROUP) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, rel = parts
        if hierarchy == "0" and controllers == "":
            version, mounts = 2, [CGROUP_ROOT, CGROUP_ROOT / "unified"]
        elif controller in controllers.split(","):
            version = 1
            mounts = [CGROUP_ROOT / controllers, CGROUP_ROOT / controller]
        else:
            continue
        for mount in dict.fromkeys(mounts):
            d = mount / rel.strip().lstrip("/")
            while True:
                if d.is_dir():
                    dirs.append((d, version))
                if d == mount or mount not in d.parents:
                    break
                d = d.parent
    return dirs


def cpu_quota() -> float | None:
    """CPUs' worth of time a container's cgroup allows (cgroup v2 `cpu.max`, v1
    `cpu.cfs_quota_us` / `cpu.cfs_period_us`), the tightest along the
    hierarchy; None where there is no quota."""
    quotas = []
    for d, version in _cgroup_dirs("cpu"):
        if version == 2:
            fields = (_read(d / "cpu.max") or "").split()
            if len(fields) == 2 and fields[0] != "max":
                quota, period = fields
            else:
                continue
        else:
            quota = (_read(d / "cpu.cfs_quota_us") or "-1").strip()
            period = (_read(d / "cpu.cfs_period_us") or "0").strip()
        try:
            q, p = int(quota), int(period)
        except ValueError:
            continue
        if q > 0 and p > 0:
            quotas.append(q / p)
    return min(quotas) if quotas else None


def local_processes(environ=None) -> int:
    """How many processes of this run share this machine (1 unless a launcher
    such as `accelerate launch` or torchrun started several)."""
    environ = os.environ if environ is None else environ
    for name in LOCAL_SIZE_VARIABLES:
        try:
            n = int(environ.get(name, ""))
        except ValueError:
            continue
        if n >= 1:
            return n
    return 1


def default_threads(environ=None) -> int:
    """Threads for one training process when nobody chose a number.

    OMP_NUM_THREADS when it is set (the user's, or a launcher's, choice per
    process; `accelerate launch` sets 1 per process unless given
    `--num_cpu_threads_per_process`). Otherwise the physical cores this process
    may use, capped by a container's CPU quota (rounded down: a thread over
    the quota is throttled for the rest of each period), divided among the
    processes that share the machine; at least 1.
    """
    environ = os.environ if environ is None else environ
    omp = environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if omp.isdigit() and int(omp) >= 1:
        return int(omp)
    cores = physical_cores()
    quota = cpu_quota()
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return max(1, cores // local_processes(environ))


def _meminfo_available() -> int | None:
    for line in (_read(MEMINFO) or "").splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def _stat_value(path: Path, key: str) -> int:
    for line in (_read(path) or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return 0


def _cgroup_memory_left() -> int | None:
    """The tightest cgroup memory limit minus what the cgroup already uses
    (its reclaimable file cache not counted, as `docker stats` does)."""
    left = []
    for d, version in _cgroup_dirs("memory"):
        if version == 2:
            limit, usage = _read(d / "memory.max"), _read(d / "memory.current")
            inactive = _stat_value(d / "memory.stat", "inactive_file")
        else:
            limit = _read(d / "memory.limit_in_bytes")
            usage = _read(d / "memory.usage_in_bytes")
            inactive = _stat_value(d / "memory.stat", "total_inactive_file")
        try:
            limit_bytes, used = int(limit), int(usage)
        except (TypeError, ValueError):  # "max", or no such file
            continue
        if limit_bytes < _UNLIMITED:
            left.append(max(0, limit_bytes - max(0, used - inactive)))
    return min(left) if left else None


def memory_available() -> int | None:
    """Bytes this process can still allocate without swapping or being killed:
    the smaller of the kernel's MemAvailable and a container's cgroup memory
    limit left; None where neither can be read (not Linux)."""
    figures = [
        m for m in (_meminfo_available(), _cgroup_memory_left()) if m is not None
    ]
    return min(figures) if figures else None
