"""FID-style scores with a small user-supplied feature extractor (works offline)."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from callbacks.fid import frechet_distance_metric

ROOT = Path(__file__).resolve().parents[1]


class MeanColours(nn.Module):
    """A tiny feature extractor: per-channel means and standard deviations, ``[n, 6]``."""

    num_features = 6

    def forward(self, images):
        images = images.float() / 255 if images.dtype == torch.uint8 else images
        return torch.cat([images.mean((2, 3)), images.std((2, 3))], dim=1)


def test_fid_is_zero_for_identical_sets_and_grows_with_a_shift():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(400, 3, 16, 16, generator=generator) * torch.rand(400, 3, 1, 1, generator=generator)
    metric = frechet_distance_metric(MeanColours())
    metric.update(images, real=True)
    metric.update(images, real=False)
    identical = metric.compute().item()
    metric.reset()
    metric.update(images, real=True)
    metric.update((images + 0.2).clamp(0, 1), real=False)
    shifted = metric.compute().item()
    assert abs(identical) < 1e-3 and shifted > 100 * max(abs(identical), 1e-4) and shifted > 0.01


def test_fid_callback_logs_both_scores_offline(tmp_path):
    from lvm.cli import cli_main

    overlay = tmp_path / "fid.yaml"
    overlay.write_text(yaml.safe_dump({"trainer": {"callbacks": [{"class_path": "callbacks.FID", "init_args": {
        "num_samples": 64, "every_n_epochs": 1, "feature_extractor": {"class_path": f"{__name__}.MeanColours"}}}]}}))
    cli = cli_main(["--config", str(ROOT / "configs" / "quickstart.yaml"), "--config", str(overlay),
                    "--trainer.default_root_dir", str(tmp_path / "runs"), "--trainer.max_epochs", "1",
                    "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "2",
                    "--trainer.limit_test_batches", "2", "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
                    "--trainer.enable_progress_bar", "false", "--model.eval_num_points", "233"])
    metrics = json.loads((Path(cli.trainer.default_root_dir) / "metrics.json").read_text())
    assert metrics["fid/samples"] > 0 and metrics["fid/reconstructions"] >= 0


pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
