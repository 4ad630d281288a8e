"""ELBO: the variational autoencoder objective (QLVM paper eq. 4; Kingma & Welling 2014).

    L_ELBO(x) = (1/k) sum_j log p_theta(x | z_j) - KL(q_phi(z | x) || N(0, I)),
    z_j ~ q_phi(z | x) = N(mu_phi(x), diag sigma_phi(x)^2)   (reparameterised),

with the KL in closed form (:func:`lvm.variational.elbo_terms`).
"""

from __future__ import annotations

from lvm.objective import Objective
from lvm.posteriors import DiagonalGaussianPosterior
from lvm.priors import StandardNormalPrior
from lvm.variational import elbo_terms

__all__ = ["ELBO"]


class ELBO(Objective):
    """Args:
        num_samples: k, the number of reparameterised samples per example (1 in the paper).
    """

    def __init__(self, num_samples: int = 1):
        super().__init__()
        self.num_samples = num_samples

    def validate(self, model):
        self.require(model, prior=StandardNormalPrior, posterior=DiagonalGaussianPosterior)

    def forward(self, model, x):
        elbo, reconstruction, kl = elbo_terms(model, x, self.num_samples)
        return {"loss": -elbo.mean(), "elbo": elbo.mean(), "reconstruction": reconstruction.mean(), "kl": kl.mean()}
