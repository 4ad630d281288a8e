"""Encoder pass and reparameterised decoding shared by the sampling-based objectives."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lvm.variational import rsample, split_mean_log_var

__all__ = ["PosteriorDraw", "encode_and_sample"]


@dataclass
class PosteriorDraw:
    mean: torch.Tensor  # [b, d]
    log_var: torch.Tensor  # [b, d]
    z: torch.Tensor  # [k, b, d]
    log_likelihood: torch.Tensor  # [k, b], log p(x | z)


def encode_and_sample(model, x: torch.Tensor, num_samples: int) -> PosteriorDraw:
    """Encode ``x``, draw ``k`` reparameterised latents per example and score them under the
    decoder: ``log p(x | z_kb)`` with one decoder pass over all ``k * b`` latents."""
    mean, log_var = split_mean_log_var(model.encoder(x), model.latent.dim)
    z = rsample(mean, log_var, num_samples)  # [k, b, d]
    k, b, d = z.shape
    params = model.decoder_params(z.reshape(k * b, d)).view(k, b, -1)  # [k, b, D]
    log_likelihood = model.likelihood.log_prob(model.flatten(x)[None], params)  # [k, b]
    return PosteriorDraw(mean, log_var, z, log_likelihood)
