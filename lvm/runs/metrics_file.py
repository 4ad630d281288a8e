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
    current even if a run is interrupted. Values are floats; ``epoch``/``global_step`` are ints.

    Lightning runs the callbacks' ``on_test_end`` in list order, and user callbacks come before this trainer
    default, so callbacks that draw or analyse at the end of testing call :meth:`update` first
    (``lvm.callbacks.figures.write_metrics_first``): the file holds the ``test/`` metrics before any plotting
    starts, whatever the order, and a failing plot cannot cost the run its metrics."""

    filename = "metrics.json"

    def __init__(self):
        self.metrics: dict[str, float] = {}

    def setup(self, trainer: L.Trainer, pl_module, stage: str) -> None:
        """A resumed run (its directory already holds the file) starts from the values on record, so metrics
        that the resumed run does not log again (e.g. a held-out estimate on its schedule) are not lost."""
        path = Path(trainer.default_root_dir) / self.filename
        if not self.metrics and path.is_file():
            self.metrics = json.loads(path.read_text())

    def update(self, trainer: L.Trainer) -> None:
        """Take the trainer's current metrics and rewrite the file (on rank 0)."""
        self.metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1})
        self.metrics.update(epoch=trainer.current_epoch, global_step=trainer.global_step)
        self._write(Path(trainer.default_root_dir) / self.filename)

    @rank_zero_only
    def _write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dict(sorted(self.metrics.items())), indent=2) + "\n")

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.update(trainer)

    def on_test_end(self, trainer, pl_module):
        self.update(trainer)
