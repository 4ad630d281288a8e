"""Intra-op threads follow the CPUs the process may use: affinity and the cgroup v2 quota."""

import pytest
import torch

from lvm.runs import threads


@pytest.mark.parametrize("cpu_max, expected", [("max 100000\n", 8), ("300000 100000\n", 3), ("150000 100000\n", 2),
                                               ("50000 100000\n", 1), ("not a quota\n", 8), (None, 8)])
def test_usable_cpus_is_the_affinity_capped_by_the_quota(tmp_path, monkeypatch, cpu_max, expected):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(8)))
    path = tmp_path / "cpu.max"
    if cpu_max is not None:
        path.write_text(cpu_max)
    assert threads.usable_cpus(path) == expected


def test_limit_threads_lowers_the_count_unless_the_user_chose_one(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(64)))
    monkeypatch.setattr(torch, "get_num_threads", lambda: calls[-1] if calls else 64)
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    (tmp_path / "cpu.max").write_text("200000 100000\n")  # a container allowed 2 CPUs on a 64-core node
    monkeypatch.setenv("OMP_NUM_THREADS", "16")
    assert threads.limit_threads(tmp_path / "cpu.max") == 64 and calls == []
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads.limit_threads(tmp_path / "cpu.max") == 2 and calls == [2]
