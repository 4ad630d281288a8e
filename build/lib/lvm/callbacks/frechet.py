"""Log the Gaussian Frechet ("FID-like") distance between held-out data and model samples."""

from __future__ import annotations

import math

from lvm.estimators.metrics import GaussianFrechetDistance

from .heldout_batches import HeldOutBatches

__all__ = ["GaussianFrechetScore"]


class GaussianFrechetScore(HeldOutBatches):
    """For every validation and test batch, adds the batch (real) and as many ``model.sample``
    draws (generated; the fitted latent sampler if any, else the prior) to a
    :class:`lvm.estimators.metrics.GaussianFrechetDistance`, and logs ``{stage}/frechet_gaussian`` at the end of
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

    def update(self, trainer, pl_module, x) -> None:
        self.metric.to(pl_module.device)
        self.metric.update(x, real=True)
        self.metric.update(pl_module.sample(self.samples_per_example * len(x)), real=False)

    def reset(self) -> None:
        if self.metric is not None:
            self.metric.reset()

    def finish(self, trainer, pl_module, stage: str) -> None:
        pl_module.log(f"{stage}/frechet_gaussian", self.metric.compute())
        self.metric.reset()
