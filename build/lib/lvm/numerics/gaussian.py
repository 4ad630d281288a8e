"""Gaussian helpers: the standard normal's inverse CDF and log-density, diagonal Gaussian log-densities, ``1/2 log det``
from a Cholesky factor, and log-densities with covariance ``c I_n + U U^T`` (rank ``m << n``) on m x m matrices only.

Low rank: "A Sampling-Free Approximation of Gaussian Variational Auto-Encoders" (anonymous ICLR 2022 submission),
section 3.2: with
``Sigma = c I + U U^T`` the Woodbury identity (eq. 15-16) gives

    Sigma^{-1} = (1/c) (I - U (c I_m + U^T U)^{-1} U^T)

and the matrix determinant lemma (eq. 17-18) ``det Sigma = det(I_m + U^T U / c) c^n``, so

    log N(x; mu, Sigma) = -n/2 log(2 pi c) - 1/2 log det(I_m + U^T U / c)
                          - |r|^2 / (2c) + (r^T U) (c I_m + U^T U)^{-1} (U^T r) / (2c),   r = mu - x

(eq. 19). The gamma-regularisation of section 3.3 (eq. 21) replaces Sigma^{-1} by
``gamma Sigma^{-1} + (1 - gamma) (c I)^{-1}``, which scales the last term by gamma; the
log-determinant is unchanged. One Cholesky factorisation of ``c I_m + U^T U`` per example.
"""

from __future__ import annotations

import math

import torch

__all__ = ["LOG_2PI", "standard_normal_icdf", "standard_normal_log_prob", "diagonal_gaussian_log_prob", "half_log_det",
           "lowrank_gaussian_log_prob"]

LOG_2PI = math.log(2 * math.pi)


def standard_normal_icdf(c: torch.Tensor) -> torch.Tensor:
    """``Phi^{-1}(c) = sqrt(2) erfinv(2c - 1)``, elementwise (the inversion method for N(0, 1))."""
    return math.sqrt(2.0) * torch.special.erfinv(2 * c - 1)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """``log N(z; 0, I_d)`` for ``z: [..., d]`` -> ``[...]``."""
    return -0.5 * (z.pow(2) + LOG_2PI).sum(-1)


def diagonal_gaussian_log_prob(z: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """``log N(z; mean, diag exp(log_var))`` summed over the last dimension (all arguments broadcast)."""
    return -0.5 * ((z - mean).pow(2) * torch.exp(-log_var) + log_var + LOG_2PI).sum(-1)


def half_log_det(cholesky: torch.Tensor) -> torch.Tensor:
    """``1/2 log det P`` from ``P = L L^T``: the sum of ``log diag L``, ``[...]``."""
    return torch.log(torch.diagonal(cholesky, dim1=-2, dim2=-1)).sum(-1)


def lowrank_gaussian_log_prob(residual: torch.Tensor, factor: torch.Tensor, variance: float,
                              gamma: float = 1.0) -> torch.Tensor:
    """``log N(x; mu, c I + U U^T)`` with ``residual = mu - x: [b, n]`` and ``factor = U: [b, n, m]``,
    with the gamma-regularised quadratic form (gamma = 1: the exact Gaussian log-density). ``[b]``"""
    n, m = factor.shape[-2], factor.shape[-1]
    c = variance
    inner = c * torch.eye(m, dtype=factor.dtype, device=factor.device) + factor.mT @ factor  # [b, m, m]
    cholesky = torch.linalg.cholesky(inner)
    log_det_inner = 2 * half_log_det(cholesky)  # log det(c I_m + U^T U)
    log_det_sigma = log_det_inner + (n - m) * math.log(c)  # det(I_m + U^T U / c) c^n
    projected = (factor.mT @ residual.unsqueeze(-1))  # U^T r: [b, m, 1]
    whitened = torch.linalg.solve_triangular(cholesky, projected, upper=False)  # L^{-1} U^T r
    correction = whitened.squeeze(-1).pow(2).sum(-1)  # (r^T U) (c I + U^T U)^{-1} (U^T r)
    quadratic = (residual.pow(2).sum(-1) - gamma * correction) / c
    return -0.5 * (n * LOG_2PI + log_det_sigma + quadratic)
