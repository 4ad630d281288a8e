"""Priors p(z): the model's distribution over latent values, and the decoder's input features.

A :class:`Prior` is a module on the model (``model.prior``), so learned prior parameters (the R-VAE's
centre and time, a lattice code's scale and entropy model) are the model's parameters, saved in its
checkpoints, whatever objective trains them. Every prior has ``log_prob(z)`` (a density with respect to
Lebesgue measure on the latent space), ``sample(n)`` and ``features(z)`` (the decoder's first-layer
input). Priors that the inversion method reaches from the unit cube (:class:`InvertiblePrior`) also have
``from_unit_cube(c)``: for uniform ``c`` in ``[0, 1)^d`` it is distributed as the prior, so the same
randomized-QMC estimate of eq. 5 of "Quasi-Monte Carlo latent variable models" (QLVM paper, section 2.2)
evaluates ``log p(x)`` under each of them.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lvm.numerics.gaussian import standard_normal_icdf, standard_normal_log_prob
from lvm.numerics.geometry import Immersion
from lvm.numerics.torus import weighted_circular_mean

__all__ = ["Prior", "InvertiblePrior", "UnitCubePrior", "TorusPrior", "StandardNormalPrior"]


class Prior(nn.Module):
    """Base class. ``dim`` is the latent dimension d, stated once per config (the CLI links it to every
    network that needs it); ``periodic`` says whether posterior means must be circular."""

    periodic = False

    def __init__(self, dim: int = 2):
        super().__init__()
        if dim < 1:
            raise ValueError(f"The latent dimension must be at least 1; got dim={dim}.")
        self.dim = dim

    normalised_numerically = False  # whether log_prob divides by a numerical normaliser (normalisation_error)

    def check(self, likelihood) -> None:
        """Raise a ``ValueError`` saying what to change if this prior cannot be used with ``likelihood``."""

    def fit(self, codes: torch.Tensor) -> None:
        """Place the prior on the training codes ``[n, d]`` (called by :class:`lvm.callbacks.TwoPhaseTraining`
        when a prior starts to train); a no-op unless the prior has a learned location."""

    def log_prob(self, z: torch.Tensor, immersion: Immersion | None = None) -> torch.Tensor:
        """``log p(z)`` for ``z: [..., d]`` -> ``[...]`` (density with respect to Lebesgue measure). ``immersion``: the
        decoder's immersion, which only priors defined through the decoder's geometry read (the model passes it)."""
        raise NotImplementedError

    def sample(self, n: int, device=None, immersion: Immersion | None = None) -> torch.Tensor:
        """``n`` draws from the prior, ``[n, d]`` (``immersion`` as for :meth:`log_prob`)."""
        raise NotImplementedError

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's first-layer input for latent values ``z: [n, d]``."""
        return z

    def weighted_mean(self, z: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Posterior mean of points ``z: [m, d]`` under ``weights: [b, m]`` (rows sum to 1)."""
        return weights @ z  # [b, d]


class InvertiblePrior(Prior):
    """A prior reached from the unit cube by the inversion method: ``from_unit_cube`` maps uniform points on
    ``[0, 1)^d`` to prior draws, so lattices integrate against it (held-out QMC estimate, QLVM training)."""

    def from_unit_cube(self, cube_points: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, n, device=None, immersion=None):
        return self.from_unit_cube(torch.rand(n, self.dim, device=device))


class UnitCubePrior(InvertiblePrior):
    """Uniform prior on ``[0, 1)^d`` fed to the decoder as ``2z - 1`` without periodic boundaries: the
    non-periodic ablation of Fig. A8 (QLVM paper)."""

    def from_unit_cube(self, cube_points):
        return cube_points

    def features(self, z):
        return 2 * z - 1

    def log_prob(self, z, immersion=None):
        inside = ((z >= 0) & (z < 1)).all(-1)
        return torch.where(inside, 0.0, float("-inf")).to(z)


class TorusPrior(UnitCubePrior):
    """Uniform prior on the torus ``[0, 1)^d`` with the periodic first layer ``z -> (sin 2 pi z, cos 2 pi z)``
    (QLVM paper, section 2.2): the QLVM default.

    Posterior means are circular means per coordinate: ``atan2(E sin 2 pi z, E cos 2 pi z) / 2 pi mod 1``,
    so a posterior straddling the seam at 0 = 1 averages to ~0, not to 0.5.
    """

    periodic = True

    def features(self, z):
        angle = 2 * math.pi * z
        return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)  # [n, 2d]

    def log_prob(self, z, immersion=None):
        return torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)  # z is read modulo 1

    def weighted_mean(self, z, weights):
        return weighted_circular_mean(z, weights)  # [b, d]


class StandardNormalPrior(InvertiblePrior):
    """``N(0, I_d)``, reached from the unit cube by ``z = Phi^{-1}(c)`` (QLVM paper, section 2.2, Fig. A9):
    the prior of the VAE, IWAE, Taylor and MLAE models, whose decoders QMC scores by inversion."""

    eps = 1e-6

    def from_unit_cube(self, cube_points):
        c = cube_points.clamp(self.eps, 1 - self.eps)
        return standard_normal_icdf(c)

    def log_prob(self, z, immersion=None):
        return standard_normal_log_prob(z)

    def sample(self, n, device=None, immersion=None):
        return torch.randn(n, self.dim, device=device)
