"""FID of samples and of reconstructions against held-out images (torchmetrics' FrechetInceptionDistance,
whose Inception network is torch-fidelity's), or an FID-style score with any feature extractor."""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from .heldout_batches import HeldOutBatches

__all__ = ["FID", "frechet_distance_metric"]

INCEPTION_WEIGHTS = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                     "weights-inception-2015-12-05-6726825d.pth")


def frechet_distance_metric(feature_extractor: nn.Module | None = None,
                            weights_path: str | None = None) -> FrechetInceptionDistance:
    """A Frechet distance metric on the features of ``feature_extractor`` (any module mapping images
    ``[n, 3, H, W]`` in [0, 1] to ``[n, k]``), or on Inception-v3 pool features (2048-D) with the weights
    at ``weights_path`` (downloaded from the internet when ``None``). Exact under DDP (torchmetrics)."""
    if feature_extractor is not None:
        return FrechetInceptionDistance(feature=feature_extractor, normalize=True)
    try:
        return FrechetInceptionDistance(feature=2048, normalize=True, feature_extractor_weights_path=weights_path)
    except Exception as error:  # no internet and no local weights
        raise RuntimeError(
            "FID needs the Inception-v3 weights, which could not be loaded. Download "
            f"{INCEPTION_WEIGHTS} and pass its path as weights_path, or pass a feature_extractor module "
            "for an FID-style score that works offline."
        ) from error


def _rgb(images: torch.Tensor) -> torch.Tensor:
    """Images ``[n, C, H, W]`` in [0, 1] with 3 channels (grey levels repeated)."""
    images = images.clamp(0, 1)
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


REAL_STATES = ("real_features_sum", "real_features_cov_sum", "real_features_num_samples")


class FID(HeldOutBatches):
    """Logs ``fid/samples`` (``num_samples`` decoded prior samples against as many held-out images)
    and ``fid/reconstructions`` (the held-out images' reconstructions, ``decode(embed(x))``, against the
    images) every ``every_n_epochs`` validation epochs and at test time. Grey images are repeated to
    3 channels; the Inception extractor resizes them to 299 x 299 itself. The held-out images' features
    are computed once per batch (in the ``samples`` metric) and their statistics shared with the
    ``reconstructions`` metric before its score is computed (then reduced across processes by each metric).

    Args:
        num_samples: held-out images (and samples) per evaluation.
        every_n_epochs: validation period (0: only at test time).
        feature_extractor: a module for an FID-style score (offline); ``None``: Inception-v3.
        weights_path: local Inception weights (offline clusters).
    """

    def __init__(self, num_samples: int = 1000, every_n_epochs: int = 10, feature_extractor: nn.Module | None = None,
                 weights_path: str | None = None):
        self.num_samples, self.every_n_epochs = num_samples, every_n_epochs
        self.feature_extractor, self.weights_path = feature_extractor, weights_path
        self.metrics: dict[str, FrechetInceptionDistance] = {}
        self.seen = 0

    def setup(self, trainer, pl_module, stage):
        self.metrics = {name: frechet_distance_metric(self.feature_extractor, self.weights_path).to(pl_module.device)
                        for name in ("samples", "reconstructions")}

    def _active(self, trainer) -> bool:
        if trainer.sanity_checking:
            return False
        return trainer.testing or (self.every_n_epochs > 0 and (trainer.current_epoch + 1) % self.every_n_epochs == 0)

    def update(self, trainer, pl_module, x) -> None:
        if not self._active(trainer) or self.seen >= self.num_samples:
            return
        x = x[: self.num_samples - self.seen]
        if x.dim() != 4:
            raise ValueError("FID needs image data [n, C, H, W].")
        with torch.no_grad():
            self.metrics["samples"].update(_rgb(x), real=True)  # the real features, once
            self.metrics["samples"].update(_rgb(pl_module.sample(len(x))), real=False)
            self.metrics["reconstructions"].update(_rgb(pl_module.decode(pl_module.embed(x))), real=False)
        self.seen += len(x)

    def reset(self) -> None:
        for metric in self.metrics.values():
            metric.reset()
        self.seen = 0

    def finish(self, trainer, pl_module, stage: str) -> None:
        if self._active(trainer) and self.seen >= 2:
            for state in REAL_STATES:  # this process's sums of the real features; each metric syncs its own
                setattr(self.metrics["reconstructions"], state, getattr(self.metrics["samples"], state).clone())
            for name, metric in self.metrics.items():
                pl_module.log(f"fid/{name}", metric.compute())
                metric.reset()
        self.seen = 0
