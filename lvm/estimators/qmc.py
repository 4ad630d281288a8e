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
from torch.utils.checkpoint import checkpoint

from lvm.numerics.logspace import log_mean_exp

__all__ = ["pairwise_log_likelihood", "pairwise_table", "activation_bytes_per_point", "qmc_log_likelihood", "qmc_posterior"]


def pairwise_log_likelihood(model, x_flat: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``log p(x_i | z_j)`` for flattened data ``[b, D]`` and latent values ``[m, d]`` -> ``[b, m]``."""
    return model.likelihood.pairwise_log_prob(x_flat, model.decoder_params(z))


def _latent_points(model, cube_points: torch.Tensor, x_flat: torch.Tensor) -> torch.Tensor:
    return model.prior.from_unit_cube(cube_points.to(device=x_flat.device, dtype=x_flat.dtype))


def pairwise_table(model, x_flat: torch.Tensor, z: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """``log p(x_i | z_j)`` ``[b, m]`` decoded in chunks of at most ``chunk_size`` points (``None``: one pass).

    With autograd on, each chunk's decoder pass is checkpointed (``torch.utils.checkpoint``): its activations are
    freed after the forward pass and recomputed chunk by chunk in the backward pass, so training memory is that of
    one chunk plus the ``[b, m]`` table, whatever m, and the gradient of eq. 5,
    ``sum_j w_ij d log p(x_i | z_j)`` with ``w = softmax_j log p(x_i | z_j)``, is exactly the single pass's."""
    chunks = z.split(chunk_size or len(z))
    if len(chunks) == 1:
        return pairwise_log_likelihood(model, x_flat, z)

    def score(points: torch.Tensor) -> torch.Tensor:
        return pairwise_log_likelihood(model, x_flat, points)  # [b, chunk]

    if torch.is_grad_enabled():
        return torch.cat([checkpoint(score, chunk, use_reentrant=False) for chunk in chunks], dim=1)
    return torch.cat([score(chunk) for chunk in chunks], dim=1)


def activation_bytes_per_point(model, x_flat: torch.Tensor) -> float:
    """The bytes autograd keeps per decoded latent point for the backward pass of :func:`pairwise_log_likelihood`
    (decoder activations and outputs): the tensors saved for a pass over 8 points minus those over 4, over 4, so
    that what does not grow with the points (the weights, the data) cancels. Uses fixed points (no RNG draw)."""

    def saved_bytes(n: int) -> int:
        total = 0

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            nonlocal total
            total += tensor.numel() * tensor.element_size()
            return tensor

        z = torch.full((n, model.prior.dim), 0.5, dtype=x_flat.dtype, device=x_flat.device)
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            pairwise_log_likelihood(model, x_flat[:1], z)
        return total

    return max((saved_bytes(8) - saved_bytes(4)) / 4, 1.0)


def qmc_log_likelihood(model, x_flat: torch.Tensor, cube_points: torch.Tensor,
                       chunk_size: int | None = None) -> torch.Tensor:
    """Eq. 5 per example, ``[b]``. ``chunk_size`` bounds memory by decoding the points in chunks
    (:func:`pairwise_table`; exact, not an approximation, for the value and the gradient)."""
    z = _latent_points(model, cube_points, x_flat)  # [m, d]
    return log_mean_exp(pairwise_table(model, x_flat, z, chunk_size), dim=1)


def qmc_posterior(model, x_flat: torch.Tensor, cube_points: torch.Tensor,
                  chunk_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Latent points ``[m, d]`` and normalised posterior weights ``[b, m]`` (Fig. 1C)."""
    z = _latent_points(model, cube_points, x_flat)
    return z, torch.softmax(pairwise_table(model, x_flat, z, chunk_size), dim=1)
