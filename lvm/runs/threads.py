"""Intra-op threads from the CPUs this process may use, so that runs on shared machines do not oversubscribe them.

PyTorch starts as many intra-op threads as the machine has cores, whatever the process's CPU affinity (``taskset``,
SLURM's ``--cpus-per-task``) or its cgroup's CPU quota (containers, ``docker --cpus``): a job allowed 2 CPUs on a
64-core node then runs 64 threads that take turns on 2 (each waits for the slowest at every operation).
:func:`usable_cpus` reads both limits. Other processes may also be busy on those CPUs (another user's analysis, a
second run): then a thread of each operation waits for a CPU that another process holds, and fewer threads is faster
(the quick start on 2 cores beside one busy process: 85 s with 2 threads, 38 s with 1, as alone).
:func:`idle_cpus` measures how many of the usable CPUs are idle over a quarter of a second (``/proc/stat``), and
:func:`limit_threads` takes that many threads, at least 1 and at most :func:`usable_cpus`, once per process. An
explicit ``OMP_NUM_THREADS`` (or ``torch.set_num_threads`` before the run) is the user's choice and is kept.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch

__all__ = ["usable_cpus", "idle_cpus", "limit_threads"]

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" in microseconds, or "max <period>"
PROC_STAT = Path("/proc/stat")  # per-CPU time counters: "cpuN user nice system idle iowait irq softirq steal ..."
_chosen: int | None = None  # the count limit_threads chose in this process


def usable_cpus(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """The CPUs this process may run on: its affinity mask, capped by the cgroup's quota (rounded up: a quota of
    1.5 CPUs keeps 2 threads busy), at least 1."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):  # no cgroup v2 file (macOS, cgroup v1): the affinity alone
        pass
    return max(1, cpus)


def _cpu_times(stat: Path, cpus: set[int]) -> dict[int, tuple[int, int]]:
    """(idle + iowait, total) time counters of each CPU in ``cpus`` from ``/proc/stat``."""
    times = {}
    for line in stat.read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            counters = [int(value) for value in fields[:8]]
            times[int(name[3:])] = (counters[3] + counters[4], sum(counters))
    return times


def idle_cpus(cpus: set[int] | None = None, interval: float = 0.25, stat: Path = PROC_STAT) -> float | None:
    """How many of ``cpus`` (default: this process's affinity) were idle over ``interval`` seconds: the sum over
    them of the fraction of time each spent idle, from the kernel's per-CPU counters; ``None`` where they cannot be
    read (not Linux)."""
    if cpus is None:
        cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    try:
        before = _cpu_times(stat, cpus)
        time.sleep(interval)
        after = _cpu_times(stat, cpus)
    except (OSError, ValueError, IndexError):
        return None
    fractions = [(after[cpu][0] - before[cpu][0]) / (after[cpu][1] - before[cpu][1])
                 for cpu in after if cpu in before and after[cpu][1] > before[cpu][1]]
    return sum(fractions) if fractions else None


def limit_threads(cpu_max: Path = CGROUP_CPU_MAX, stat: Path = PROC_STAT) -> int:
    """Set PyTorch's intra-op threads to the usable CPUs that are idle now (:func:`idle_cpus`, rounded; at least 1, at
    most :func:`usable_cpus`), once per process, unless ``OMP_NUM_THREADS`` is set; returns the count in use."""
    global _chosen
    if "OMP_NUM_THREADS" in os.environ:
        return torch.get_num_threads()
    if _chosen is None:
        cpus = usable_cpus(cpu_max)
        idle = idle_cpus(stat=stat)
        _chosen = cpus if idle is None else max(1, min(cpus, round(idle)))
    if torch.get_num_threads() != _chosen:
        torch.set_num_threads(_chosen)
    return torch.get_num_threads()
