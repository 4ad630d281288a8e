"""IWAE: the importance weighted autoencoder bound (QLVM paper eq. 7; Burda et al. 2016).

    L_IWAE(x) = log (1/k) sum_j p_theta(x | z_j) p(z_j) / q_phi(z_j | x),   z_j ~ q_phi(z | x).

It equals the ELBO for k = 1 and increases to log p(x) as k grows (in expectation).
"""

from __future__ import annotations

from lvm.qmc import log_mean_exp
from lvm.variational import diagonal_gaussian_log_prob

from .base import Objective
from .sampling import encode_and_sample

__all__ = ["IWAE"]


class IWAE(Objective):
    """Args:
        num_samples: k importance samples per example (10 in the paper, appendix B).
    """

    requires_encoder = True
    requires_gaussian_latent = True

    def __init__(self, num_samples: int = 10):
        super().__init__()
        self.num_samples = num_samples

    def forward(self, model, x):
        draw = encode_and_sample(model, x, self.num_samples)
        log_weights = (
            draw.log_likelihood
            + model.latent.log_prior(draw.z)
            - diagonal_gaussian_log_prob(draw.z, draw.mean, draw.log_var)
        )  # [k, b]
        bound = log_mean_exp(log_weights, dim=0)  # [b]
        return {"loss": -bound.mean(), "iwae": bound.mean()}
