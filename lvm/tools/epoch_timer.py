"""The callback that ``python -m lvm.tools.compare`` adds to each run it trains: ``EpochTimer`` writes the run's
seconds per epoch and peak memory. Its own module, so that :mod:`lvm.tools.compare` (and its ``--help``) imports
Lightning only when a run needs it; ``lvm.tools.compare.EpochTimer`` is the same class."""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import lightning as L

__all__ = ["EpochTimer"]


class EpochTimer(L.Callback):
    """Writes ``timing.json`` into the run directory when fitting ends: seconds per epoch (mean gap between epoch
    starts after the first epoch) and the peak resident memory of the process (MB)."""

    def __init__(self):
        self.starts: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.starts.append(time.perf_counter())

    def on_fit_end(self, trainer, pl_module):
        self.starts.append(time.perf_counter())
        gaps = [b - a for a, b in zip(self.starts[1:-1], self.starts[2:])] or [b - a for a, b in
                                                                              zip(self.starts, self.starts[1:])]
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
        if trainer.is_global_zero:
            (Path(trainer.default_root_dir) / "timing.json").write_text(
                json.dumps({"seconds_per_epoch": sum(gaps) / len(gaps), "peak_memory_mb": peak_mb}))
