"""The held-out estimates run on a schedule (``model.eval_every_n_epochs``), model selection uses only the epochs
that computed them, and a resumed run keeps the schedule."""

import csv
from pathlib import Path

import pytest
import torch

from lvm.runs.cli import cli_main
from lvm.estimators.heldout import HeldOutEvaluation

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--model.eval_num_points", "233", "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
        "--trainer.callbacks", "[]", "--model.eval_every_n_epochs", "2"]

pytestmark = pytest.mark.slow


@pytest.fixture
def evaluated(monkeypatch):
    """(stage, epoch) of every held-out evaluation batch outside the sanity check."""
    calls = []
    update = HeldOutEvaluation.update

    def counting_update(self, model, x, stage):
        if not model.trainer.sanity_checking:
            calls.append((stage, model.current_epoch))
        return update(self, model, x, stage)

    monkeypatch.setattr(HeldOutEvaluation, "update", counting_update)
    return calls


def _run(root, *args):
    return cli_main(["--config", str(ROOT / "configs" / "quickstart.yaml"), "--trainer.default_root_dir", str(root),
                     *FAST, *args])


def _val_log_likelihoods(run_dir: Path) -> dict[int, float]:
    with open(run_dir / "metrics.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("val/log_likelihood")]
    return {int(row["epoch"]): float(row["val/log_likelihood"]) for row in rows}


def test_estimates_run_on_scheduled_epochs_and_the_best_checkpoint_has_one(tmp_path, evaluated):
    cli = _run(tmp_path, "--trainer.max_epochs", "5")
    val_epochs = sorted({epoch for stage, epoch in evaluated if stage == "val"})
    assert val_epochs == [1, 3, 4]  # every 2nd epoch and the last
    assert any(stage == "test" for stage, _ in evaluated)
    run_dir = Path(cli.trainer.default_root_dir)
    logged = _val_log_likelihoods(run_dir)
    assert sorted(logged) == val_epochs  # the estimate is logged exactly when computed
    best = cli.trainer.checkpoint_callback
    best_epoch = torch.load(best.best_model_path, weights_only=False)["epoch"]
    assert best_epoch in val_epochs and best.best_model_score.item() == pytest.approx(max(logged.values()))
    assert best_epoch == max(logged, key=logged.get)


def test_a_resumed_run_keeps_the_schedule(tmp_path, evaluated):
    first = _run(tmp_path, "--trainer.max_epochs", "3")
    last = Path(first.trainer.default_root_dir) / "checkpoints" / "last.ckpt"
    evaluated.clear()
    _run(tmp_path, "--trainer.max_epochs", "6", "--ckpt_path", str(last))
    assert sorted({epoch for stage, epoch in evaluated if stage == "val"}) == [3, 5]  # epochs 4 and 6 (1-based)


def test_every_epoch_when_asked(tmp_path, evaluated):
    _run(tmp_path, "--trainer.max_epochs", "3", "--model.eval_every_n_epochs", "1")
    assert sorted({epoch for stage, epoch in evaluated if stage == "val"}) == [0, 1, 2]
