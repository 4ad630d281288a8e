"""The held-out metrics under DDP (2 CPU processes, gloo) equal the single-process values."""

import lightning as L
import pytest
import torch
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

from lvm.likelihoods import GaussianLikelihood
from lvm.model import LatentVariableModel
from lvm.networks import MLPDecoder
from lvm.priors import TorusPrior
from lvm.objectives import QMCObjective

pytestmark = pytest.mark.slow


class SixtyFourDigits(L.LightningDataModule):
    """64 digits in batches of 8: divisible by 2 processes, so no sample is padded in."""

    def test_dataloader(self):
        digits = load_digits()
        x = torch.tensor(digits.images[:64], dtype=torch.float32).div(16).unsqueeze(1)
        return DataLoader(TensorDataset(x, torch.tensor(digits.target[:64])), batch_size=8)


class UnevenDigits(SixtyFourDigits):
    """Rank 0 gets 40 of the 64 digits (5 batches), rank 1 the other 24 (3 batches)."""

    def test_dataloader(self):
        dataset = super().test_dataloader().dataset
        part = range(40) if self.trainer.global_rank == 0 else range(40, 64)
        return DataLoader(torch.utils.data.Subset(dataset, list(part)), batch_size=8)


def _test(devices: int, datamodule: L.LightningDataModule) -> dict:
    torch.manual_seed(0)
    model = LatentVariableModel(MLPDecoder([1, 8, 8], [16]), GaussianLikelihood(0.1), TorusPrior(2), QMCObjective(89),
                                eval_num_points=233)
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy="ddp_spawn" if devices > 1 else "auto",
                        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        use_distributed_sampler=not isinstance(datamodule, UnevenDigits))
    return trainer.test(model, datamodule=datamodule, verbose=False)[0]


def test_heldout_likelihood_under_ddp_equals_the_single_process_value():
    single, distributed = _test(1, SixtyFourDigits()), _test(2, SixtyFourDigits())
    for key in ("test/log_likelihood", "test/bits_per_dim"):
        assert distributed[key] == pytest.approx(single[key], abs=1e-5), key
    # ranks with different batch counts neither deadlock nor bias the example-weighted mean
    uneven = _test(2, UnevenDigits())
    assert uneven["test/log_likelihood"] == pytest.approx(single["test/log_likelihood"], abs=1e-5)
