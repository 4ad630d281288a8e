"""Randomized-QMC estimates of the marginal likelihood and posterior (QLVM paper: "Quasi-Monte Carlo latent variable
models", section 2.2).

With latent points ``z_j = from_unit_cube(c_j)`` for cube points ``c_1..c_m`` (a shifted lattice),

    log p(x) ~= log (1/m) sum_j p(x | z_j) = logsumexp_j log p(x | z_j) - log m      (eq. 5)

and the posterior is approximated by Dirac masses at ``z_j`` with weights
``softmax_j log p(x | z_j)`` (Bayes' rule with equal prior weights, Fig. 1C).

Every function takes the latent points and ``pairwise``, a callable ``z [c, d] -> log p(x_i | z_j) [b, c]`` for the
batch at hand (the model's ``pairwise_log_likelihood(x_flat, z)`` partially applied), so each can be called and
tested without a model.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.checkpoint import checkpoint

from lvm.numerics.logspace import log_mean_exp

__all__ = ["Pairwise", "pairwise_table", "activation_bytes_per_point", "qmc_log_likelihood", "qmc_posterior"]

Pairwise = Callable[[torch.Tensor], torch.Tensor]  # z [c, d] -> log p(x_i | z_j) [b, c]


def pairwise_table(pairwise: Pairwise, z: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """``log p(x_i | z_j)`` ``[b, m]`` for the latent points ``z`` ``[m, d]``, decoded in chunks of at most
    ``chunk_size`` points (``None``: one pass).

    With autograd on, each chunk's decoder pass is checkpointed (``torch.utils.checkpoint``): its activations are
    freed after the forward pass and recomputed chunk by chunk in the backward pass, so training memory is that of
    one chunk plus the ``[b, m]`` table, whatever m, and the gradient of eq. 5,
    ``sum_j w_ij d log p(x_i | z_j)`` with ``w = softmax_j log p(x_i | z_j)``, is exactly the single pass's."""
    chunks = z.split(chunk_size or len(z))
    if len(chunks) == 1:
        return pairwise(z)
    if torch.is_grad_enabled():
        return torch.cat([checkpoint(pairwise, chunk, use_reentrant=False) for chunk in chunks], dim=1)
    return torch.cat([pairwise(chunk) for chunk in chunks], dim=1)


def activation_bytes_per_point(pairwise: Pairwise, dim: int, dtype: torch.dtype, device=None) -> float:
    """The bytes autograd keeps per decoded latent point for the backward pass of ``pairwise`` (decoder activations
    and outputs): the tensors saved for a pass over 8 points minus those over 4, over 4, so that what does not grow
    with the points (the weights, the data) cancels. Uses fixed points (no RNG draw)."""

    def saved_bytes(n: int) -> int:
        total = 0

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            nonlocal total
            total += tensor.numel() * tensor.element_size()
            return tensor

        z = torch.full((n, dim), 0.5, dtype=dtype, device=device)
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            pairwise(z)
        return total

    return max((saved_bytes(8) - saved_bytes(4)) / 4, 1.0)


def qmc_log_likelihood(pairwise: Pairwise, z: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """Eq. 5 per example, ``[b]``, for the latent points ``z = from_unit_cube(c)`` ``[m, d]``. ``chunk_size`` bounds
    memory by decoding the points in chunks (:func:`pairwise_table`; exact, not an approximation, for the value and
    the gradient)."""
    return log_mean_exp(pairwise_table(pairwise, z, chunk_size), dim=1)


def qmc_posterior(pairwise: Pairwise, z: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """Normalised posterior weights ``[b, m]`` on the latent points ``z`` ``[m, d]`` (Fig. 1C)."""
    return torch.softmax(pairwise_table(pairwise, z, chunk_size), dim=1)
