"""Held-out evaluation shared by every objective, so runs are comparable.

``{stage}/log_likelihood`` (nats per example) and ``{stage}/bits_per_dim`` are always logged. The estimator is
chosen from the model's prior and posterior types, never from the objective:

* a :class:`lvm.priors.LatticePrior`: the dithered importance-weighted estimate of a lattice code
  (:func:`lvm.estimators.variational.dithered_log_likelihood`, K = ``eval_num_samples`` dithers);
* an :class:`lvm.priors.InvertiblePrior` with latent dimension <= 3: defensive multiple importance sampling over
  the randomly shifted dense lattice of eq. 5 (QLVM paper) and proposals adapted to each example (and q(z | x) for
  Gaussian encoders; :mod:`lvm.estimators.defensive`), whatever trained the model. It equals eq. 5 where the lattice resolves
  the posterior and converges where it does not (sharp posteriors); its effective sample size is logged as
  ``{stage}/log_likelihood_ess``, with a warning below 10;
* otherwise, with a posterior: importance sampling with the posterior's proposal (q(z | x) for variational
  posteriors, the Laplace approximation around the code for point masses) and the prior's density
  (:func:`lvm.estimators.variational.proposal_log_likelihood`). The R-VAE's Brownian-motion prior is normalised numerically up
  to 3-D (:meth:`lvm.priors.BrownianMotionPrior.log_normaliser`; its relative error is logged as
  ``{stage}/prior_normalisation_error``), so its log p(x) is a proper density there; above 3-D it is the
  unnormalised parametrix (approximate).

Models with a diagonal Gaussian posterior and the standard normal prior also get the unbiased sampling ELBO
``{stage}/sampled_elbo``, the importance-sampled ``{stage}/importance_log_likelihood`` (IWAE bound with K samples)
and the fraction of (eps, delta)-collapsed latent dimensions ``{stage}/collapsed_fraction`` (Taylor-VAE eq. 22),
so the gap between a biased training objective and the model's true quality is visible.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from lightning.pytorch.utilities import rank_zero_warn
from torchmetrics import MeanMetric

from lvm.estimators.defensive import defensive_log_likelihood
from lvm.estimators.metrics import PosteriorCollapse
from lvm.posteriors import DiagonalGaussianPosterior, Posterior
from lvm.priors import (MAX_NORMALISED_DIM, BrownianMotionPrior, InvertiblePrior, LatticePrior, Prior,
                     StandardNormalPrior)
from lvm.estimators.variational import dithered_log_likelihood, elbo_terms, proposal_log_likelihood

__all__ = ["HeldOutEvaluation", "MAX_QMC_DIM", "estimator_name"]

MAX_QMC_DIM = 3
MIN_ESS = 10
STAGES = ("val", "test")


def estimator_name(prior: Prior, posterior: Posterior | None) -> str:
    """``"lattice"``, ``"defensive"`` or ``"importance"``: the held-out estimator for these components."""
    if isinstance(prior, LatticePrior):
        return "lattice"
    if isinstance(prior, InvertiblePrior) and prior.dim <= MAX_QMC_DIM:
        return "defensive"
    if posterior is not None:
        return "importance"
    raise ValueError(
        f"No held-out log-likelihood estimate for a {prior.dim}-D {type(prior).__name__} without an encoder: lattices are "
        f"practical up to {MAX_QMC_DIM}-D for priors reached from the unit cube; use latent dim <= {MAX_QMC_DIM}, or add "
        "model.encoder and model.posterior for an importance-sampled estimate."
    )


class HeldOutEvaluation(nn.Module):
    """Metric states for the ``val`` and ``test`` stages (torchmetrics, so exact under DDP).

    Memory is bounded like the QMC estimate's: importance samples are drawn in chunks so that at most
    ``model.eval_chunk_size`` latents are decoded at once (``eval_chunk_size // b`` samples per chunk), whatever K.

    Args:
        prior, posterior: the model's components (the estimator follows their types).
        num_samples: K for the importance-sampled estimates.
    """

    def __init__(self, prior: Prior, posterior: Posterior | None, num_samples: int = 100):
        super().__init__()
        self.estimator = estimator_name(prior, posterior)
        self.variational = isinstance(posterior, DiagonalGaussianPosterior) and isinstance(prior, StandardNormalPrior)
        self.num_samples = num_samples
        names = ["log_likelihood", "bits_per_dim"] + (["log_likelihood_ess"] if self.estimator == "defensive" else [])
        self.normalised_numerically = isinstance(prior, BrownianMotionPrior) and prior.dim <= MAX_NORMALISED_DIM
        if self.normalised_numerically:
            names.append("prior_normalisation_error")
        if self.variational:
            names += ["sampled_elbo", "importance_log_likelihood"]
        self.names = set(names) | ({"collapsed_fraction"} if self.variational else set())  # what update logs
        self.means = nn.ModuleDict({f"{stage}_{name}": MeanMetric() for stage in STAGES for name in names})
        if self.variational:
            self.collapse = nn.ModuleDict({stage: PosteriorCollapse(prior.dim) for stage in STAGES})

    @staticmethod
    def samples_per_chunk(model, x: torch.Tensor) -> int:
        """Importance samples per chunk: ``eval_chunk_size`` decoded latents over the batch."""
        return max(1, model.eval_chunk_size // len(x))

    def log_likelihood(self, model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The held-out ``log p(x)`` estimate ``[b]``, and the effective sample size ``[b]`` of the defensive one."""
        if self.estimator == "lattice":
            return dithered_log_likelihood(model, x, self.num_samples, self.samples_per_chunk(model, x)), None
        if self.estimator == "defensive":
            cube = model.shifted_lattice(shift_seed=model.eval_shift_seed)
            # its proposals' draws are seeded by eval_shift_seed and each example, so an example gets the same estimate
            # in any batch and process (DDP), and the training RNG stream is untouched
            return defensive_log_likelihood(model, x, cube, self.num_samples, chunk_size=model.eval_chunk_size,
                                            seed=model.eval_shift_seed)
        return proposal_log_likelihood(model, x, self.num_samples, self.samples_per_chunk(model, x)), None

    @torch.no_grad()
    def update(self, model, x: torch.Tensor, stage: str) -> None:
        """Update the ``stage`` metrics with a batch and log them through ``model.log``."""
        values = {}
        if self.variational:
            values["sampled_elbo"] = elbo_terms(model, x, 1)[0]
            values["importance_log_likelihood"] = proposal_log_likelihood(model, x, self.num_samples,
                                                                          self.samples_per_chunk(model, x))
            self.collapse[stage].update(model.posterior.kl_to_standard_normal(model.encode(x)))
            model.log(f"{stage}/collapsed_fraction", self.collapse[stage])
        if self.variational and self.estimator == "importance":  # the same estimate: computed once
            values["log_likelihood"] = values["importance_log_likelihood"]
        else:
            values["log_likelihood"], ess = self.log_likelihood(model, x)
            if ess is not None:
                values["log_likelihood_ess"] = ess
                if ess.mean() < MIN_ESS:
                    rank_zero_warn(f"The held-out log-likelihood has not converged: effective sample size {ess.mean():.1f} "
                                   f"< {MIN_ESS} on a {stage} batch; raise model.eval_num_samples or model.eval_num_points.")
        values["bits_per_dim"] = -values["log_likelihood"] / (model.flatten(x).shape[1] * math.log(2))
        if self.normalised_numerically:  # the relative error of the prior's numerical normaliser
            values["prior_normalisation_error"] = torch.tensor(model.prior.normalisation_error)
        for name, value in values.items():
            metric = self.means[f"{stage}_{name}"]
            metric.update(value)
            model.log(f"{stage}/{name}", metric, prog_bar=name == "log_likelihood")
