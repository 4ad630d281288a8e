"""Held-out evaluation shared by every objective, so runs are comparable.

``{stage}/log_likelihood`` (nats per example) and ``{stage}/bits_per_dim`` are always logged:
the randomized-QMC estimate of eq. 5 (QLVM paper) on a dense lattice for latent dimension
<= 3, whatever trained the model; for higher-dimensional latents (where lattices are
impractical and only encoder models train) the importance-sampled estimate with K samples: the
encoder's q(z | x) as the proposal for variational models, the Laplace proposal around the code
for autoencoders (:mod:`lvm.laplace`). Variational (Gaussian-encoder) models also get the unbiased
sampling ELBO ``{stage}/sampled_elbo``, the importance-sampled ``{stage}/importance_log_likelihood``
(IWAE bound with K samples) and the fraction of (eps, delta)-collapsed latent dimensions
``{stage}/collapsed_fraction`` (Taylor-VAE eq. 22), so the gap between a biased training
objective and the model's true quality is visible.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchmetrics import MeanMetric

from .laplace import laplace_log_likelihood
from .metrics import PosteriorCollapse
from .variational import elbo_terms, encode, iwae_bound

__all__ = ["HeldOutEvaluation", "MAX_QMC_DIM", "ENCODER_KINDS"]

MAX_QMC_DIM = 3
STAGES = ("val", "test")
ENCODER_KINDS = (None, "gaussian", "deterministic", "isotropic")


class HeldOutEvaluation(nn.Module):
    """Metric states for the ``val`` and ``test`` stages (torchmetrics, so exact under DDP).

    Args:
        latent_dim: d.
        encoder_kind: ``None`` (no encoder), ``"gaussian"`` (the encoder outputs a diagonal q(z | x);
            the variational metrics apply), ``"deterministic"`` (an autoencoder's code z = f(x)) or
            ``"isotropic"`` (a mean and one variance, for objectives with their own prior).
        num_samples: K for the importance-sampled estimate.
        chunk_size: samples drawn at once by the importance-sampled estimate.
    """

    def __init__(self, latent_dim: int, encoder_kind: str | None, num_samples: int = 100, chunk_size: int = 50):
        super().__init__()
        if encoder_kind not in ENCODER_KINDS:
            raise ValueError(f"encoder_kind must be one of {ENCODER_KINDS}; got {encoder_kind!r}.")
        if latent_dim > MAX_QMC_DIM and encoder_kind is None:
            raise ValueError(
                f"A {latent_dim}-D latent space has no QMC log-likelihood estimate (lattices are practical up to "
                f"{MAX_QMC_DIM}-D) and no encoder for an importance-sampled one; use latent dim <= {MAX_QMC_DIM} "
                "or add an encoder."
            )
        has_encoder = encoder_kind == "gaussian"
        self.use_qmc, self.has_encoder, self.encoder_kind = latent_dim <= MAX_QMC_DIM, has_encoder, encoder_kind
        self.num_samples, self.chunk_size = num_samples, chunk_size
        names = ["log_likelihood", "bits_per_dim"]
        if has_encoder:
            names += ["sampled_elbo", "importance_log_likelihood"]
        self.means = nn.ModuleDict({f"{stage}_{name}": MeanMetric() for stage in STAGES for name in names})
        if has_encoder:
            self.collapse = nn.ModuleDict({stage: PosteriorCollapse(latent_dim) for stage in STAGES})

    @torch.no_grad()
    def update(self, model, x: torch.Tensor, stage: str) -> None:
        """Update the ``stage`` metrics with a batch and log them through ``model.log``."""
        values = {}
        if self.has_encoder:
            values["sampled_elbo"] = elbo_terms(model, x, 1)[0]
            values["importance_log_likelihood"] = iwae_bound(model, x, self.num_samples, self.chunk_size)
            self.collapse[stage].update(*encode(model, x))
            model.log(f"{stage}/collapsed_fraction", self.collapse[stage])
        own = model.objective.held_out_log_likelihood(model, x, self.num_samples, self.chunk_size)
        if own is not None:
            values["log_likelihood"] = own
        elif self.use_qmc:
            values["log_likelihood"] = model.log_likelihood(x, shift_seed=model.eval_shift_seed)
        elif self.encoder_kind == "deterministic":
            values["log_likelihood"] = laplace_log_likelihood(model, x, self.num_samples, self.chunk_size)
        elif self.has_encoder:
            values["log_likelihood"] = values["importance_log_likelihood"]
        else:
            raise ValueError(f"{type(model.objective).__name__} with a {model.latent.dim}-D latent needs its own "
                             "held_out_log_likelihood (objectives.Objective) for the held-out estimate.")
        values["bits_per_dim"] = -values["log_likelihood"] / (model.flatten(x).shape[1] * math.log(2))
        for name, value in values.items():
            metric = self.means[f"{stage}_{name}"]
            metric.update(value)
            model.log(f"{stage}/{name}", metric, prog_bar=name == "log_likelihood")
