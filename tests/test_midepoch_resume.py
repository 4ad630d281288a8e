"""A run stopped by a SIGTERM in the middle of an epoch and resumed with the printed command ends exactly where an
uninterrupted run ends (bit-exact on the CPU): the interrupted epoch goes on with the batches it had not seen, in its
order, and the later epochs draw the orders they would have drawn. In-memory (the digits) and HDF5 (vocalization
spectrograms, read by DataLoader workers) data alike; Lightning's warning that the dataloader is not resumable is
not given."""

import contextlib
import csv
import json
import os
import signal
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from lvm.datamodules.digits import DigitsDataModule
from lvm.runs.cli import cli_main

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "configs" / "quickstart.yaml")
FAST = ["--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1", "--trainer.log_every_n_steps", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--model.eval_num_points", "233", "--model.eval_num_samples", "10",
        "--trainer.logger", "lightning.pytorch.loggers.CSVLogger"]
NOT_RESUMABLE = "dataloader is not resumable"


def _digits_loader(num_workers: int):
    datamodule = DigitsDataModule(batch_size=256, num_workers=num_workers)
    datamodule.setup("fit")
    return datamodule.train_dataloader()


def _epoch(loader, epoch: int) -> list[torch.Tensor]:
    """The labels of each batch of one pass, after Lightning's ``set_epoch``."""
    loader.batch_sampler.sampler.set_epoch(epoch)
    return [labels for _, labels in loader]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_the_training_loader_resumes_at_the_first_batch_the_loop_had_not_received(num_workers):
    uninterrupted = _digits_loader(num_workers)
    first, second = _epoch(uninterrupted, 0), _epoch(uninterrupted, 1)
    assert len(first) == 5 and not torch.equal(torch.cat(first), torch.cat(second))  # a new order each epoch

    interrupted = _digits_loader(num_workers)
    interrupted.batch_sampler.sampler.set_epoch(1)
    batches = iter(interrupted)
    seen = [next(batches)[1] for _ in range(2)]  # workers have fetched further ahead: not counted
    assert interrupted.state_dict() == {"epoch": 1, "batches": 2}
    resumed = _digits_loader(num_workers)
    resumed.load_state_dict(interrupted.state_dict())
    rest = _epoch(resumed, 1)
    assert torch.equal(torch.cat(seen + rest), torch.cat(second))
    assert resumed.state_dict() == {"epoch": 1, "batches": 5}
    # a state from an epoch's end is not applied to the next epoch, which starts at its first batch
    again = _digits_loader(num_workers)
    again.load_state_dict(resumed.state_dict())
    assert torch.equal(torch.cat(_epoch(again, 2)), torch.cat(_epoch(uninterrupted, 2)))


class SigtermAtSteps(L.Callback):
    """Sends this process a SIGTERM after the optimizer steps ``steps`` (a preemption mid-epoch): Lightning's handler
    stops the run after that batch, ``last.ckpt`` is written and the CLI exits with status 143."""

    def __init__(self, steps: list[int]):
        self.steps = steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step in self.steps:
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN), "no SIGTERM handler"
            os.kill(os.getpid(), signal.SIGTERM)


def _callbacks(steps: list[int]) -> list[str]:
    return ["--trainer.callbacks", json.dumps([{"class_path": f"{__name__}.SigtermAtSteps", "init_args": {"steps": steps}}])]


def _train(root: Path, data: list[str], *args: str) -> None:
    cli_main(["--config", QUICKSTART, "--trainer.default_root_dir", str(root), *FAST, *data, *args])


def _interrupted_and_resumed(root: Path, data: list[str], epochs: str, steps: list[int]) -> tuple[Path, list[str]]:
    """A run stopped by a SIGTERM after each of ``steps``, resumed each time with the command it prints (its
    ``config.yaml`` and ``last.ckpt``); its directory and the warnings given."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(SystemExit, match="143"):
            _train(root, data, "--trainer.max_epochs", epochs, *_callbacks(steps))
        run = next(root.iterdir())
        last = run / "checkpoints" / "last.ckpt"
        for i, step in enumerate(steps):
            assert torch.load(last, weights_only=False)["global_step"] == step
            with pytest.raises(SystemExit, match="143") if i + 1 < len(steps) else contextlib.nullcontext():
                cli_main(["--config", str(run / "config.yaml"), "--ckpt_path", str(last)])
    return run, [str(warning.message) for warning in caught]


def _records(run: Path) -> tuple[dict, list[dict], dict]:
    """The last checkpoint's parameters, the CSV history and ``metrics.json`` of a run."""
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    history = list(csv.DictReader((run / "metrics.csv").open()))
    return state, history, json.loads((run / "metrics.json").read_text())


def _assert_same_run(straight: Path, resumed: Path) -> None:
    (expected, expected_history, expected_metrics), (state, history, metrics) = _records(straight), _records(resumed)
    assert expected.keys() == state.keys()
    assert [k for k in expected if not torch.equal(expected[k], state[k])] == []
    assert history == expected_history
    assert metrics == expected_metrics


def _vocalizations(tmp_path: Path) -> list[str]:
    """200 syllables of 8 x 8 spectrograms in an AVA-style HDF5 file, read by two DataLoader workers."""
    from lvm.datamodules.miniatures import write_vocalizations

    folder = tmp_path / "vocalizations"
    folder.mkdir()
    specs = np.random.default_rng(1).random((200, 8, 8)).astype(np.float32)
    write_vocalizations(folder / "bird.h5", 200, specs=specs)
    return ["--data", "lvm.datamodules.VocalizationsDataModule", "--data.init_args.root", str(folder),
            "--data.init_args.batch_size", "32", "--data.init_args.num_workers", "2"]


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["digits", "vocalizations"])
def test_a_run_preempted_mid_epoch_and_resumed_equals_an_uninterrupted_run(tmp_path, dataset):
    """Digits: 1258 training images in batches of 256 (5 per epoch, the last one short), stopped in epoch 0 and in
    epoch 1. Vocalizations: 140 training syllables in batches of 32 (5 per epoch), stopped in epoch 1."""
    data, steps = (["--data.init_args.batch_size", "256"], [2, 8]) if dataset == "digits" else (_vocalizations(tmp_path), [7])
    _train(tmp_path / "straight", data, "--trainer.max_epochs", "3", *_callbacks([]))
    resumed, messages = _interrupted_and_resumed(tmp_path / "resumed", data, "3", steps)
    _assert_same_run(next((tmp_path / "straight").iterdir()), resumed)
    assert not [m for m in messages if NOT_RESUMABLE in m]
