"""Diagonal-Gaussian variational posteriors q(z | x) shared by the encoder-based objectives."""

from __future__ import annotations

import math

import torch

__all__ = ["split_mean_log_var", "rsample", "diagonal_gaussian_log_prob", "kl_to_standard_normal"]


def split_mean_log_var(encoder_output: torch.Tensor, latent_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split an encoder output ``[b, 2d]`` into mean and log-variance ``[b, d]`` each."""
    if encoder_output.shape[-1] != 2 * latent_dim:
        raise ValueError(
            f"The encoder must output 2 * latent dim = {2 * latent_dim} features (mean and "
            f"log-variance); it output {encoder_output.shape[-1]}. Set encoder.init_args.latent_dim: {latent_dim}."
        )
    mean, log_var = encoder_output.chunk(2, dim=-1)
    return mean, log_var


def rsample(mean: torch.Tensor, log_var: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Reparameterised draws ``z = mu + sigma * eps``, ``eps ~ N(0, I)``.  # [k, b, d]"""
    eps = torch.randn(num_samples, *mean.shape, dtype=mean.dtype, device=mean.device)
    return mean + torch.exp(0.5 * log_var) * eps


def diagonal_gaussian_log_prob(z: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """``log N(z; mu, diag(exp(log_var)))`` summed over the last dimension."""
    return -0.5 * ((z - mean).pow(2) * torch.exp(-log_var) + log_var + math.log(2 * math.pi)).sum(-1)


def kl_to_standard_normal(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """Analytic ``KL(N(mu, diag s^2) || N(0, I)) = 1/2 sum(mu^2 + s^2 - log s^2 - 1)``.  # [b]"""
    return 0.5 * (mean.pow(2) + torch.exp(log_var) - log_var - 1.0).sum(-1)
