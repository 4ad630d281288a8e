"""Intra-op threads from the CPUs this process may use, so that runs on shared machines do not oversubscribe them.

PyTorch starts as many intra-op threads as the machine has cores, whatever the process's CPU affinity (``taskset``,
SLURM's ``--cpus-per-task``) or its cgroup's CPU quota (containers, ``docker --cpus``): a job allowed 2 CPUs on a
64-core node then runs 64 threads that take turns on 2 (each waits for the slowest at every operation).
:func:`usable_cpus` reads both limits; :func:`limit_threads` lowers the thread count to it. An explicit
``OMP_NUM_THREADS`` (or ``torch.set_num_threads`` before the run) is the user's choice and is kept.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

__all__ = ["usable_cpus", "limit_threads"]

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" in microseconds, or "max <period>"


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


def limit_threads(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """Lower PyTorch's intra-op threads to :func:`usable_cpus` unless ``OMP_NUM_THREADS`` is set; returns the count
    in use."""
    if "OMP_NUM_THREADS" not in os.environ:
        cpus = usable_cpus(cpu_max)
        if torch.get_num_threads() > cpus:
            torch.set_num_threads(cpus)
    return torch.get_num_threads()
