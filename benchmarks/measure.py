"""Measurement helpers for the benchmarks: their shared command-line options, median step time and peak memory."""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from collections.abc import Callable

import torch

__all__ = ["PeakMemory", "benchmark_parser", "median_seconds"]

_PAGE = os.sysconf("SC_PAGE_SIZE")


def benchmark_parser(description: str, repeats: int | None, batch: int | None, repeats_help: str | None = None,
                     batch_help: str | None = None) -> argparse.ArgumentParser:
    """The options every step benchmark takes: ``--device`` (CUDA when there is one), ``--repeats`` and ``--batch``
    with the script's defaults; a script adds its own."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=repeats, help=repeats_help)
    parser.add_argument("--batch", type=int, default=batch, help=batch_help)
    return parser


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE


class PeakMemory:
    """``with PeakMemory(device) as peak: ...`` then ``peak.bytes``: the peak extra memory
    used inside the block (allocator peak on CUDA; resident-set peak, sampled every 0.2 ms,
    above the level at entry on the CPU)."""

    def __init__(self, device: torch.device):
        self.device, self.bytes = torch.device(device), 0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._base = self._peak = _rss_bytes()
            self._running = True
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while self._running:
            self._peak = max(self._peak, _rss_bytes())
            time.sleep(0.0002)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.bytes = torch.cuda.max_memory_allocated(self.device) - self._base
        else:
            self._running = False
            self._thread.join()
            self.bytes = max(self._peak, _rss_bytes()) - self._base
        return False


def median_seconds(step: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median wall time of ``step()`` over ``repeats`` runs after one warm-up (CUDA synchronised)."""
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    step()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
