"""Diagonal-Gaussian variational posteriors q(z | x) = N(mu(x), diag sigma(x)^2) and the bounds
built on them, shared by the encoder-based objectives and by held-out evaluation."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch


__all__ = [
    "split_mean_log_var", "encode", "rsample", "diagonal_gaussian_log_prob", "kl_to_standard_normal",
    "PosteriorDraw", "encode_and_sample", "elbo_terms", "importance_sampled_log_likelihood", "iwae_bound",
]


def split_mean_log_var(encoder_output: torch.Tensor, latent_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split an encoder output ``[b, 2d]`` into mean and log-variance ``[b, d]`` each."""
    if encoder_output.shape[-1] != 2 * latent_dim:
        raise ValueError(
            f"The encoder must output 2 * latent dim = {2 * latent_dim} features (mean and "
            f"log-variance); it output {encoder_output.shape[-1]}. Set encoder.init_args.latent_dim: {latent_dim}."
        )
    mean, log_var = encoder_output.chunk(2, dim=-1)
    return mean, log_var


def encode(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and log-variance ``[b, d]`` of ``q(z | x)`` from ``model.encoder``."""
    return split_mean_log_var(model.encoder(x), model.latent.dim)


def rsample(mean: torch.Tensor, log_var: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Reparameterised draws ``z = mu + sigma * eps``, ``eps ~ N(0, I)``.  # [k, b, d]"""
    eps = torch.randn(num_samples, *mean.shape, dtype=mean.dtype, device=mean.device)
    return mean + torch.exp(0.5 * log_var) * eps


def diagonal_gaussian_log_prob(z: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """``log N(z; mu, diag(exp(log_var)))`` summed over the last dimension."""
    return -0.5 * ((z - mean).pow(2) * torch.exp(-log_var) + log_var + math.log(2 * math.pi)).sum(-1)


def kl_to_standard_normal(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """Analytic ``KL(N(mu, diag s^2) || N(0, I))`` per dimension:
    ``1/2 (mu^2 + s^2 - log s^2 - 1)``, shape ``[b, d]`` (sum over ``d`` for the total)."""
    return 0.5 * (mean.pow(2) + torch.exp(log_var) - log_var - 1.0)


@dataclass
class PosteriorDraw:
    mean: torch.Tensor  # [b, d]
    log_var: torch.Tensor  # [b, d]
    z: torch.Tensor  # [k, b, d]
    log_likelihood: torch.Tensor  # [k, b], log p(x | z)


def _score(model, x_flat: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``log p(x_b | z_kb)`` with one decoder pass over all ``k * b`` latents.  # [k, b]"""
    k, b, d = z.shape
    params = model.decoder_params(z.reshape(k * b, d)).view(k, b, -1)  # [k, b, D]
    return model.likelihood.log_prob(x_flat[None], params)


def encode_and_sample(model, x: torch.Tensor, num_samples: int) -> PosteriorDraw:
    """Encode ``x``, draw ``k`` reparameterised latents per example and score them under the decoder."""
    mean, log_var = encode(model, x)
    z = rsample(mean, log_var, num_samples)  # [k, b, d]
    return PosteriorDraw(mean, log_var, z, _score(model, model.flatten(x), z))


def elbo_terms(model, x: torch.Tensor, num_samples: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The sampling ELBO of QLVM eq. 4 per example, with its two terms:
    ``(1/k) sum_j log p(x | z_j) - KL(q(z | x) || N(0, I))``. Returns ``(elbo, reconstruction, kl)``, each ``[b]``."""
    draw = encode_and_sample(model, x, num_samples)
    reconstruction = draw.log_likelihood.mean(0)
    kl = kl_to_standard_normal(draw.mean, draw.log_var).sum(-1)
    return reconstruction - kl, reconstruction, kl


def importance_sampled_log_likelihood(model, x: torch.Tensor, draw: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
                                      num_samples: int, chunk_size: int | None = None) -> torch.Tensor:
    """The importance-sampled estimate of ``log p(x)`` per example, ``[b]``:
    ``log (1/K) sum_k p(x | z_k) p(z_k) / q(z_k)``, ``z_k ~ q``, a stochastic lower bound whose
    expectation increases to ``log p(x)`` with ``K`` (QLVM eq. 7 when q is the encoder's posterior).
    ``draw(k)`` returns ``k`` proposal draws per example ``z: [k, b, d]`` (the decoder's inputs) and
    ``log p(z) - log q(z): [k, b]``; ``chunk_size`` bounds memory by drawing in chunks and combining
    their log-sum-exps (exact)."""
    x_flat = model.flatten(x)
    step = chunk_size or num_samples
    chunk_log_sums = []
    for start in range(0, num_samples, step):
        z, log_ratio = draw(min(step, num_samples - start))
        chunk_log_sums.append(torch.logsumexp(_score(model, x_flat, z) + log_ratio, dim=0))  # [b]
    return torch.logsumexp(torch.stack(chunk_log_sums), dim=0) - math.log(num_samples)


def iwae_bound(model, x: torch.Tensor, num_samples: int, chunk_size: int | None = None) -> torch.Tensor:
    """The importance-weighted bound of QLVM eq. 7 per example, ``[b]``, with the encoder's
    q(z | x) as the proposal: the ELBO for ``k = 1``, the importance-sampled estimate of
    ``log p(x)`` for large ``k``."""
    mean, log_var = encode(model, x)

    def draw(k: int) -> tuple[torch.Tensor, torch.Tensor]:
        z = rsample(mean, log_var, k)  # [k, b, d]
        return z, model.latent.log_prior(z) - diagonal_gaussian_log_prob(z, mean, log_var)

    return importance_sampled_log_likelihood(model, x, draw, num_samples, chunk_size)
