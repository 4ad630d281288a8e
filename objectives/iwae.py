"""IWAE: the importance weighted autoencoder bound (QLVM paper eq. 7; Burda et al. 2016).

    L_IWAE(x) = log (1/k) sum_j p_theta(x | z_j) p(z_j) / q_phi(z_j | x),   z_j ~ q_phi(z | x).

It equals the ELBO for k = 1 and increases to log p(x) as k grows (in expectation).
"""

from __future__ import annotations

from lvm.objective import Objective
from lvm.posteriors import DiagonalGaussianPosterior
from lvm.priors import StandardNormalPrior
from lvm.estimators.variational import proposal_log_likelihood

__all__ = ["IWAE"]


class IWAE(Objective):
    """Args:
        num_samples: k importance samples per example (10 in the paper, appendix B).
    """

    def __init__(self, num_samples: int = 10):
        super().__init__()
        self.num_samples = num_samples

    def validate(self, model):
        self.require(model, prior=StandardNormalPrior, posterior=DiagonalGaussianPosterior)

    def forward(self, model, x):
        proposal = model.posterior.proposal(model.encode(x))  # q(z | x)
        bound = proposal_log_likelihood(lambda z: model.log_prob(x, z), proposal, model.prior.log_prob, self.num_samples)
        return {"loss": -bound.mean(), "iwae": bound.mean()}
