"""Write the run's final metrics to ``<run dir>/metrics.json`` as one flat JSON object."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

__all__ = ["MetricsFile"]


class MetricsFile(L.Callback):
    """Keeps the latest value of every logged metric (validation after each epoch, test at the
    end) and rewrites ``metrics.json`` in ``trainer.default_root_dir`` each time, so the file is
    current even if a run is interrupted. Values are floats; ``epoch``/``global_step`` are ints."""

    filename = "metrics.json"

    def __init__(self):
        self.metrics: dict[str, float] = {}

    def _update(self, trainer: L.Trainer) -> None:
        self.metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1})
        self.metrics.update(epoch=trainer.current_epoch, global_step=trainer.global_step)
        self._write(Path(trainer.default_root_dir) / self.filename)

    @rank_zero_only
    def _write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dict(sorted(self.metrics.items())), indent=2) + "\n")

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self._update(trainer)

    def on_test_end(self, trainer, pl_module):
        self._update(trainer)
