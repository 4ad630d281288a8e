"""ELBO: the variational autoencoder objective (QLVM paper eq. 4; Kingma & Welling 2014).

    L_ELBO(x) = (1/k) sum_j log p_theta(x | z_j) - KL(q_phi(z | x) || N(0, I)),
    z_j ~ q_phi(z | x) = N(mu_phi(x), diag sigma_phi(x)^2)   (reparameterised),

with the KL in closed form (:func:`lvm.estimators.variational.elbo_terms`).

KL warm-up: the training loss weights the KL term by :attr:`ELBO.kl_weight` (beta, 1 unless a schedule such as
:class:`lvm.callbacks.KLWarmup` sets it), ``loss = -(reconstruction - beta KL)``. The logged ``elbo``, ``reconstruction``
and ``kl`` are always the unweighted terms, and held-out batches (the model in eval mode) always score the
unweighted negative ELBO as their ``loss``, so validation and test metrics are comparable across the schedule.
"""

from __future__ import annotations

from lvm.objective import Objective
from lvm.posteriors import DiagonalGaussianPosterior
from lvm.priors import StandardNormalPrior
from lvm.estimators.variational import elbo_terms

__all__ = ["ELBO"]


class ELBO(Objective):
    """Args:
        num_samples: k, the number of reparameterised samples per example (1 in the paper).

    Attributes:
        kl_weight: beta, the weight of the KL term in the training loss (1.0: the ELBO). Not a setting: the hook
            a KL schedule writes (:class:`lvm.callbacks.KLWarmup` sets it at every training epoch's start and saves
            its schedule in checkpoints).
    """

    def __init__(self, num_samples: int = 1):
        super().__init__()
        self.num_samples = num_samples
        self.kl_weight = 1.0

    def validate(self, model):
        self.require(model, prior=StandardNormalPrior, posterior=DiagonalGaussianPosterior)

    def forward(self, model, x):
        elbo, reconstruction, kl = elbo_terms(lambda z: model.log_prob(x, z), model.posterior, model.prior,
                                              model.encode(x), self.num_samples)
        elbo, reconstruction, kl = elbo.mean(), reconstruction.mean(), kl.mean()
        weighted = model.training and self.kl_weight != 1.0
        loss = -(reconstruction - self.kl_weight * kl) if weighted else -elbo
        return {"loss": loss, "elbo": elbo, "reconstruction": reconstruction, "kl": kl}
