"""FID-style scores with a small user-supplied feature extractor (works offline)."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from lvm.callbacks.fid import frechet_distance_metric

ROOT = Path(__file__).resolve().parents[1]


class MeanColours(nn.Module):
    """A tiny feature extractor: per-channel means and standard deviations, ``[n, 6]``; counts its calls."""

    num_features = 6
    calls = 0

    def forward(self, images):
        MeanColours.calls += 1
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
    from lvm.runs.cli import cli_main

    overlay = tmp_path / "fid.yaml"
    overlay.write_text(yaml.safe_dump({"trainer": {"callbacks": [{"class_path": "lvm.callbacks.FID", "init_args": {
        "num_samples": 64, "every_n_epochs": 1, "feature_extractor": {"class_path": f"{__name__}.MeanColours"}}}]}}))
    cli = cli_main(["--config", str(ROOT / "configs" / "quickstart.yaml"), "--config", str(overlay),
                    "--trainer.default_root_dir", str(tmp_path / "runs"), "--trainer.max_epochs", "1",
                    "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "2",
                    "--trainer.limit_test_batches", "2", "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
                    "--trainer.enable_progress_bar", "false", "--model.eval_num_points", "233"])
    metrics = json.loads((Path(cli.trainer.default_root_dir) / "metrics.json").read_text())
    assert metrics["fid/samples"] > 0 and metrics["fid/reconstructions"] >= 0


def test_the_real_features_are_computed_once_per_batch_and_the_scores_are_unchanged():
    from lvm.callbacks.fid import FID
    from lvm.likelihoods import BernoulliLikelihood
    from lvm.model import LatentVariableModel
    from lvm.networks import MLPDecoder
    from lvm.priors import TorusPrior
    from lvm.objectives import QMCObjective

    class Trainer:  # what FID reads of a trainer
        sanity_checking, testing, current_epoch = False, True, 0

    torch.manual_seed(0)
    model = LatentVariableModel(MLPDecoder([3, 8, 8], [16]), BernoulliLikelihood(), TorusPrior(2), QMCObjective(89),
                                eval_num_points=89)
    logged = {}
    model.log = lambda name, value: logged.__setitem__(name, value.item())
    callback = FID(num_samples=60, feature_extractor=MeanColours())
    callback.setup(Trainer(), model, "test")
    batches = [torch.rand(20, 3, 8, 8) for _ in range(3)]
    MeanColours.calls = 0
    torch.manual_seed(1)
    for x in batches:
        callback.update(Trainer(), model, x)
    assert MeanColours.calls == 3 * len(batches)  # real, samples, reconstructions: once each per batch
    callback.finish(Trainer(), model, "test")
    torch.manual_seed(1)  # the same samples, scored by two separate metrics that each see the real images
    reference = {name: frechet_distance_metric(MeanColours()) for name in ("samples", "reconstructions")}
    for x in batches:
        fakes = {"samples": model.sample(len(x)), "reconstructions": model.decode(model.embed(x))}
        for name, metric in reference.items():
            metric.update(x, real=True)
            metric.update(fakes[name], real=False)
    for name, metric in reference.items():
        assert logged[f"fid/{name}"] == pytest.approx(metric.compute().item(), rel=1e-5, abs=1e-6)


pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
