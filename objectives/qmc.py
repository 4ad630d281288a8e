"""QMC lattice objective: quasi-Monte Carlo latent variable models (QLVM).

Paper: "Quasi Monte Carlo methods enable extremely low-dimensional deep generative models", Martinez and
Williams, 2024 (QLVM), section 2.2.
The loss is the negative of eq. 5,

    L(x) = log (1/m) sum_j p_theta(x | z_j),

computed with a log-sum-exp over one randomly shifted lattice per batch (appendix A.1) that is
shared by every example of the batch (section 2.3): the decoder runs once on ``m`` points and
the ``[b, m]`` table of log-likelihoods is one matrix product (:mod:`lvm.likelihoods`).
No encoder is trained.
"""

from __future__ import annotations

from lvm.lattices import PointSet
from lvm.objective import Objective
from lvm.priors import InvertiblePrior
from lvm.qmc import qmc_log_likelihood

__all__ = ["QMCObjective"]


class QMCObjective(Objective):
    """Args:
        num_points: lattice size m (a Fibonacci number for 2-D latents: 144, 610, 2584, ...).
        points: ``"rqmc"`` (randomly shifted lattice, default), ``"qmc"`` (fixed lattice) or
            ``"mc"`` (independent uniform points): the three conditions of Fig. A7.
    """

    def __init__(self, num_points: int = 2584, points: str = "rqmc"):
        super().__init__()
        self.num_points, self.points = num_points, points

    def validate(self, model):
        self.require(model, prior=InvertiblePrior)

    def forward(self, model, x):
        points = PointSet(self.num_points, model.prior.dim, self.points).draw()  # [m, d] in the unit cube
        log_likelihood = qmc_log_likelihood(model, model.flatten(x), points)  # [b]
        return {"loss": -log_likelihood.mean(), "lattice_log_likelihood": log_likelihood.mean()}
