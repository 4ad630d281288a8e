"""Loggers that keep a run's records: Weights & Biases offline unless the user opts in, and a CSV logger
that appends to its history when a run is resumed."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger as _LightningCSVLogger
from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

__all__ = ["WandbLogger", "CSVLogger", "wandb_offline_by_default", "wandb_run_id"]


def wandb_offline_by_default(offline: bool | None) -> bool:
    """``offline`` if given, else offline unless ``WANDB_MODE=online`` is set in the environment."""
    if offline is not None:
        return offline
    return os.environ.get("WANDB_MODE", "offline") != "online"


class WandbLogger(_LightningWandbLogger):
    """Lightning's ``WandbLogger`` with ``offline=None`` meaning "offline unless
    ``WANDB_MODE=online``". Offline runs are written under ``<run dir>/wandb/`` and can be
    uploaded later with ``wandb sync <run dir>/wandb/offline-run-*``. ``WANDB_MODE=disabled``
    turns W&B off entirely."""

    def __init__(self, project: str = "lvm", offline: bool | None = None, **kwargs):
        super().__init__(project=project, offline=wandb_offline_by_default(offline), **kwargs)


def wandb_run_id(save_dir: Path) -> str | None:
    """The id of the newest W&B run written under ``save_dir/wandb`` (each run folder, ``offline-run-<time>-<id>``
    or ``run-<time>-<id>``, with ``-<n>`` appended when two start within a second, holds ``run-<id>.wandb``), so
    that a resumed run continues it; ``None`` if there is none."""
    records = sorted((save_dir / "wandb").glob("*run-*/run-*.wandb"), key=lambda path: path.stat().st_mtime)
    return records[-1].stem.removeprefix("run-") if records else None


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer, except that an existing ``metrics.csv`` is continued (its columns kept), not deleted."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = list(csv.DictReader(file).fieldnames or [])


class CSVLogger(_LightningCSVLogger):
    """Lightning's ``CSVLogger`` whose ``metrics.csv`` survives a resume: the rows written before the
    checkpoint stay and the resumed run's rows follow them (Lightning's deletes the old file)."""

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment
