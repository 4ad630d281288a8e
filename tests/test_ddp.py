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


def test_every_process_of_a_multi_process_run_names_one_run_directory(tmp_path, monkeypatch):
    """Regression: under DDP the processes Lightning launches ran the CLI again and each made its own timestamped run
    directory (a 2-process quick start left an empty second one). They now inherit the first process's, and tasks a
    scheduler starts together name theirs after the job."""
    from lvm.runs import cli

    for variable in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_JOB_ID", "SLURM_STEP_ID",
                     "TORCHELASTIC_RUN_ID", "WORLD_SIZE", cli.RUN_DIR_VARIABLE):
        monkeypatch.delenv(variable, raising=False)
    first = cli.new_run_dir(tmp_path, "quickstart")
    assert first.parent == tmp_path and first.name.startswith("quickstart-")
    first.mkdir()  # (the CLI creates it once the config is checked)
    monkeypatch.setenv(cli.RUN_DIR_VARIABLE, str(first))  # what the first process sets before DDP launches the others
    assert cli.new_run_dir(tmp_path, "quickstart") != first  # a later run of the first process: a new directory
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert cli.new_run_dir(tmp_path, "quickstart") == first  # a launched process: the first one's
    monkeypatch.delenv("LOCAL_RANK")
    monkeypatch.delenv(cli.RUN_DIR_VARIABLE)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    for rank in ("0", "5"):
        monkeypatch.setenv("SLURM_PROCID", rank)
        assert cli.new_run_dir(tmp_path, "quickstart") == tmp_path / "quickstart-job4242"
    monkeypatch.setenv("SLURM_NTASKS", "1")  # one task: an ordinary run
    assert cli.new_run_dir(tmp_path, "quickstart").name != "quickstart-job4242"
