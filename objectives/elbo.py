"""ELBO: the variational autoencoder objective (QLVM paper eq. 4; Kingma & Welling 2014).

    L_ELBO(x) = (1/k) sum_j log p_theta(x | z_j) - KL(q_phi(z | x) || N(0, I)),
    z_j ~ q_phi(z | x) = N(mu_phi(x), diag sigma_phi(x)^2)   (reparameterised),

with the KL in closed form (:func:`lvm.variational.kl_to_standard_normal`).
"""

from __future__ import annotations

from lvm.variational import kl_to_standard_normal

from .base import Objective
from .sampling import encode_and_sample

__all__ = ["ELBO"]


class ELBO(Objective):
    """Args:
        num_samples: k, the number of reparameterised samples per example (1 in the paper).
    """

    requires_encoder = True
    requires_gaussian_latent = True

    def __init__(self, num_samples: int = 1):
        super().__init__()
        self.num_samples = num_samples

    def forward(self, model, x):
        draw = encode_and_sample(model, x, self.num_samples)
        reconstruction = draw.log_likelihood.mean(0)  # [b]
        kl = kl_to_standard_normal(draw.mean, draw.log_var)  # [b]
        elbo = reconstruction - kl
        return {"loss": -elbo.mean(), "elbo": elbo.mean(), "reconstruction": reconstruction.mean(), "kl": kl.mean()}
