"""Fit the model's latent sampler (e.g. a Gaussian mixture) to the training codes during training."""

from __future__ import annotations

import lightning as L

__all__ = ["FitLatentSampler"]


class FitLatentSampler(L.Callback):
    """Encodes the whole training set with ``model.latent_code`` and fits ``model.latent_sampler``
    at the end of every ``every_n_epochs``-th validation epoch, before the checkpoints of that epoch
    are written, so every checkpoint (the best one included) holds a sampler fitted to its own
    encoder. Every process fits the same data with the same seed, so the samplers agree under DDP.

    Args:
        every_n_epochs: refit period in epochs.
        batch_size: encoding batch size.
    """

    def __init__(self, every_n_epochs: int = 1, batch_size: int = 1024):
        self.every_n_epochs, self.batch_size = every_n_epochs, batch_size

    def setup(self, trainer, pl_module, stage):
        if pl_module.latent_sampler is None or pl_module.posterior is None:
            raise ValueError("FitLatentSampler needs model.latent_sampler (e.g. lvm.samplers.GaussianMixtureSampler) "
                             "and an encoder whose codes it fits.")
        if not hasattr(trainer.datamodule, "train_set"):
            raise ValueError("FitLatentSampler reads trainer.datamodule.train_set; this datamodule has none.")

    def fit(self, trainer, pl_module) -> None:
        pl_module.latent_sampler.fit(pl_module.encode_dataset(trainer.datamodule.train_set, self.batch_size))

    def on_validation_epoch_end(self, trainer, pl_module):
        if not trainer.sanity_checking and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.fit(trainer, pl_module)
