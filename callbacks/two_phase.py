"""Two-phase training (R-VAE paper, appendix C.1; Detlefsen et al. 2019): first the encoder and the
decoder mean, then, with those frozen, the decoder's precision network and the prior."""

from __future__ import annotations

import lightning as L
import torch

from lvm.analysis.embedding import dataset_indices
from lvm.batches import batch_data
from lvm.networks import RBFPrecision
from lvm.priors import Prior

__all__ = ["TwoPhaseTraining", "residual_precision"]


@torch.no_grad()
def residual_precision(model, dataset, batch_size: int = 1024, covariates: torch.Tensor | None = None) -> torch.Tensor:
    """``1 / mean_i (x_i - mu(z_i))^2`` per data dimension ``[D]``, z_i one draw from q(z | x_i)
    (``model.posterior_samples``): the precision of a homoscedastic Gaussian fitted to the
    residuals the reconstruction term sees. A conditional model decodes each example under its covariate codes
    ``covariates`` ``[n, C]`` (one row per item of ``dataset``, in its order)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    squared, count = 0.0, 0
    for batch in loader:
        x = batch_data(batch).to(model.device)
        with model.given(None if covariates is None else covariates[count:count + len(x)]):
            residual = model.flatten(x) - model.decoded_mean(model.posterior_samples(x, 1)[0])
        squared, count = squared + residual.pow(2).sum(0), count + len(x)
    return 1.0 / (squared / count).clamp_min(1e-6)


def _covariates(trainer, dataset) -> torch.Tensor | None:
    """The covariate codes ``[n, C]`` of the items of ``dataset`` (a split of the trainer's datamodule), or None."""
    codes = getattr(trainer.datamodule, "covariate_codes", None)
    return None if codes is None else codes[torch.as_tensor(dataset_indices(dataset), dtype=torch.long)]


class TwoPhaseTraining(L.Callback):
    """Trains the modules named in ``first`` (dotted attribute paths of the model, e.g. ``encoder``,
    ``decoder.mean``) for ``switch_epoch`` epochs and then those named in ``second`` (e.g.
    ``decoder.precision``, ``prior``); every other parameter stays frozen. At the switch, the
    whole training set is encoded once: every :class:`lvm.networks.RBFPrecision` of the second phase places
    its centres by k-means on the codes, starting from the inverse residual variance of the first phase's
    reconstructions (of draws from q) in each data dimension, every :class:`lvm.priors.Prior` of the second
    phase is placed on the codes (:meth:`lvm.priors.Prior.fit`), and the checkpoint
    callbacks forget their best scores, since models of the two phases are not comparable (the best
    checkpoint of the first phase stays on disk). The switch is saved in checkpoints, so a resumed run
    neither repeats nor skips it.

    Args:
        switch_epoch: the epoch at which the second phase starts (100 of 300 in the paper).
        first: modules trained before the switch.
        second: modules trained from the switch on.
    """

    def __init__(self, switch_epoch: int = 100, first: list[str] = ("encoder", "decoder.mean"),
                 second: list[str] = ("decoder.precision", "prior")):
        self.switch_epoch, self.first, self.second = switch_epoch, list(first), list(second)
        self.switched = False

    def state_dict(self) -> dict:
        return {"switched": self.switched}

    def load_state_dict(self, state_dict: dict) -> None:
        self.switched = state_dict["switched"]

    @staticmethod
    def _modules(model, paths: list[str]) -> list[torch.nn.Module]:
        try:
            return [model.get_submodule(path) for path in paths]
        except AttributeError as error:
            raise ValueError(f"TwoPhaseTraining: {error}; name modules of the model such as 'encoder', "
                             "'decoder.mean', 'decoder.precision', 'prior'.") from error

    def _train_only(self, model, paths: list[str]) -> None:
        model.requires_grad_(False)
        for module in self._modules(model, paths):
            module.requires_grad_(True)

    @staticmethod
    def _restart_model_selection(checkpoint) -> None:
        checkpoint.best_k_models, checkpoint.kth_best_model_path, checkpoint.best_model_path = {}, "", ""
        checkpoint.best_model_score = None
        checkpoint.kth_value = torch.tensor(float("inf") if checkpoint.mode == "min" else float("-inf"))

    def setup(self, trainer, pl_module, stage):
        self._modules(pl_module, self.first + self.second)  # fail early on a wrong name

    def on_train_epoch_start(self, trainer, pl_module):
        if not self.switched and trainer.current_epoch >= self.switch_epoch:
            dataset = trainer.datamodule.train_set
            codes = pl_module.encode_dataset(dataset)
            for module in self._modules(pl_module, self.second):
                for submodule in module.modules():
                    if isinstance(submodule, RBFPrecision):
                        submodule.fit_centres(codes, residual_precision(pl_module, dataset,
                                                                        covariates=_covariates(trainer, dataset)))
                    elif isinstance(submodule, Prior):
                        submodule.fit(codes)
            for checkpoint in trainer.checkpoint_callbacks:
                self._restart_model_selection(checkpoint)
            self.switched = True
        self._train_only(pl_module, self.second if self.switched else self.first)
