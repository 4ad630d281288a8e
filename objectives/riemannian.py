"""R-VAE: the ELBO of a VAE with a Riemannian Brownian-motion prior ("Variational Autoencoders with Riemannian
Brownian Motion Priors", Kalatzis, Eklund, Arvanitidis and Hauberg, 2020, arXiv:2002.05227).

The model's prior is :class:`lvm.priors.BrownianMotionPrior` (a heat kernel on the manifold the decoder
z -> (mu(z), sigma(z)) immerses, with a learned centre mu_p and time t_p) and its posterior
:class:`lvm.posteriors.BrownianStepPosterior` (a heat kernel with the encoder's centre mu_q(x) and time t_q(x),
drawn by one Brownian step, eq. 3.14). The ELBO (eq. 3.4) uses the one-sample Monte Carlo KL of eqs. 3.5-3.8,
log q(z | x) - log p(z), with both densities in the parametrix approximation (eq. 3.3) with respect to the volume
measure, so the volume at z cancels:

    KL ~= d/2 log(t_p / t_q) + 1/2 log det G(mu_p) - 1/2 log det G(mu_q) + l_p^2 / (2 t_p) - l_q^2 / (2 t_q).

z lies within about sqrt(t_q) of mu_q, so l_q^2 is the squared chord |F(z) - F(mu_q)|^2 of the immersion F (exact
to second order); l_p^2 is 2 x the energy of the prior's curve from z to mu_p (straight line or optimised spline).

Training has two phases (appendix C.1), switched by :class:`lvm.callbacks.TwoPhaseTraining`: until the prior is placed
on the training codes (``prior.placed``) an autoencoder phase trains the reconstruction of a Euclidean draw
z = mu_q + sqrt(t_q) eps (the authors' code), then the full ELBO trains.
"""

from __future__ import annotations

import torch

from lvm.likelihoods import HeteroscedasticGaussianLikelihood
from lvm.numerics.geometry import Immersion
from lvm.objective import Objective
from lvm.posteriors import BrownianStepPosterior
from lvm.priors import BrownianMotionPrior

__all__ = ["RiemannianELBO"]


class RiemannianELBO(Objective):
    """The R-VAE loss: reconstruction only until the prior is placed (appendix C.1), then the negative ELBO."""

    def validate(self, model):
        self.require(model, prior=BrownianMotionPrior, posterior=BrownianStepPosterior,
                     likelihood=HeteroscedasticGaussianLikelihood)
        if getattr(model, "covariates", None) is not None:
            raise ValueError(
                "RiemannianObjective does not take model.covariates: its prior is Brownian motion on the manifold the "
                "decoder immerses, and a conditional decoder immerses one manifold per covariate value, so p(z) "
                "would depend on the covariates and the latent space would not be shared. Use a QMC, ELBO or IWAE "
                "objective for a conditional model.")

    def forward(self, model, x):
        prior, posterior, params = model.prior, model.posterior, model.encode(x)
        if not prior.placed and model.training:  # the autoencoder phase (C.1): reconstruction of a Euclidean draw
            centre, time = posterior.centre_and_time(params)
            z = centre + time.sqrt()[:, None] * torch.randn_like(centre)  # [b, d]
            reconstruction = model.log_prob(x, z[None])[0]
            return {"loss": -reconstruction.mean(), "reconstruction": reconstruction.mean()}
        immersion = model.immersion()
        draws, image_q, log_volume_q, _ = posterior.step(params, 1, immersion)
        z, time = draws[0], posterior.centre_and_time(params)[1]  # [b, d], [b]
        decoded = model.decoder_params(z)
        reconstruction = model.likelihood.log_prob(model.flatten(x), decoded)  # [b]
        kl = self.kl(prior, z, time, model.likelihood.immersion(decoded), image_q, log_volume_q, immersion)
        elbo = reconstruction - kl
        loss = -elbo.mean() if prior.placed else -reconstruction.mean()  # held-out batches before the switch
        return {"loss": loss, "elbo": elbo.mean(), "reconstruction": reconstruction.mean(), "kl": kl.mean(),
                "prior_time": prior.time.detach()}

    @staticmethod
    def kl(prior: BrownianMotionPrior, z: torch.Tensor, time: torch.Tensor, image_z: torch.Tensor,
           image_q: torch.Tensor, log_volume_q: torch.Tensor, immersion: Immersion) -> torch.Tensor:
        """The one-sample KL of eq. 3.8, log q(z | x) - log p(z), ``[b]``, from z ``[b, d]``, t_q ``[b]``, F(z) and
        F(mu_q) ``[b, 2D]`` and 1/2 log det G(mu_q) ``[b]`` (module docstring), on the decoder's ``immersion``."""
        image_p, log_volume_p = prior.centre_image_and_log_volume(immersion)  # [1, 2D], [1]: one centre
        squared_q = (image_z - image_q).pow(2).sum(-1)
        energy_p = prior.energy_to_centre(z, image_z, image_p, immersion)
        d = z.shape[-1]
        return (0.5 * d * torch.log(prior.time / time) + log_volume_p - log_volume_q + energy_p / prior.time
                - squared_q / (2 * time))
