"""``python -m lvm.tools.compare`` on the digits: three tiny configs, one row per run, finite values, the three files."""

import math
from pathlib import Path

import pandas as pd
import pytest

from lvm.tools.compare import main

ROOT = Path(__file__).resolve().parents[1]



@pytest.mark.slow
def test_compare_writes_one_row_per_run_and_the_report(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    configs = [str(ROOT / "configs" / f"{name}.yaml") for name in ("quickstart", "digits_vae", "digits_iwae")]
    main(["--configs", *configs, "--out", str(tmp_path), "--trainer.max_epochs", "2", "--trainer.limit_train_batches",
          "3", "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "2",
          "--trainer.enable_progress_bar", "false", "--model.eval_num_points", "233", "--trainer.callbacks", "[]"])
    table = pd.read_csv(tmp_path / "results.csv")
    assert list(table["config"]) == ["quickstart", "digits_vae", "digits_iwae"]
    assert list(table["objective"]) == ["QMCObjective", "ELBO", "IWAE"] and set(table["latent_dim"]) == {2}
    for column in ("log_likelihood", "bits_per_dim", "seconds_per_epoch", "peak_memory_mb"):
        assert all(math.isfinite(value) for value in table[column]), column
    assert math.isnan(table.loc[0, "iwae_bound"]) and math.isfinite(table.loc[1, "iwae_bound"])  # where defined
    assert (table["log_likelihood"] >= table["iwae_bound"].fillna(-math.inf) - 0.05).all()
    assert all(Path(path).is_file() for path in table["checkpoint"])
    report = (tmp_path / "report.md").read_text()
    assert all(name in report for name in ("quickstart", "digits_vae", "digits_iwae"))
    assert (tmp_path / "report.png").stat().st_size > 0


def test_the_epoch_timer_is_a_lightning_callback_under_both_paths():
    """``EpochTimer`` lives in :mod:`lvm.tools.epoch_timer` (so that ``--help`` needs no Lightning) and is still
    ``lvm.tools.compare.EpochTimer`` (the path older runs' configs name)."""
    import importlib

    import lightning as L

    from lvm.tools.compare import EpochTimer
    from lvm.tools.epoch_timer import EpochTimer as timer

    assert EpochTimer is timer and issubclass(timer, L.Callback)
    assert getattr(importlib.import_module("lvm.tools.compare"), "EpochTimer") is timer
    with pytest.raises(AttributeError):
        importlib.import_module("lvm.tools.compare").NoSuchName


def test_one_seed_leaves_the_spread_empty_and_the_figure_says_so(tmp_path):
    """With one seed the standard deviation over seeds is undefined: not 0 in the table, not '± sd over 1 seed(s)'."""
    from lvm.tools.compare import _report

    runs = pd.DataFrame({"config": ["a", "b"], "objective": ["QMCObjective", "ELBO"], "latent_dim": [2, 2],
                         "log_likelihood": [-30.0, -32.0], "bits_per_dim": [1.0, 1.1], "iwae_bound": [math.nan, -33.0],
                         "seconds_per_epoch": [0.1, 0.1], "peak_memory_mb": [500.0, 510.0]})
    summary = _report(runs, tmp_path, 1, [])
    assert summary["log_likelihood_sd"].isna().all()
    assert "| a | QMCObjective | 2 | -30 |  |" in (tmp_path / "report.md").read_text()
    two = _report(pd.concat([runs, runs.assign(log_likelihood=[-31.0, -34.0])]), tmp_path, 2, [])
    assert list(two["log_likelihood_sd"].round(3)) == [0.707, 1.414]
