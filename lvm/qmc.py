"""Randomized-QMC estimates of the marginal likelihood and posterior (QLVM paper, section 2.2).

With cube points ``c_1..c_m`` (a shifted lattice) and ``z_j = from_unit_cube(c_j)``,

    log p(x) ~= log (1/m) sum_j p(x | z_j) = logsumexp_j log p(x | z_j) - log m      (eq. 5)

and the posterior is approximated by Dirac masses at ``z_j`` with weights
``softmax_j log p(x | z_j)`` (Bayes' rule with equal prior weights, Fig. 1C).
These functions take any model exposing ``prior`` (an :class:`lvm.priors.InvertiblePrior`), ``likelihood`` and
``decoder_params``.
"""

from __future__ import annotations

import math

import torch

__all__ = ["pairwise_log_likelihood", "log_mean_exp", "qmc_log_likelihood", "qmc_posterior"]


def pairwise_log_likelihood(model, x_flat: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``log p(x_i | z_j)`` for flattened data ``[b, D]`` and latent values ``[m, d]`` -> ``[b, m]``."""
    return model.likelihood.pairwise_log_prob(x_flat, model.decoder_params(z))


def log_mean_exp(log_values: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``log (1/n) sum exp(v)`` along ``dim``, stable."""
    return torch.logsumexp(log_values, dim=dim) - math.log(log_values.shape[dim])


def _latent_points(model, cube_points: torch.Tensor, x_flat: torch.Tensor) -> torch.Tensor:
    return model.prior.from_unit_cube(cube_points.to(device=x_flat.device, dtype=x_flat.dtype))


def qmc_log_likelihood(model, x_flat: torch.Tensor, cube_points: torch.Tensor,
                       chunk_size: int | None = None) -> torch.Tensor:
    """Eq. 5 per example, ``[b]``. ``chunk_size`` bounds memory by decoding the points in
    chunks and combining per-chunk log-sum-exps (exact, not an approximation)."""
    z = _latent_points(model, cube_points, x_flat)  # [m, d]
    chunks = z.split(chunk_size or len(z))
    per_chunk = torch.stack(
        [torch.logsumexp(pairwise_log_likelihood(model, x_flat, chunk), dim=1) for chunk in chunks], dim=1
    )  # [b, chunks]
    return torch.logsumexp(per_chunk, dim=1) - math.log(len(z))


def qmc_posterior(model, x_flat: torch.Tensor, cube_points: torch.Tensor,
                  chunk_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Latent points ``[m, d]`` and normalised posterior weights ``[b, m]`` (Fig. 1C)."""
    z = _latent_points(model, cube_points, x_flat)
    log_weights = torch.cat(
        [pairwise_log_likelihood(model, x_flat, chunk) for chunk in z.split(chunk_size or len(z))], dim=1
    )  # [b, m]
    return z, torch.softmax(log_weights, dim=1)
