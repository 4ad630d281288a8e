import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def float64():
    """Run a test with float64 as the default dtype (exact comparisons against references)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture(scope="session")
def quickstart_checkpoint(tmp_path_factory) -> Path:
    """The quick start (its callbacks included) trained for five steps: ``<run>/checkpoints/last.ckpt``."""
    from lvm.runs.cli import cli_main

    root = tmp_path_factory.mktemp("quickstart")
    cli = cli_main(["--config", str(Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"),
                    "--trainer.default_root_dir", str(root), "--trainer.max_epochs", "1",
                    "--trainer.limit_train_batches", "5", "--trainer.logger", "false",
                    "--trainer.enable_progress_bar", "false", "--model.eval_num_points", "233"])
    return Path(cli.trainer.default_root_dir) / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of a headless-capable Chromium (tests/browser.py renders pages in it); the test is skipped without one."""
    from browser import find_chromium

    path = find_chromium()
    if path is None:
        pytest.skip("no chromium, chromium-browser or google-chrome on PATH: cannot render pages")
    return path
