"""Held-out log p(x) for autoencoders (a deterministic code z0 = f(x)) in any latent dimension:
importance sampling with the Laplace proposal around the code.

For the prior N(0, I) and the likelihood p(x | z) with decoded mean mu(z), the Gauss-Newton
curvature of ``-log p(x | z) p(z)`` at z0 gives the proposal

    q(z | x) = N(z0, P^{-1}),   P = I + J^T diag(F) J,   J = d mu / dz at z0  ([D, d], d JVPs),

with F the likelihood's Fisher information about the mean (1/c for N(mu, c I)). For a linear
decoder with Gaussian noise and z0 the posterior mean, q is the exact posterior and every
importance weight equals p(x). Draws: ``z = z0 + L^{-T} eps`` with ``P = L L^T``, so that
``log q(z) = -d/2 log 2 pi + log det L - |eps|^2 / 2``.
"""

from __future__ import annotations

import math

import torch

from .jacobians import forward_jacobian
from .variational import importance_sampled_log_likelihood

__all__ = ["laplace_precision", "laplace_log_likelihood"]


def laplace_precision(model, code: torch.Tensor) -> torch.Tensor:
    """``P = I + J^T diag(F) J`` at the codes ``[b, d]`` -> ``[b, d, d]``."""
    mean, jacobian = forward_jacobian(model.decoded_mean, code)  # [b, D], [b, D, d]
    fisher = model.likelihood.mean_fisher_information(mean)  # [b, D]
    identity = torch.eye(code.shape[1], dtype=code.dtype, device=code.device)
    return identity + jacobian.mT @ (fisher.unsqueeze(-1) * jacobian)


@torch.no_grad()
def laplace_log_likelihood(model, x: torch.Tensor, num_samples: int, chunk_size: int | None = None) -> torch.Tensor:
    """The importance-sampled ``log p(x)`` per example ``[b]`` with the Laplace proposal around
    ``model.latent_code(x)`` (a stochastic lower bound, tight as ``num_samples`` grows)."""
    code = model.latent_code(x)  # [b, d]
    cholesky = torch.linalg.cholesky(laplace_precision(model, code))  # P = L L^T: [b, d, d]
    d = code.shape[1]
    log_normaliser = torch.log(torch.diagonal(cholesky, dim1=-2, dim2=-1)).sum(-1) - 0.5 * d * math.log(2 * math.pi)

    def draw(k: int) -> tuple[torch.Tensor, torch.Tensor]:
        eps = torch.randn(k, *code.shape, dtype=code.dtype, device=code.device)  # [k, b, d]
        offset = torch.linalg.solve_triangular(cholesky.mT, eps.unsqueeze(-1), upper=True).squeeze(-1)
        z = code + offset
        return z, model.latent.log_prior(z) - (log_normaliser - 0.5 * eps.pow(2).sum(-1))

    return importance_sampled_log_likelihood(model, x, draw, num_samples, chunk_size)
