"""Per-step overheads removed for training throughput (issue 19): batches of in-memory data sets fetched with one
gather per tensor, and the optimizer's fused kernel when the config leaves the implementation unset. Both change
the speed only: the same batches in the same order, the same updates."""

import pytest
import torch
from torch.utils.data import DataLoader, Subset, TensorDataset

from lvm.datamodules.base import TensorBatches, batched
from lvm.datamodules.digits import DigitsDataModule
from lvm.datamodules.training_order import EpochShuffle
from lvm.model import LatentVariableModel
from lvm.runs.optimizer_resume import OptimizerResume


def test_in_memory_batches_are_gathered_once_and_equal_the_per_example_loader(monkeypatch):
    datamodule = DigitsDataModule(batch_size=64, seed=3)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    assert isinstance(loader.dataset, TensorBatches)
    # the reference: PyTorch's per-example fetch and collate over the same Subset, in the same order
    reference = DataLoader(datamodule.train_set, batch_size=64, sampler=EpochShuffle(datamodule.train_set, seed=3))
    monkeypatch.setattr(TensorBatches, "__getitem__", lambda *_: pytest.fail("fetched one example at a time"))
    ours, theirs = list(loader), list(reference)
    assert len(ours) == len(theirs) == -(-len(datamodule.train_set) // 64)
    for (x, y), (x_ref, y_ref) in zip(ours, theirs):
        assert torch.equal(x, x_ref) and torch.equal(y, y_ref)


def test_nested_subsets_map_to_the_right_examples_and_other_datasets_are_left_alone():
    data = TensorDataset(torch.arange(10.0)[:, None], torch.arange(10))
    nested = Subset(Subset(data, [9, 7, 5, 3, 1, 0]), range(1, 5))  # examples 7, 5, 3, 1
    view = batched(nested)
    assert [int(view[i][1]) for i in range(len(view))] == [7, 5, 3, 1]
    x, y = view.__getitems__([3, 0])
    assert y.tolist() == [1, 7] and x[:, 0].tolist() == [1.0, 7.0]

    class Jittered(TensorDataset):  # a subclass with its own __getitem__ keeps the per-example path
        def __getitem__(self, index):
            return (self.tensors[0][index] + 1,)

    jittered = Jittered(torch.zeros(4, 1))
    assert batched(jittered) is jittered and batched(Subset(jittered, [0])).dataset is jittered


def _model(optimizer=torch.optim.Adam):
    from lvm.likelihoods import GaussianLikelihood
    from lvm.networks import MLPDecoder, MLPEncoder
    from lvm.posteriors import DiagonalGaussianPosterior
    from lvm.priors import StandardNormalPrior
    from lvm.objectives import ELBO

    torch.manual_seed(0)
    return LatentVariableModel(MLPDecoder([1, 8, 8], [16]), GaussianLikelihood(0.1), StandardNormalPrior(2), ELBO(),
                               MLPEncoder(4, [16]), DiagonalGaussianPosterior(), optimizer=optimizer)


def test_the_fused_optimizer_is_chosen_when_unset_and_gives_the_same_updates():
    from functools import partial

    model = _model()
    optimizer = model.configure_optimizers()
    assert optimizer.defaults["fused"] is True
    explicit = _model(partial(torch.optim.Adam, foreach=False)).configure_optimizers()
    assert not explicit.defaults["fused"] and explicit.defaults["foreach"] is False  # the config's choice stands
    assert _model(torch.optim.LBFGS).configure_optimizers().defaults.get("fused") is None  # no fused kernel: as built
    # the same settings on record, so resuming a checkpoint written before keeps Adam's state
    assert OptimizerResume.settings(optimizer, None) == OptimizerResume.settings(explicit, None)
    # ten steps of each implementation from the same start end at the same parameters
    x = torch.rand(32, 1, 8, 8)
    fused_model, plain_model = _model(), _model(partial(torch.optim.Adam, foreach=False))
    plain_model.load_state_dict(fused_model.state_dict())
    for model in (fused_model, plain_model):
        optimizer = model.configure_optimizers()
        torch.manual_seed(1)
        for _ in range(10):
            optimizer.zero_grad()
            model.objective(model, x)["loss"].backward()
            optimizer.step()
    for a, b in zip(fused_model.parameters(), plain_model.parameters()):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("logger", [False, True])
def test_training_terms_are_logged_for_a_logger_and_on_each_epochs_last_batch(tmp_path, monkeypatch, logger):
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    logged = []
    log_objective = LatentVariableModel._log_objective

    def counting(self, outputs, stage, batch_size):
        if stage == "train":
            logged.append((self.current_epoch, self.trainer.fit_loop.epoch_loop.batch_progress.current.ready - 1))
        log_objective(self, outputs, stage, batch_size)

    monkeypatch.setattr(LatentVariableModel, "_log_objective", counting)
    trainer = L.Trainer(max_epochs=2, limit_train_batches=7, limit_val_batches=1, log_every_n_steps=3,
                        logger=CSVLogger(tmp_path) if logger else False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    model = _model()
    model.eval_every_n_epochs = 0
    trainer.fit(model, datamodule=DigitsDataModule(batch_size=16))
    # global steps 3 and 6 (batches 2 and 5 of the first epoch; batch 1 and 4 of the second, steps 9 and 12) with a
    # logger; the last batch (6) of each epoch always
    expected = [(0, 2), (0, 5), (0, 6), (1, 1), (1, 4), (1, 6)] if logger else [(0, 6), (1, 6)]
    assert logged == expected
    assert "train/loss" in trainer.callback_metrics


def test_the_start_up_heap_is_frozen_while_fitting_and_released_after(tmp_path):
    """Objects alive when fitting starts are out of the collector's traversals during training (a full collection
    of the start-up heap took 0.25-0.3 s on the digits run), and collectable again once fitting ends."""
    import gc

    import lightning as L

    from lvm.runs.heap import FreezeStartupHeap

    frozen_during = []

    class Probe(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            frozen_during.append(gc.get_freeze_count())

    before = gc.get_freeze_count()
    sentinel = object()  # alive before fitting: frozen with the rest
    trainer = L.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0,
                        callbacks=[FreezeStartupHeap(), Probe()], default_root_dir=tmp_path)
    model = _model()
    model.eval_every_n_epochs = 0
    trainer.fit(model, datamodule=DigitsDataModule(batch_size=16))
    assert frozen_during and frozen_during[0] > before + 1000 and sentinel is not None
    assert gc.get_freeze_count() == before


def test_the_cli_adds_the_heap_freeze_to_every_run(tmp_path):
    from pathlib import Path

    from lvm.runs.cli import LVMCLI
    from lvm.runs.heap import FreezeStartupHeap

    config = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"
    cli = LVMCLI(["--config", str(config), "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path),
                  "--trainer.callbacks", "[]"], fit_and_test=False)
    assert any(isinstance(callback, FreezeStartupHeap) for callback in cli.trainer.callbacks)
