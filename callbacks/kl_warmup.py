"""Deterministic KL warm-up (R-VAE paper, appendix C.1: "for a VAE, it was deterministically warmed up for 100 epochs";
Sønderby et al. 2016): the KL term of the training loss is weighted by beta, which rises linearly to 1 over the
first epochs and then stays at 1."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.utilities import rank_zero_warn

__all__ = ["KLWarmup"]


class KLWarmup(L.Callback):
    """Sets the objective's KL weight (its ``kl_weight`` attribute, e.g. :attr:`lvm.objectives.ELBO.kl_weight`) at the
    start of every training epoch ``e`` (counted from 0) to

        beta(e) = start + (1 - start) * min(1, (e + 1) / epochs),

    the schedule of the R-VAE authors' code (``beta = min(epoch / annealing_epochs, 1)``, epochs counted from 1):
    beta is 1/epochs in the first epoch (with ``start`` 0), reaches 1 in epoch ``epochs - 1`` (the last epoch of
    the R-VAE paper's first phase when ``epochs`` is :class:`lvm.callbacks.TwoPhaseTraining`'s ``switch_epoch``) and
    stays 1. beta only reweights the training loss: the objective still logs the unweighted ``elbo`` and ``kl``,
    and held-out batches score the unweighted ELBO. beta is logged as ``train/kl_weight``.

    The schedule is a function of the epoch, and its settings and current beta are saved in checkpoints, so a
    resumed run continues it where it stopped (a resume with other settings warns and follows the new ones).
    Objectives without a weighted KL term (:attr:`lvm.objective.Objective.kl_weight` is ``None``), such as
    :class:`lvm.objectives.IWAE`, whose bound has no separate KL term, are refused.

    Args:
        epochs: the number of epochs over which beta rises to 1 (100 in the paper, the length of its first phase).
        start: the ramp's origin, beta(-1) (0 in the paper): the first epoch trains with ``start + (1 - start) / epochs``.
    """

    def __init__(self, epochs: int = 100, start: float = 0.0):
        if int(epochs) != epochs or epochs < 1:
            raise ValueError(f"KLWarmup: epochs must be a positive integer; got {epochs!r}.")
        if not 0.0 <= start <= 1.0:
            raise ValueError(f"KLWarmup: start must lie in [0, 1]; got {start!r}.")
        self.epochs, self.start = int(epochs), float(start)
        self.kl_weight: float | None = None  # the weight last applied
        self.epoch: int | None = None  # the epoch it was applied in

    def weight(self, epoch: int) -> float:
        """beta in training epoch ``epoch`` (counted from 0)."""
        return self.start + (1.0 - self.start) * min(1.0, (epoch + 1) / self.epochs)

    def state_dict(self) -> dict:
        return {"epochs": self.epochs, "start": self.start, "kl_weight": self.kl_weight, "epoch": self.epoch}

    def load_state_dict(self, state_dict: dict) -> None:
        saved = (state_dict["epochs"], state_dict["start"])
        if saved != (self.epochs, self.start):
            rank_zero_warn(f"KLWarmup: the checkpoint's schedule (epochs={saved[0]}, start={saved[1]}) differs from this "
                           f"run's (epochs={self.epochs}, start={self.start}); the resumed run follows this run's.")
        self.kl_weight, self.epoch = state_dict["kl_weight"], state_dict["epoch"]

    @staticmethod
    def _objective(pl_module):
        objective = getattr(pl_module, "objective", None)
        if objective is None or objective.kl_weight is None:
            name = type(objective).__module__ + "." + type(objective).__name__ if objective is not None else "none"
            raise ValueError(
                f"KLWarmup weights the KL term of the training objective through its `kl_weight` attribute, but the "
                f"objective {name} has no weighted KL term. Use it with a KL-based objective that exposes "
                "`kl_weight` (lvm.objectives.ELBO), or remove lvm.callbacks.KLWarmup from trainer.callbacks.")
        return objective

    def setup(self, trainer, pl_module, stage):
        self._objective(pl_module)  # fail before training on an objective without a KL term

    def on_train_epoch_start(self, trainer, pl_module):
        epoch = trainer.current_epoch
        self.kl_weight, self.epoch = self.weight(epoch), epoch
        self._objective(pl_module).kl_weight = self.kl_weight

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        # Logged like the objective's train/ terms (lvm.model.LatentVariableModel.training_step): when the loggers write
        # and on the epoch's first batch, so the trainer's metrics (metrics.json, monitors) hold this epoch's weight.
        if batch_idx == 0 or trainer._logger_connector.should_update_logs:
            pl_module.log("train/kl_weight", self.kl_weight, on_step=True, on_epoch=False, batch_size=1)
