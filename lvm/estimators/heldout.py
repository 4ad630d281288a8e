"""Held-out evaluation shared by every objective, so runs are comparable.

``{stage}/log_likelihood`` (nats per example) and ``{stage}/bits_per_dim`` are always logged. The estimator is
chosen from the model's prior and posterior types, never from the objective, by a registry keyed on the two types
(:func:`register_estimator`, as ``torch.distributions.register_kl``; the most specific prior type wins, then the most
specific posterior type; a factory may decline, e.g. above 3-D, and the next match is tried):

* a :class:`lvm.priors.LatticePrior`: the dithered importance-weighted estimate of a lattice code
  (:func:`lvm.estimators.variational.dithered_log_likelihood`, K = ``eval_num_samples`` dithers);
* an :class:`lvm.priors.InvertiblePrior` with latent dimension <= 3: defensive multiple importance sampling over
  the randomly shifted dense lattice of eq. 5 (QLVM paper) and proposals adapted to each example (and q(z | x) for
  diagonal-Gaussian encoders; :mod:`lvm.estimators.defensive`), whatever trained the model. It equals eq. 5 where the
  lattice resolves the posterior and converges where it does not (sharp posteriors); its effective sample size is
  logged as ``{stage}/log_likelihood_ess``, with a warning below 10. Embeddings of such models are read from the
  posterior on the lattice (:attr:`HeldOutEstimator.lattice_posterior`);
* otherwise, with a posterior: importance sampling with the posterior's proposal (q(z | x) for variational
  posteriors, the Laplace approximation around the code for point masses) and the prior's density
  (:func:`lvm.estimators.variational.proposal_log_likelihood`). The R-VAE's Brownian-motion prior is normalised
  numerically up to 3-D (:meth:`lvm.priors.BrownianMotionPrior.log_normaliser`; its relative error is logged as
  ``{stage}/prior_normalisation_error``), so its log p(x) is a proper density there; above 3-D it is the
  unnormalised parametrix (approximate).

Models whose posterior has a closed-form KL to the prior (:mod:`lvm.divergences`: a diagonal Gaussian against the
standard normal) also get the unbiased sampling ELBO ``{stage}/sampled_elbo``, the importance-sampled
``{stage}/importance_log_likelihood`` (IWAE bound with K samples) and the fraction of (eps, delta)-collapsed latent
dimensions ``{stage}/collapsed_fraction`` (Taylor-VAE eq. 22), so the gap between a biased training objective and the
model's true quality is visible.

The estimators are glue: they read what a model offers (``flatten``, ``encode``, ``log_prob``,
``pairwise_log_likelihood``, ``prior_log_prob``, ...) and call the functions of :mod:`lvm.estimators`, which take
tensors and callables only.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torchmetrics import MeanMetric

from lvm.dispatch import matches_by_specificity
from lvm.divergences import has_analytic_kl, kl_divergence
from lvm.estimators.defensive import defensive_log_likelihood
from lvm.estimators.metrics import PosteriorCollapse
from lvm.estimators.variational import dithered_log_likelihood, elbo_terms, proposal_log_likelihood
from lvm.numerics.lattices import MAX_LATTICE_DIM
from lvm.posteriors import DiagonalGaussianPosterior, PointMassPosterior, Posterior, laplace_precision
from lvm.priors import InvertiblePrior, LatticePrior, Prior

__all__ = ["HeldOutEvaluation", "HeldOutEstimator", "register_estimator", "held_out_estimator", "bits_per_dim"]

MIN_ESS = 10
STAGES = ("val", "test")


def bits_per_dim(log_likelihood: torch.Tensor, num_dims: int, quantization_step: float | None = None) -> torch.Tensor:
    """Bits per dimension ``-log p(x) / (D ln 2)`` of a log-likelihood in nats per example.

    For quantised data (levels ``quantization_step`` apart, in the model's units) scored by a density, the
    convention of the normalising-flow literature (uniform dequantisation: Theis, van den Oord & Bethge, "A note on
    the evaluation of generative models", 2016): the probability of an example's bin, ``P(x) = p(x) step^D`` when the
    density is flat over the bin of volume ``step^D``, so ``-(log p(x) + D ln step) / (D ln 2)`` = the density's bits
    plus ``log2(1 / step)`` bits. This is >= 0 whenever the density is no higher than ``1 / step^D`` within a bin and
    matches the figures of models trained on 8-bit images (``step = 1/255``: + 7.99 bits). Probability masses
    (Bernoulli, Poisson, negative binomial) and continuous data pass ``None``."""
    log_volume = num_dims * math.log(quantization_step) if quantization_step is not None else 0.0
    return -(log_likelihood + log_volume) / (num_dims * math.log(2))


def _samples_per_chunk(model, x: torch.Tensor) -> int:
    """Importance samples per chunk: ``eval_chunk_size`` decoded latents over the batch."""
    return max(1, model.eval_chunk_size // len(x))


class HeldOutEstimator:
    """A held-out estimate of ``log p(x)`` for one (prior, posterior) pair: ``estimator(model, x, num_samples)``
    returns ``{"log_likelihood": [b], ...}`` plus the per-example diagnostics named in :attr:`diagnostics`
    (``num_samples``: K importance samples, dithers or draws per stage)."""

    lattice_posterior = False  # embeddings come from the posterior on the evaluation lattice
    diagnostics: tuple[str, ...] = ()  # further per-example values it returns (logged as {stage}/<name>)

    def __call__(self, model, x: torch.Tensor, num_samples: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError


class DitheredEstimator(HeldOutEstimator):
    """K dithers of a lattice code (:func:`lvm.estimators.variational.dithered_log_likelihood`)."""

    def __call__(self, model, x, num_samples):
        value = dithered_log_likelihood(lambda z: model.log_prob(x, z), model.prior, model.latent_code(x),
                                        num_samples, _samples_per_chunk(model, x))
        return {"log_likelihood": value}


class DefensiveEstimator(HeldOutEstimator):
    """Defensive importance sampling over the shifted lattice (:mod:`lvm.estimators.defensive`), with the encoder's
    diagonal-Gaussian q(z | x) as one more technique when ``with_q``."""

    lattice_posterior = True
    diagnostics = ("log_likelihood_ess",)

    def __init__(self, with_q: bool = False):
        self.with_q = with_q

    def __call__(self, model, x, num_samples):
        x_flat = model.flatten(x)
        cube = model.shifted_lattice(shift_seed=model.eval_shift_seed)  # [m, d]
        table = model.lattice_table(x_flat, cube)  # [b, m]: the kept decoded lattice when the shift is fixed
        q = model.posterior.mean_and_log_var(model.encode(x)) if self.with_q else None
        # its proposals' draws are seeded by eval_shift_seed and each example, so an example gets the same estimate
        # in any batch and process (DDP), and the training RNG stream is untouched
        value, ess = defensive_log_likelihood(lambda z_: model.log_prob(x, z_),
                                              lambda z_: model.pairwise_log_likelihood(x_flat, z_), model.prior,
                                              x_flat, cube, num_samples,
                                              chunk_size=model.eval_chunk_size, seed=model.eval_shift_seed, q=q,
                                              lattice_table=table)
        return {"log_likelihood": value, "log_likelihood_ess": ess}


class ProposalEstimator(HeldOutEstimator):
    """Importance sampling with the posterior's own proposal (q(z | x), or a Brownian step on the decoder's
    manifold) and the prior's density."""

    def proposal(self, model, params: torch.Tensor):
        return model.posterior.proposal(params, model.immersion())

    def __call__(self, model, x, num_samples):
        value = proposal_log_likelihood(lambda z: model.log_prob(x, z), self.proposal(model, model.encode(x)),
                                        model.prior_log_prob, num_samples,
                                        _samples_per_chunk(model, x))
        return {"log_likelihood": value}


class LaplaceEstimator(ProposalEstimator):
    """Importance sampling around an autoencoder's code with the Laplace approximation of the posterior
    (:func:`lvm.posteriors.laplace_precision`), exact for a linear decoder with Gaussian noise."""

    def proposal(self, model, params):
        code = params.detach()
        precision = laplace_precision(model.decoded_mean, model.likelihood.mean_fisher_information,
                                      model.prior_log_prob, code)
        return model.posterior.laplace_proposal(code, precision)


Factory = Callable[[Prior, Posterior | None], HeldOutEstimator | None]
_REGISTRY: dict[tuple[type, type], Factory] = {}


def register_estimator(prior_type: type, posterior_type: type = object) -> Callable[[Factory], Factory]:
    """Decorator: ``factory(prior, posterior)`` gives the held-out estimator for these types, or ``None`` to decline
    (the next most specific registered pair is tried). ``posterior_type=object`` matches any posterior and none."""

    def decorator(factory: Factory) -> Factory:
        _REGISTRY[prior_type, posterior_type] = factory
        return factory

    return decorator


def held_out_estimator(prior: Prior, posterior: Posterior | None) -> HeldOutEstimator:
    """The registered estimator for these components: the most specific prior type first, then posterior type."""
    for factory in matches_by_specificity(_REGISTRY, prior, posterior):
        estimator = factory(prior, posterior)
        if estimator is not None:
            return estimator
    raise ValueError(
        f"No held-out log-likelihood estimate for a {prior.dim}-D {type(prior).__name__} without an encoder: lattices are "
        f"practical up to {MAX_LATTICE_DIM}-D for priors reached from the unit cube; use latent dim <= {MAX_LATTICE_DIM}, or add "
        "model.encoder and model.posterior for an importance-sampled estimate."
    )


@register_estimator(LatticePrior)
def _lattice_code(prior, posterior):
    return DitheredEstimator()


@register_estimator(InvertiblePrior)
def _lattice(prior, posterior):
    return DefensiveEstimator() if prior.dim <= MAX_LATTICE_DIM else None


@register_estimator(InvertiblePrior, DiagonalGaussianPosterior)
def _lattice_and_q(prior, posterior):
    return DefensiveEstimator(with_q=True) if prior.dim <= MAX_LATTICE_DIM else None


@register_estimator(Prior, Posterior)
def _proposal(prior, posterior):
    return ProposalEstimator()


@register_estimator(Prior, PointMassPosterior)
def _laplace(prior, posterior):
    return LaplaceEstimator()


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
        self.estimator = held_out_estimator(prior, posterior)
        self.variational = has_analytic_kl(posterior, prior)
        self.num_samples = num_samples
        names = ["log_likelihood", "bits_per_dim", *self.estimator.diagnostics]
        self.normalised_numerically = prior.normalised_numerically
        if self.normalised_numerically:
            names.append("prior_normalisation_error")
        if self.variational:
            names += ["sampled_elbo", "importance_log_likelihood"]
        self.names = set(names) | ({"collapsed_fraction"} if self.variational else set())  # what update logs
        self.means = nn.ModuleDict({f"{stage}_{name}": MeanMetric() for stage in STAGES for name in names})
        if self.variational:
            self.collapse = nn.ModuleDict({stage: PosteriorCollapse(prior.dim) for stage in STAGES})

    @torch.no_grad()
    def log_likelihood(self, model, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The held-out estimate of ``log p(x)`` per example, ``{"log_likelihood": [b], ...}`` with the estimator's
        diagnostics (e.g. ``log_likelihood_ess``)."""
        return self.estimator(model, x, self.num_samples)

    @torch.no_grad()
    def update(self, model, x: torch.Tensor, stage: str) -> dict[str, torch.Tensor]:
        """Update the ``stage`` metrics with a batch and log them through ``model.log``; returns the batch's values
        (``{"log_likelihood": [b], "bits_per_dim": [b], ...}``)."""
        values = {}
        if self.variational:
            params = model.encode(x)
            log_likelihood = lambda z: model.log_prob(x, z)  # noqa: E731
            values["sampled_elbo"] = elbo_terms(log_likelihood, model.posterior, model.prior, params, 1)[0]
            values["importance_log_likelihood"] = proposal_log_likelihood(
                log_likelihood, model.posterior.proposal(params), model.prior_log_prob, self.num_samples,
                _samples_per_chunk(model, x))
            self.collapse[stage].update(kl_divergence(model.posterior, model.prior, params))
            model.log(f"{stage}/collapsed_fraction", self.collapse[stage])
        if self.variational and type(self.estimator) is ProposalEstimator:  # the same estimate: computed once
            values["log_likelihood"] = values["importance_log_likelihood"]
        else:
            values.update(self.log_likelihood(model, x))
            ess = values.get("log_likelihood_ess")
            if ess is not None and ess.mean() < MIN_ESS:
                rank_zero_warn(f"The held-out log-likelihood has not converged: effective sample size {ess.mean():.1f} "
                               f"< {MIN_ESS} on a {stage} batch; raise model.eval_num_samples or model.eval_num_points.")
        step = model.quantization_step if model.likelihood.density else None
        values["bits_per_dim"] = bits_per_dim(values["log_likelihood"], model.flatten(x).shape[1], step)
        if self.normalised_numerically:  # the relative error of the prior's numerical normaliser
            values["prior_normalisation_error"] = torch.tensor(model.prior.normalisation_error)
        for name, value in values.items():
            metric = self.means[f"{stage}_{name}"]
            metric.update(value)
            model.log(f"{stage}/{name}", metric, prog_bar=name == "log_likelihood")
        return values
