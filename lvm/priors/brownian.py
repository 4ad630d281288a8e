"""The Riemannian Brownian-motion prior of "Variational Autoencoders with Riemannian Brownian Motion Priors"
(Kalatzis, Eklund, Arvanitidis and Hauberg, 2020, arXiv:2002.05227): a density defined through the decoder's geometry.

Its methods take the decoder's immersion z -> (mu(z), sigma(z)) (:class:`lvm.numerics.geometry.Immersion`) as an
argument; the model that holds the prior and the decoder builds it (``model.immersion()``) and passes it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lvm.numerics.gaussian import half_log_det, standard_normal_icdf, standard_normal_log_prob
from lvm.numerics.geometry import (Immersion, brownian_motion, geodesic, image_and_log_volume, pullback_metric,
                                   straight_line_energy)
from lvm.numerics.lattices import MAX_LATTICE_DIM, default_num_points, lattice_rule
from lvm.numerics.logspace import effective_sample_size, log_mean_exp
from lvm.numerics.snapshots import TensorSnapshot
from lvm.priors.base import Prior

__all__ = ["BrownianMotionPrior", "log_heat_kernel"]


def log_heat_kernel(z: torch.Tensor, time: torch.Tensor, squared_distance: torch.Tensor, log_volume_z: torch.Tensor,
                    log_volume_centre: torch.Tensor) -> torch.Tensor:
    """The zeroth-order parametrix (eq. 3.3): the log-density of Brownian motion from a centre for ``time`` at ``z``
    ``[b, d]``, with respect to the volume measure,

        log p_t(z; c) = -d/2 log(2 pi t) + 1/2 (log det G(z) - log det G(c)) - l^2(z, c) / (2 t),

    from the squared geodesic distance ``l^2`` ``[b]`` and ``log_volume_* = 1/2 log det G`` at z and c."""
    d = z.shape[-1]
    return -0.5 * d * torch.log(2 * math.pi * time) + log_volume_z - log_volume_centre - squared_distance / (2 * time)


def _require(immersion: Immersion | None) -> Immersion:
    if immersion is None:
        raise ValueError("BrownianMotionPrior is defined through a decoder: pass the decoder's immersion "
                         "(model.immersion()), or call it through a LatentVariableModel (model.prior_log_prob).")
    return immersion


class BrownianMotionPrior(Prior):
    """The R-VAE prior: Brownian motion on the manifold that the decoder z -> (mu(z), sigma(z)) immerses (metric G of
    eq. 2.5, :mod:`lvm.numerics.geometry`), started at a learned centre mu_p and run for a learned time t_p, in the
    parametrix approximation (eq. 3.3, :func:`log_heat_kernel`). :meth:`log_prob` is its Lebesgue density,
    ``log p_t(z) + 1/2 log det G(z)``; :meth:`sample` runs the Euler walk of eq. 3.15. The squared distance to the
    centre is 2 x the energy of the straight line (``geodesic_steps=0``, an upper bound without inner optimisation) or
    of a cubic spline optimised for ``geodesic_steps`` L-BFGS iterations (appendix B). The centre is placed on the
    training codes by :meth:`fit` when the prior starts to train (appendix C.1), which :attr:`placed` records.

    Args:
        dim: d.
        time: initial t_p (learned).
        geodesic_steps: L-BFGS iterations per geodesic distance (0: straight lines).
        curve_points: points discretising each curve.
        walk_steps: Euler steps of the Brownian walk that samples the prior.
    """

    def __init__(self, dim: int = 2, time: float = 1.0, geodesic_steps: int = 0, curve_points: int = 6,
                 walk_steps: int = 50):
        super().__init__(dim)
        if time <= 0:
            raise ValueError(f"The prior's time must be positive; got time={time}.")
        self.geodesic_steps, self.curve_points, self.walk_steps = geodesic_steps, curve_points, walk_steps
        self.log_time = nn.Parameter(torch.tensor(math.log(time)))
        self.centre = nn.Parameter(torch.zeros(dim))
        self.register_buffer("placed", torch.tensor(False))
        self._normaliser_cache: tuple | None = None  # (a snapshot of what the density depends on, log Z)
        self.normalisation_error = math.nan

    @property
    def normalised_numerically(self) -> bool:
        return self.dim <= MAX_LATTICE_DIM  # the normaliser integrates on a lattice

    def check(self, likelihood) -> None:
        if not callable(getattr(likelihood, "immersion", None)):
            raise ValueError(
                "The Brownian-motion prior's metric needs a decoded standard deviation: set model.likelihood to "
                "lvm.likelihoods.HeteroscedasticGaussianLikelihood and model.decoder to lvm.networks.MeanPrecisionDecoder "
                f"(got {type(likelihood).__name__}).")

    @property
    def time(self) -> torch.Tensor:
        return self.log_time.exp()

    @torch.no_grad()
    def fit(self, codes):
        """Centre the prior on the mean of the training codes (the authors' one-cluster k-means)."""
        self.centre.copy_(codes.mean(0))
        self.placed.fill_(True)

    def centre_image_and_log_volume(self, immersion: Immersion) -> tuple[torch.Tensor, torch.Tensor]:
        """F(mu_p) ``[1, 2D]`` and 1/2 log det G(mu_p) ``[1]``."""
        return image_and_log_volume(immersion, self.centre[None])

    def energy_to_centre(self, z: torch.Tensor, image_z: torch.Tensor, image_centre: torch.Tensor,
                         immersion: Immersion) -> torch.Tensor:
        """Half the squared distance from ``z`` ``[b, d]`` (images ``F(z)`` ``[b, 2D]``) to the centre
        (image ``[1, 2D]``): the energy of the straight line, or of the optimised spline, ``[b]``."""
        centre = self.centre.expand_as(z)
        if self.geodesic_steps:
            return geodesic(immersion, z, centre, num_points=self.curve_points, steps=self.geodesic_steps).energy
        return straight_line_energy(immersion, z, centre, image_z, image_centre, self.curve_points)

    def log_density(self, z: torch.Tensor, image_z: torch.Tensor, log_volume_z: torch.Tensor,
                    immersion: Immersion) -> torch.Tensor:
        """log p(z) with respect to the volume measure (eq. 3.7), ``[b]``."""
        image_centre, log_volume_centre = self.centre_image_and_log_volume(immersion)
        squared_distance = 2 * self.energy_to_centre(z, image_z, image_centre, immersion)
        return log_heat_kernel(z, self.time, squared_distance, log_volume_z, log_volume_centre)

    def unnormalised_log_prob(self, z: torch.Tensor, immersion: Immersion) -> torch.Tensor:
        """The parametrix's Lebesgue density, log p_t(z) + 1/2 log det G(z), ``[...]``: integrates to 1 only
        approximately (exactly for a flat metric)."""
        flat = z.reshape(-1, self.dim)  # [n, d]
        image, log_volume = image_and_log_volume(immersion, flat)
        return (self.log_density(flat, image, log_volume, immersion) + log_volume).view(z.shape[:-1])

    def log_prob(self, z, immersion=None):
        """The parametrix's Lebesgue density, normalised numerically for d <= 3 (:meth:`log_normaliser`); above 3-D
        it stays the unnormalised parametrix (no lattice integrates it), so held-out values are approximate there."""
        immersion = _require(immersion)
        if not self.normalised_numerically:
            return self.unnormalised_log_prob(z, immersion)
        return self.unnormalised_log_prob(z, immersion) - self.log_normaliser(immersion)

    @torch.no_grad()
    def log_normaliser(self, immersion: Immersion, inflation: float = 4.0) -> torch.Tensor:
        """log Z, Z = integral of the parametrix's Lebesgue density, for d <= 3, by quasi-Monte Carlo importance
        sampling from g = N(mu_p, ``inflation`` t_p G(mu_p)^{-1}) (the heat kernel's local shape, widened): a dense
        lattice mapped through g's inverse CDF gives the points, and Z = mean_j p(z_j) / g(z_j).
        :attr:`normalisation_error` is the relative difference between the rule with every other point and with all
        points plus 1 / the effective sample size of the ratios (both small when g covers the density). Cached until a
        tensor of the immersion (the decoder's parameters and buffers) or of the prior changes in place (an optimiser
        step, loading a checkpoint, placing RBF centres)."""
        depends_on = [*immersion.tensors, *self.parameters()]
        if self._normaliser_cache is not None and self._normaliser_cache[0].describes(depends_on):
            return self._normaliser_cache[1]
        metric = pullback_metric(immersion, self.centre[None])[0]  # G(mu_p): [d, d]
        metric = metric + 1e-6 * metric.diagonal().mean().clamp_min(1e-12) * torch.eye(self.dim).to(metric)
        mean, covariance = self.centre, inflation * self.time * torch.linalg.inv(metric)
        cholesky = torch.linalg.cholesky(covariance)
        cube = lattice_rule(default_num_points(self.dim), self.dim).to(mean).clamp(1e-6, 1 - 1e-6)  # [m, d]
        white = standard_normal_icdf(cube)  # standard normal QMC points
        z = mean + white @ cholesky.T
        log_g = standard_normal_log_prob(white) - half_log_det(cholesky)
        log_ratio = torch.cat([self.unnormalised_log_prob(chunk, immersion) for chunk in z.split(1024)]) - log_g  # [m]
        log_z, coarse = log_mean_exp(log_ratio), log_mean_exp(log_ratio[::2])  # all points, every other point
        ess = float(effective_sample_size(log_ratio))
        self.normalisation_error = abs(math.expm1(float(coarse - log_z))) + 1.0 / ess
        self._normaliser_cache = (TensorSnapshot(depends_on), log_z)
        return log_z

    @torch.no_grad()
    def sample(self, n, device=None, immersion=None):
        start = self.centre.detach().expand(n, -1)
        return brownian_motion(_require(immersion), start, self.time.detach(), self.walk_steps)[-1]
