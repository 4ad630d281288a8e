"""A callback base that accumulates a score over held-out batches and logs it per epoch."""

from __future__ import annotations

from typing import Callable

import lightning as L
import torch

from lvm.batches import batch_data, given_batch

from .figures import guarded

__all__ = ["HeldOutBatches"]


class HeldOutBatches(L.Callback):
    """Routes every validation and test batch's data ``x`` to :meth:`update` and the end of each
    validation and test epoch to :meth:`finish` with the stage name (``"val"`` or ``"test"``). A conditional model is
    given the batch's covariates during :meth:`update` (:func:`lvm.batches.given_batch`).

    A score is an analysis, not part of the run: if :meth:`update` or :meth:`finish` raises, the score of
    that epoch is skipped with a warning ``"<Callback>: the <stage> score skipped: <reason>"``, the
    accumulated state is dropped (:meth:`reset`) and training or testing goes on."""

    _failed: frozenset[str] = frozenset()  # stages whose score failed this epoch

    def update(self, trainer, pl_module, x: torch.Tensor) -> None:
        raise NotImplementedError

    def finish(self, trainer, pl_module, stage: str) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        """Drop what :meth:`update` accumulated (after a failure, instead of :meth:`finish`)."""

    def _guarded(self, stage: str, step: Callable[[], None]) -> None:
        if stage not in self._failed and guarded(type(self).__name__, f"the {stage} score",
                                                 lambda: step() or True) is None:
            self._failed = self._failed | {stage}

    def _epoch_end(self, trainer, pl_module, stage: str) -> None:
        self._guarded(stage, lambda: self.finish(trainer, pl_module, stage))
        if stage in self._failed:
            self.reset()
            self._failed = self._failed - {stage}

    def _update(self, trainer, pl_module, batch) -> None:
        with given_batch(pl_module, batch):
            self.update(trainer, pl_module, batch_data(batch))

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._guarded("val", lambda: self._update(trainer, pl_module, batch))

    def on_validation_epoch_end(self, trainer, pl_module):
        self._epoch_end(trainer, pl_module, "val")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._guarded("test", lambda: self._update(trainer, pl_module, batch))

    def on_test_epoch_end(self, trainer, pl_module):
        self._epoch_end(trainer, pl_module, "test")
