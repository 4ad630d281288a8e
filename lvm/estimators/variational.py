"""Bounds and importance-sampled estimates of log p(x) built on a posterior and a prior, shared by the encoder-based
objectives and by held-out evaluation.

Each function takes ``log_likelihood``, a callable ``z [k, b, d] -> log p(x_b | z_kb) [k, b]`` for the batch at hand
(the model's ``log_prob(x, z)`` partially applied; one decoder pass over all ``k * b`` latents), and the components or
draws it needs, never the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from lvm.divergences import kl_divergence
from lvm.posteriors import Posterior, Proposal
from lvm.priors import LatticePrior, Prior

__all__ = ["LogLikelihood", "elbo_terms", "importance_sampled_log_likelihood", "proposal_log_likelihood",
           "dithered_log_likelihood"]

LogLikelihood = Callable[[torch.Tensor], torch.Tensor]  # z [k, b, d] -> log p(x_b | z_kb) [k, b]


def elbo_terms(log_likelihood: LogLikelihood, posterior: Posterior, prior: Prior, params: torch.Tensor,
               num_samples: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The sampling ELBO of QLVM eq. 4 per example for a posterior with a closed-form KL to the prior
    (:mod:`lvm.divergences`; a diagonal Gaussian against N(0, I)): ``(1/k) sum_j log p(x | z_j) - KL(q(z | x) || p(z))``
    for the encoder's output ``params``. Returns ``(elbo, reconstruction, kl)``, each ``[b]``."""
    reconstruction = log_likelihood(posterior.rsample(params, num_samples)).mean(0)
    kl = kl_divergence(posterior, prior, params).sum(-1)
    return reconstruction - kl, reconstruction, kl


def importance_sampled_log_likelihood(log_likelihood: LogLikelihood,
                                      draw: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
                                      num_samples: int, chunk_size: int | None = None) -> torch.Tensor:
    """The importance-sampled estimate of ``log p(x)`` per example, ``[b]``:
    ``log (1/K) sum_k p(x | z_k) p(z_k) / q(z_k)``, ``z_k ~ q``, a stochastic lower bound whose expectation increases
    to ``log p(x)`` with ``K`` (QLVM eq. 7 when q is the encoder's posterior). ``draw(k)`` returns ``k`` proposal
    draws per example ``z: [k, b, d]`` (the decoder's inputs) and ``log p(z) - log q(z): [k, b]``; ``chunk_size``
    bounds memory by drawing in chunks and combining their log-sum-exps (exact)."""
    step = chunk_size or num_samples
    chunk_log_sums = []
    for start in range(0, num_samples, step):
        z, log_ratio = draw(min(step, num_samples - start))
        chunk_log_sums.append(torch.logsumexp(log_likelihood(z) + log_ratio, dim=0))  # [b]
    return torch.logsumexp(torch.stack(chunk_log_sums), dim=0) - math.log(num_samples)


def proposal_log_likelihood(log_likelihood: LogLikelihood, proposal: Proposal,
                            log_prior: Callable[[torch.Tensor], torch.Tensor], num_samples: int,
                            chunk_size: int | None = None) -> torch.Tensor:
    """:func:`importance_sampled_log_likelihood` with a proposal ``k -> (z [k, b, d], log q(z) [k, b])`` (q(z | x)
    itself, so the IWAE bound of QLVM eq. 7, or the Laplace approximation around an autoencoder's code) and the prior's
    density ``log_prior: z [k, b, d] -> [k, b]``, ``[b]``."""

    def draw(k: int) -> tuple[torch.Tensor, torch.Tensor]:
        z, log_q = proposal(k)
        return z, log_prior(z) - log_q

    return importance_sampled_log_likelihood(log_likelihood, draw, num_samples, chunk_size)


def dithered_log_likelihood(log_likelihood: LogLikelihood, prior: LatticePrior, code: torch.Tensor,
                            num_samples: int, chunk_size: int | None = None) -> torch.Tensor:
    """log (1/K) sum_k p(x | Z_k - U_k) p(Z_k | U_k), ``[b]``: the inference path of a dithered lattice code
    (Lattice Representation Learning, 3.6.3: dither, quantize, subtract, decode) of the encoder's ``code`` ``[b, t]``
    averaged over K dithers in the importance-weighted way (q(Z | x, U) is a point mass, so each weight is the joint
    probability); K = 1 is the one-sample estimate of Table 2."""

    def draw(k: int) -> tuple[torch.Tensor, torch.Tensor]:
        u, z = prior.dither_and_quantize(code.repeat(k, 1))  # [k b, t]
        return (z - u).view(k, *code.shape), -prior.code_length(z, u).view(k, len(code))

    return importance_sampled_log_likelihood(log_likelihood, draw, num_samples, chunk_size)
