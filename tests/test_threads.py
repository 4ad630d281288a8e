"""Intra-op threads follow the CPUs the process may use (affinity and the cgroup v2 quota) and, of those, the ones idle
when the run starts (the kernel's per-CPU counters)."""

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


def _stat(tmp_path, rows: list[tuple[int, int, int]]):
    """A /proc/stat with one line per (cpu, idle, busy) counters: user = busy, idle = idle, the rest 0."""
    lines = ["cpu  1 2 3 4 5 6 7 8 0 0"] + [f"cpu{cpu} {busy} 0 0 {idle} 0 0 0 0 0 0" for cpu, idle, busy in rows]
    path = tmp_path / "stat"
    path.write_text("\n".join(lines + ["intr 1 2 3", "ctxt 5"]) + "\n")
    return path


def test_idle_cpus_sums_each_usable_cpu_s_idle_fraction_over_the_interval(tmp_path, monkeypatch):
    path = _stat(tmp_path, [(0, 100, 100), (1, 100, 100), (2, 100, 100)])
    after = [(0, 200, 100), (1, 100, 200), (2, 150, 150)]  # idle, busy, half idle; cpu 2 is not ours
    monkeypatch.setattr(threads.time, "sleep", lambda seconds: _stat(tmp_path, after))
    assert threads.idle_cpus({0, 1}, stat=path) == pytest.approx(1.0)
    _stat(tmp_path, [(0, 100, 100), (1, 100, 100), (2, 100, 100)])
    assert threads.idle_cpus({0, 1, 2}, stat=path) == pytest.approx(1.5)
    assert threads.idle_cpus({0}, stat=tmp_path / "absent") is None  # not Linux: unknown


def test_limit_threads_takes_the_idle_usable_cpus_once_per_process(tmp_path, monkeypatch):
    monkeypatch.setattr(threads, "_chosen", None)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    calls = []
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(torch, "get_num_threads", lambda: calls[-1] if calls else 2)
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    (tmp_path / "cpu.max").write_text("max 100000\n")
    path = _stat(tmp_path, [(0, 100, 100), (1, 100, 100)])
    monkeypatch.setattr(threads.time, "sleep", lambda seconds: _stat(tmp_path, [(0, 200, 100), (1, 100, 200)]))
    assert threads.limit_threads(tmp_path / "cpu.max", path) == 1 and calls == [1]  # one CPU busy with other work
    _stat(tmp_path, [(0, 100, 100), (1, 100, 100)])
    monkeypatch.setattr(threads.time, "sleep", lambda seconds: _stat(tmp_path, [(0, 200, 100), (1, 200, 100)]))
    assert threads.limit_threads(tmp_path / "cpu.max", path) == 1  # chosen once per process
    monkeypatch.setattr(threads, "_chosen", None)
    _stat(tmp_path, [(0, 100, 100), (1, 100, 100)])
    assert threads.limit_threads(tmp_path / "cpu.max", path) == 2  # both idle


def test_limit_threads_lowers_the_count_unless_the_user_chose_one(tmp_path, monkeypatch):
    monkeypatch.setattr(threads, "_chosen", None)
    monkeypatch.setattr(threads, "idle_cpus", lambda **kwargs: None)  # unknown load: the usable CPUs
    calls = []
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(64)))
    monkeypatch.setattr(torch, "get_num_threads", lambda: calls[-1] if calls else 64)
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    (tmp_path / "cpu.max").write_text("200000 100000\n")  # a container allowed 2 CPUs on a 64-core node
    monkeypatch.setenv("OMP_NUM_THREADS", "16")
    assert threads.limit_threads(tmp_path / "cpu.max") == 64 and calls == []
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads.limit_threads(tmp_path / "cpu.max") == 2 and calls == [2]
