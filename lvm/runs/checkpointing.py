"""A ModelCheckpoint whose ``last.ckpt`` really is the last one (also when a SIGTERM or Ctrl-C stops training), and
whose best checkpoints are ranked only on the epochs that computed the monitored held-out estimate."""

from __future__ import annotations

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lvm.model import LatentVariableModel

__all__ = ["BestAndLastCheckpoint"]


class BestAndLastCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, except that with ``save_last`` the ``last.ckpt`` is refreshed at
    every save point (each validation, or each training epoch end) even when no top-k checkpoint is
    written then. Lightning >= 2.5 refreshes it only together with a top-k checkpoint, so after an
    epoch that did not improve the monitored metric ``last.ckpt`` would hold an older epoch, and
    resuming from it would silently repeat epochs."""

    def _refresh_last(self, trainer) -> None:
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def _monitor_not_evaluated(self, pl_module) -> bool:
        """The monitored metric is a held-out estimate that this validation epoch skipped (``eval_every_n_epochs``):
        ranking this epoch on the last epoch's value would be wrong, so only ``last.ckpt`` is refreshed."""
        if not isinstance(pl_module, LatentVariableModel) or self.monitor is None:
            return False
        return self.monitor.split("/", 1)[-1] in pl_module.evaluation.names and not pl_module.heldout_due()

    def on_validation_end(self, trainer, pl_module) -> None:
        if not self._monitor_not_evaluated(pl_module):
            super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        """A SIGTERM (cluster preemption) or Ctrl-C stops training with ``last.ckpt`` current, so that
        ``--ckpt_path <run>/checkpoints/last.ckpt`` continues from the step it reached."""
        if isinstance(exception, (SIGTERMException, KeyboardInterrupt)) and self.save_last and trainer.state.fn == "fit":
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self._monitor_not_evaluated(pl_module):
            super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)
