"""A callback base that accumulates a score over held-out batches and logs it per epoch."""

from __future__ import annotations

import lightning as L
import torch

from lvm.batches import batch_data

__all__ = ["HeldOutBatches"]


class HeldOutBatches(L.Callback):
    """Routes every validation and test batch's data ``x`` to :meth:`update` and the end of each
    validation and test epoch to :meth:`finish` with the stage name (``"val"`` or ``"test"``)."""

    def update(self, trainer, pl_module, x: torch.Tensor) -> None:
        raise NotImplementedError

    def finish(self, trainer, pl_module, stage: str) -> None:
        raise NotImplementedError

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.update(trainer, pl_module, batch_data(batch))

    def on_validation_epoch_end(self, trainer, pl_module):
        self.finish(trainer, pl_module, "val")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.update(trainer, pl_module, batch_data(batch))

    def on_test_epoch_end(self, trainer, pl_module):
        self.finish(trainer, pl_module, "test")
