"""R-VAE: a VAE with a Riemannian Brownian-motion prior
(``shared/papers/riemannian-brownian-motion-prior-vae.txt``).

The decoder z -> (mu(z), sigma(z)) induces the metric G(z) of eq. 2.5 (:mod:`lvm.geometry`). Prior and
posterior are heat kernels of Brownian motion on that manifold, in the zeroth-order parametrix
approximation (eq. 3.3; densities with respect to the Riemannian volume measure dM):

    log p_t(z; c) = -d/2 log(2 pi t) + 1/2 (log det G(z) - log det G(c)) - l^2(z, c) / (2 t),

with l the geodesic distance; the prior has a learned centre mu_p and time t_p, the posterior the
encoder's centre mu_q(x) and time t_q(x) (an isotropic encoder: a mean and one log-variance). The
ELBO (eq. 3.4) uses the one-sample Monte Carlo KL of eqs. 3.5-3.8, log q(z | x) - log p(z), at a
reparameterised draw from q by one Brownian step of duration t_q (eq. 3.14),
z = mu_q + sqrt(t_q) L^-T eps with G(mu_q) = L L^T. (A Euclidean draw z = mu_q + sqrt(t_q) eps, as in
the authors' code, lets training shrink the KL without bound by inflating G at mu_q, since then
l^2(z, mu_q) / t_q ~ eps^T G eps; their code guards against it with |KL|.)

Training has two phases (appendix C.1), switched by :class:`callbacks.TwoPhaseTraining`: first an
autoencoder phase (reconstruction only; encoder and decoder mean trained), then the prior phase (the
full ELBO; the precision network and the prior trained), which :meth:`start_prior_phase` opens by
centring the prior on the training codes. Prior samples are Brownian walks from mu_p for time t_p
(section 3.2, eq. 3.15).

l^2 = 2 x the energy of a curve from z to the centre: the straight line by default
(``geodesic_steps=0``, an upper bound that needs no inner optimisation), or a cubic spline optimised
for ``geodesic_steps`` L-BFGS iterations (appendix B).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lvm.geometry import brownian_motion, geodesic, image_and_log_volume, log_volume, straight_line_energy
from lvm.jacobians import forward_jacobian
from lvm.likelihoods import HeteroscedasticGaussianLikelihood
from lvm.variational import importance_sampled_log_likelihood

from .base import Objective

__all__ = ["RiemannianBrownianPrior", "log_heat_kernel"]

MIN_TIME, MAX_TIME = 1e-4, 5.0  # the posterior time's range in the authors' code


def log_heat_kernel(immersion, z: torch.Tensor, centre: torch.Tensor, time: torch.Tensor, log_volume_z: torch.Tensor,
                    log_volume_centre: torch.Tensor, geodesic_steps: int = 0, curve_points: int = 8) -> torch.Tensor:
    """The parametrix log-density (eq. 3.3) of Brownian motion from ``centre`` for ``time`` at ``z``
    (``[b, d]`` each, ``time`` broadcastable to ``[b]``), w.r.t. the volume measure, for the immersion
    z -> (mu(z), sigma(z)); ``log_volume_*`` are 1/2 log det G at z and at the centre."""
    d = z.shape[-1]
    squared_distance = 2 * geodesic(immersion, z, centre, num_points=curve_points, steps=geodesic_steps).energy
    log_h0 = log_volume_z - log_volume_centre
    return -0.5 * d * torch.log(2 * math.pi * time) + log_h0 - squared_distance / (2 * time)


class RiemannianBrownianPrior(Objective):
    """Args:
        prior_time: initial t_p (learned).
        geodesic_steps: L-BFGS iterations per geodesic distance (0: straight lines).
        curve_points: points discretising each curve.
        walk_steps: Euler steps of the Brownian walk that samples the prior.
    """

    requires_encoder = True
    requires_gaussian_latent = True  # the latent space is R^d with features z; its N(0, I) is not the prior
    isotropic_encoder = True
    own_prior = True

    def __init__(self, prior_time: float = 1.0, geodesic_steps: int = 0, curve_points: int = 6, walk_steps: int = 50):
        super().__init__()
        if prior_time <= 0:
            raise ValueError(f"prior_time must be positive; got {prior_time}.")
        self.geodesic_steps, self.curve_points, self.walk_steps = geodesic_steps, curve_points, walk_steps
        self.log_prior_time = nn.Parameter(torch.tensor(math.log(prior_time)))
        self.register_buffer("prior_phase", torch.tensor(False))

    def attach(self, model):
        super().attach(model)
        if not isinstance(model.likelihood, HeteroscedasticGaussianLikelihood):
            raise ValueError(
                "The R-VAE's metric needs a decoded standard deviation: set model.likelihood to "
                "lvm.likelihoods.HeteroscedasticGaussianLikelihood and model.decoder to lvm.networks.MeanPrecisionDecoder "
                f"(got {type(model.likelihood).__name__})."
            )
        self.prior_mean = nn.Parameter(torch.zeros(model.latent.dim))

    @property
    def prior_time(self) -> torch.Tensor:
        return self.log_prior_time.exp()

    @staticmethod
    def image(model, params: torch.Tensor) -> torch.Tensor:
        """(mu, sigma) ``[n, 2D]`` from decoder parameters ``[n, 2D]``."""
        return torch.cat([model.likelihood.mean(params), model.likelihood.std(params)], dim=-1)

    def immersion(self, model):
        """z -> (mu(z), sigma(z)) ``[n, 2D]`` from one decoder pass (eq. 2.4); its pull-back metric is
        eq. 2.5."""
        return lambda z: self.image(model, model.decoder_params(z))

    def posterior(self, model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The heat-kernel posterior's centre ``[b, d]`` and time ``[b]``."""
        out = model.encoder(x)  # [b, d + 1]
        d = model.latent.dim
        return out[:, :d], out[:, d].exp().clamp(MIN_TIME, MAX_TIME)

    @torch.no_grad()
    def start_prior_phase(self, model, codes: torch.Tensor) -> None:
        """Open the prior phase: the ELBO replaces the reconstruction loss and the prior is centred on
        the mean of the training codes ``[n, d]`` (the authors' one-cluster k-means)."""
        self.prior_mean.copy_(codes.mean(0))
        self.prior_phase.fill_(True)

    def log_prior(self, model, z: torch.Tensor, log_volume_z: torch.Tensor) -> torch.Tensor:
        """log p(z) w.r.t. the volume measure, eq. 3.7, ``[b]``."""
        immersion = self.immersion(model)
        log_volume_centre = log_volume(immersion, self.prior_mean[None])  # [1]: one centre for all
        return log_heat_kernel(immersion, z, self.prior_mean.expand_as(z), self.prior_time, log_volume_z,
                               log_volume_centre, self.geodesic_steps, self.curve_points)

    def posterior_draws(self, model, centre: torch.Tensor, time: torch.Tensor, num_samples: int):
        """``num_samples`` draws ``[k, b, d]`` from the heat-kernel posterior by one Brownian step of
        duration t_q (eq. 3.14): z = mu_q + sqrt(t_q) L^-T eps with G(mu_q) = L L^T, so that
        l^2(z, mu_q) ~ t_q |eps|^2 as for the heat kernel itself. Also returns F(mu_q) ``[b, 2D]``,
        1/2 log det G(mu_q) ``[b]`` and the draws' Lebesgue log-density ``[k, b]`` under N(mu_q, t_q G^-1)."""
        immersion = self.immersion(model)
        image, jacobian = forward_jacobian(immersion, centre)  # [b, 2D], [b, 2D, d]
        cholesky = torch.linalg.cholesky(jacobian.mT @ jacobian)  # [b, d, d]
        log_volume_q = torch.log(torch.diagonal(cholesky, dim1=-2, dim2=-1)).sum(-1)
        eps = torch.randn(num_samples, *centre.shape, dtype=centre.dtype, device=centre.device)  # [k, b, d]
        step = torch.linalg.solve_triangular(cholesky.mT, eps.unsqueeze(-1), upper=True).squeeze(-1)
        z = centre + time.sqrt()[:, None] * step
        d = centre.shape[1]
        log_density = log_volume_q - 0.5 * (eps.pow(2).sum(-1) + d * torch.log(2 * math.pi * time))
        return z, image, log_volume_q, log_density

    def draw_latent(self, model, x):
        """The autoencoder phase's draw: Euclidean, z = mu_q + sqrt(t_q) eps (the authors' code)."""
        centre, time = self.posterior(model, x)
        return centre + time.sqrt()[:, None] * torch.randn_like(centre)

    def forward(self, model, x):
        if not self.prior_phase and model.training:  # the autoencoder phase (C.1): reconstruction only
            z = self.draw_latent(model, x)
            reconstruction = model.likelihood.log_prob(model.flatten(x), model.decoder_params(z))
            return {"loss": -reconstruction.mean(), "reconstruction": reconstruction.mean()}
        centre, time = self.posterior(model, x)
        draws, image_q, log_volume_q, _ = self.posterior_draws(model, centre, time, 1)
        z = draws[0]  # [b, d]
        params = model.decoder_params(z)
        reconstruction = model.likelihood.log_prob(model.flatten(x), params)  # [b]
        kl = self.kl(model, z, time, self.image(model, params), image_q, log_volume_q)
        elbo = reconstruction - kl
        loss = -elbo.mean() if self.prior_phase else -reconstruction.mean()  # held-out batches before the switch
        return {"loss": loss, "elbo": elbo.mean(), "reconstruction": reconstruction.mean(), "kl": kl.mean(),
                "prior_time": self.prior_time.detach()}

    def kl(self, model, z: torch.Tensor, time: torch.Tensor, image_z: torch.Tensor, image_q: torch.Tensor,
           log_volume_q: torch.Tensor) -> torch.Tensor:
        """The one-sample KL of eq. 3.8, log q(z | x) - log p(z), ``[b]``:

            d/2 log(t_p / t_q) + 1/2 log det G(mu_p) - 1/2 log det G(mu_q) + l_p^2 / (2 t_p) - l_q^2 / (2 t_q)

        (the volume at z cancels). ``z`` lies within about sqrt(t_q) of mu_q, so l_q^2 is the squared
        chord |F(z) - F(mu_q)|^2 of the immersion F (exact to second order), from F(z) ``image_z`` and
        F(mu_q) ``image_q``; l_p^2 is 2 x the energy of a curve (module docstring)."""
        immersion = self.immersion(model)
        image_p, log_volume_p = image_and_log_volume(immersion, self.prior_mean[None])  # [1, 2D], [1]: one centre
        squared_q = (image_z - image_q).pow(2).sum(-1)
        prior_centre = self.prior_mean.expand_as(z)
        if self.geodesic_steps:
            energy_p = geodesic(immersion, z, prior_centre, num_points=self.curve_points, steps=self.geodesic_steps).energy
        else:  # the straight line, reusing the images of its end points
            energy_p = straight_line_energy(immersion, z, prior_centre, image_z, image_p, self.curve_points)
        t_p, d = self.prior_time, z.shape[-1]
        return (0.5 * d * torch.log(t_p / time) + log_volume_p - log_volume_q + energy_p / t_p
                - squared_q / (2 * time))

    def held_out_log_likelihood(self, model, x, num_samples, chunk_size=None):
        """Importance sampling with the posterior's one-step proposal N(mu_q, t_q G(mu_q)^-1) and the
        prior's Lebesgue density p(z) sqrt(det G(z)) (the parametrix is normalised only approximately,
        so this is an approximate log p(x))."""
        centre, time = self.posterior(model, x)
        immersion = self.immersion(model)
        d = centre.shape[1]

        def draw(k):
            z, _, _, log_density = self.posterior_draws(model, centre, time, k)  # [k, b, d], [k, b]
            flat = z.reshape(-1, d)
            volume = log_volume(immersion, flat)
            log_prior = (self.log_prior(model, flat, volume) + volume).view(z.shape[:-1])  # Lebesgue density
            return z, log_prior - log_density

        return importance_sampled_log_likelihood(model, x, draw, num_samples, chunk_size)

    def sample_latent(self, model, n):
        start = self.prior_mean.detach().expand(n, -1)
        return brownian_motion(self.immersion(model), start, self.prior_time.detach(), self.walk_steps)[-1]
