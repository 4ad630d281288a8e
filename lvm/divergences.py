"""Analytic KL divergences KL(q(z | x) || p(z)) between a posterior family and a prior, chosen by their types.

As ``torch.distributions.register_kl``: :func:`register_kl` adds the closed form for a (posterior, prior) pair and
:func:`kl_divergence` finds the most specific registered pair (:func:`lvm.dispatch.matches_by_specificity`), so a
new family adds its KL here without touching the objectives or the held-out metrics that use it. Pairs without a closed
form (the R-VAE's Brownian step against the Brownian-motion prior) have none: :func:`has_analytic_kl` says so, and
their objectives estimate the KL by sampling.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from lvm.dispatch import matches_by_specificity
from lvm.posteriors import DiagonalGaussianPosterior, Posterior
from lvm.priors import Prior, StandardNormalPrior

__all__ = ["register_kl", "kl_divergence", "has_analytic_kl"]

KL = Callable[[Posterior, Prior, torch.Tensor], torch.Tensor]  # (posterior, prior, params [b, *]) -> [b, d]
_REGISTRY: dict[tuple[type, type], KL] = {}


def register_kl(posterior_type: type, prior_type: type) -> Callable[[KL], KL]:
    """Decorator: ``fn(posterior, prior, params)`` is the per-dimension KL ``[b, d]`` for these types."""

    def decorator(fn: KL) -> KL:
        _REGISTRY[posterior_type, prior_type] = fn
        return fn

    return decorator


def _lookup(posterior: Posterior | None, prior: Prior) -> KL | None:
    matches = matches_by_specificity(_REGISTRY, posterior, prior)
    return matches[0] if matches else None


def has_analytic_kl(posterior: Posterior | None, prior: Prior) -> bool:
    """Whether KL(q || p) has a registered closed form for these components."""
    return _lookup(posterior, prior) is not None


def kl_divergence(posterior: Posterior, prior: Prior, params: torch.Tensor) -> torch.Tensor:
    """``KL(q(z | x) || p(z))`` per latent dimension ``[b, d]`` for the encoder's output ``params``."""
    fn = _lookup(posterior, prior)
    if fn is None:
        raise NotImplementedError(f"No closed-form KL between {type(posterior).__name__} and {type(prior).__name__}; "
                                  "register one with lvm.divergences.register_kl, or estimate it by sampling.")
    return fn(posterior, prior, params)


@register_kl(DiagonalGaussianPosterior, StandardNormalPrior)
def _diagonal_gaussian_to_standard_normal(posterior: DiagonalGaussianPosterior, prior: StandardNormalPrior,
                                          params: torch.Tensor) -> torch.Tensor:
    """``1/2 (mu^2 + s^2 - log s^2 - 1)`` per dimension."""
    mean, log_var = posterior.mean_and_log_var(params)
    return 0.5 * (mean.pow(2) + torch.exp(log_var) - log_var - 1.0)
