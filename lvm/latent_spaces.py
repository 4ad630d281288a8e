"""Latent spaces: the prior p(z), the decoder's input features, and how to summarise a posterior.

Every latent space is reached from the unit cube: a point ``c`` in ``[0, 1)^d`` (a lattice
point) maps to a latent value ``z = from_unit_cube(c)`` distributed according to the prior
when ``c`` is uniform (the inversion method of section 2.2). So the same randomized-QMC
estimate of eq. 5, with equal weights ``1/m``, evaluates ``log p(x)`` for every space.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["LatentSpace", "TorusLatent", "UnitCubeLatent", "GaussianLatent"]


class LatentSpace(nn.Module):
    """Base class. ``dim`` is the latent dimension d; ``periodic`` says whether posterior
    means must be circular."""

    periodic = False

    def __init__(self, dim: int = 2):
        super().__init__()
        if dim < 1:
            raise ValueError(f"The latent dimension must be at least 1; got dim={dim}.")
        self.dim = dim

    def from_unit_cube(self, cube_points: torch.Tensor) -> torch.Tensor:
        """Map uniform points on ``[0, 1)^d`` to prior-distributed latent values."""
        raise NotImplementedError

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's first layer input for latent values ``z: [n, d]``."""
        raise NotImplementedError

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """``log p(z)`` summed over dimensions."""
        raise NotImplementedError

    def sample(self, n: int, device=None) -> torch.Tensor:
        """``n`` draws from the prior, ``[n, d]``."""
        return self.from_unit_cube(torch.rand(n, self.dim, device=device))

    def weighted_mean(self, z: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Posterior mean of points ``z: [m, d]`` under ``weights: [b, m]`` (rows sum to 1)."""
        return weights @ z  # [b, d]


class UnitCubeLatent(LatentSpace):
    """Uniform prior on ``[0, 1)^d`` fed to the decoder as ``2z - 1`` without periodic
    boundaries: the non-periodic ablation of Fig. A8."""

    def from_unit_cube(self, cube_points):
        return cube_points

    def features(self, z):
        return 2 * z - 1

    def log_prior(self, z):
        return torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)


class TorusLatent(UnitCubeLatent):
    """Uniform prior on the torus ``[0, 1)^d`` with the periodic first layer
    ``z -> (sin 2 pi z, cos 2 pi z)`` (section 2.2): the QLVM default.

    Posterior means are circular means per coordinate: ``atan2(E sin 2 pi z, E cos 2 pi z) / 2 pi
    mod 1``, so a posterior straddling the seam at 0 = 1 averages to ~0, not to 0.5.
    """

    periodic = True

    def features(self, z):
        angle = 2 * math.pi * z
        return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)  # [n, 2d]

    def weighted_mean(self, z, weights):
        angle = 2 * math.pi * z  # [m, d]
        mean_sin = weights @ torch.sin(angle)  # [b, d]
        mean_cos = weights @ torch.cos(angle)
        return torch.remainder(torch.atan2(mean_sin, mean_cos) / (2 * math.pi), 1.0)


class GaussianLatent(LatentSpace):
    """Standard normal prior ``N(0, I_d)``. Reached from the unit cube by the inverse CDF
    ``z = Phi^{-1}(c)`` (section 2.2, Fig. A9), which is how QMC evaluates log p(x) for
    VAE/IWAE decoders; encoder-based objectives use it as their prior."""

    eps = 1e-6

    def from_unit_cube(self, cube_points):
        c = cube_points.clamp(self.eps, 1 - self.eps)
        return math.sqrt(2.0) * torch.special.erfinv(2 * c - 1)

    def features(self, z):
        return z

    def log_prior(self, z):
        return -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(-1)

    def sample(self, n, device=None):
        return torch.randn(n, self.dim, device=device)
