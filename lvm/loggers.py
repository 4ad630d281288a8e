"""Weights & Biases logging that is offline unless the user opts in."""

from __future__ import annotations

import os

from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger

__all__ = ["WandbLogger", "wandb_offline_by_default"]


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
