"""Resuming with other optimizer settings: a lower learning rate after a NaN stop, or ``--reset_optimizer``."""

from __future__ import annotations

import warnings

import lightning as L
import torch

__all__ = ["OptimizerResume"]


class OptimizerResume(L.Callback):
    """Records the optimizer's and scheduler's settings in every checkpoint (``optimizer_settings``). When a run resumes
    with settings other than the checkpoint's (e.g. ``--model.optimizer.init_args.lr 1e-4``), or with ``reset``
    (the CLI's ``--reset_optimizer``), the checkpoint's optimizer and scheduler states (Adam's moments, the scheduled
    learning rate) are replaced by fresh ones built from the current settings, which the restored state would
    otherwise overwrite; the model's weights and the training progress are restored. Added to every run by the CLI.

    Args:
        reset: start a fresh optimizer and scheduler on resume even when the settings are unchanged.
    """

    def __init__(self, reset: bool = False):
        self.reset = reset

    @staticmethod
    def fresh_optimization(pl_module: L.LightningModule) -> tuple[torch.optim.Optimizer, object | None]:
        """A new optimizer and scheduler (or ``None``) from the module's ``configure_optimizers``."""
        configured = pl_module.configure_optimizers()
        if isinstance(configured, dict):
            return configured["optimizer"], configured["lr_scheduler"]["scheduler"]
        return configured, None

    @staticmethod
    def settings(optimizer: torch.optim.Optimizer, scheduler) -> str:
        """The optimizer's and scheduler's constructor settings (lr, betas, step size, ...), not their running state nor
        the implementation (fused, foreach), which gives the same updates."""
        implementation = {"fused", "foreach"}
        counters = {"last_epoch", "_step_count", "_last_lr", "base_lrs", "_get_lr_called_within_step", "best",
                    "num_bad_epochs", "cooldown_counter", "_is_initial"}
        schedule = None if scheduler is None else (type(scheduler).__name__, sorted(
            (k, repr(v)) for k, v in scheduler.state_dict().items() if k not in counters))
        return repr((type(optimizer).__name__, sorted(
            (k, repr(v)) for k, v in optimizer.defaults.items() if k not in implementation), schedule))

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint["optimizer_settings"] = self.settings(*self.fresh_optimization(pl_module))

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        if "optimizer_states" not in checkpoint:
            return
        optimizer, scheduler = self.fresh_optimization(pl_module)
        changed = checkpoint.get("optimizer_settings") not in (None, self.settings(optimizer, scheduler))
        if not (changed or self.reset):
            return
        warnings.warn("Resuming with a fresh optimizer" + (" and scheduler" if scheduler is not None else "") + (
            ": its settings differ from the checkpoint's" if changed else " (--reset_optimizer)")
            + "; the model's weights and the training progress are restored.", stacklevel=2)
        checkpoint["optimizer_states"] = [optimizer.state_dict()]
        checkpoint["lr_schedulers"] = [] if scheduler is None else [scheduler.state_dict()]
