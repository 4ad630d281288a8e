"""Log the Gaussian Frechet ("FID-like") distance between held-out data and model samples."""

from __future__ import annotations

import math

import lightning as L

from lvm.metrics import GaussianFrechetDistance

__all__ = ["GaussianFrechetScore"]


class GaussianFrechetScore(L.Callback):
    """For every validation and test batch, adds the batch (real) and as many ``model.sample``
    draws (generated; the fitted latent sampler if any, else the prior) to a
    :class:`lvm.metrics.GaussianFrechetDistance`, and logs ``{stage}/frechet_gaussian`` at the end of
    the epoch (MLAE paper, Table 1). Exact under DDP (the metric's states are sums).

    Args:
        samples_per_example: generated samples per held-out example.
    """

    def __init__(self, samples_per_example: int = 1):
        self.samples_per_example = samples_per_example
        self.metric: GaussianFrechetDistance | None = None

    def setup(self, trainer, pl_module, stage):
        shape = getattr(trainer.datamodule, "data_shape", None)
        if shape is None:
            raise ValueError("GaussianFrechetScore needs the datamodule's data_shape.")
        self.metric = GaussianFrechetDistance(math.prod(shape)).to(pl_module.device)

    def _update(self, pl_module, batch) -> None:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        self.metric.to(pl_module.device)
        self.metric.update(x, real=True)
        self.metric.update(pl_module.sample(self.samples_per_example * len(x)), real=False)

    def _log(self, pl_module, stage: str) -> None:
        pl_module.log(f"{stage}/frechet_gaussian", self.metric.compute())
        self.metric.reset()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._update(pl_module, batch)

    def on_validation_epoch_end(self, trainer, pl_module):
        self._log(pl_module, "val")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._update(pl_module, batch)

    def on_test_epoch_end(self, trainer, pl_module):
        self._log(pl_module, "test")
