"""A held-out log p(x) that converges for every 1-3-D model with a prior reached from the unit cube: defensive
multiple importance sampling over the randomly shifted lattice and proposals adapted to each example.

The randomized-QMC estimate of eq. 5 (QLVM paper) integrates against the prior with m lattice points. When the
posterior p(z | x) is much narrower than the lattice spacing (sharp likelihoods, e.g. 128 x 128 spectrograms) the
lattice misses its mass and eq. 5 falls far below log p(x). Here the lattice is one of several sampling techniques
(Veach and Guibas, "Optimally combining sampling techniques for Monte Carlo rendering", 1995; Owen and Zhou,
"Safe and effective importance sampling", 2000):

* the lattice: m points z_j = F^{-1}(c_j + u mod 1), each distributed as the prior p;
* T stages of K Gaussian proposals r_t(z | x) per example: r_1 is fitted to the lattice posterior (weights
  softmax_j log p(x | z_j)) with its covariance floored at the local lattice spacing s^2 I,
  s = (m p(mu))^{-1/d}; r_{t+1} to all weighted samples so far (covariance inflated x 2);
* for diagonal-Gaussian posteriors, K draws from the encoder's q(z | x).

With the balance heuristic every sample s, from whichever technique, is weighted by

    w_s = p(x | z_s) p(z_s) / (m p(z_s) + sum_t K r_t(z_s) + K q(z_s)),      p_hat(x) = sum_s w_s,

an unbiased estimate of p(x) for fixed proposals (the stages adapt to earlier samples, so the estimator is
consistent, as adaptive multiple importance sampling). Its terms are bounded by p(x | z_s) / m, so it is never
much worse than the lattice alone, and where a proposal covers the posterior it is as good as that proposal. On
periodic priors (the torus) the Gaussians are wrapped: draws are taken modulo 1 and densities summed over the
3^d nearest images. The effective sample size (sum w)^2 / sum w^2 per example is the convergence diagnostic.
"""

from __future__ import annotations

import hashlib
import itertools
import math

import torch

from lvm.estimators.qmc import Pairwise, pairwise_table
from lvm.estimators.variational import LogLikelihood
from lvm.numerics.gaussian import LOG_2PI, diagonal_gaussian_log_prob, half_log_det
from lvm.numerics.logspace import effective_sample_size
from lvm.numerics.torus import circular_mean, nearest_image
from lvm.priors import InvertiblePrior

__all__ = ["defensive_log_likelihood"]


def _gaussian_log_prob(z: torch.Tensor, mean: torch.Tensor, cholesky: torch.Tensor, periodic: bool) -> torch.Tensor:
    """log N(z; mean_b, L_b L_b^T) for ``z: [n, b, d]``, means ``[b, d]``, factors ``[b, d, d]`` -> ``[n, b]``; on the
    torus the density of the wrapped Gaussian, summed over the 3^d images nearest to each point."""
    d = z.shape[-1]
    offset = z - mean  # [n, b, d]
    shifts = torch.zeros(1, d, dtype=z.dtype, device=z.device)
    if periodic:
        offset = nearest_image(offset)
        shifts = torch.tensor(list(itertools.product((-1.0, 0.0, 1.0), repeat=d)), dtype=z.dtype, device=z.device)
    inverse = torch.linalg.inv(cholesky)  # L^{-1}: [b, d, d], d <= 3
    white = torch.einsum("bij,nbj->nbi", inverse, offset)  # L^{-1} (z - mean): [n, b, d]
    white_shifts = torch.einsum("bij,sj->sbi", inverse, shifts)  # L^{-1} k: [S, b, d]
    squared = (white.unsqueeze(0) + white_shifts.unsqueeze(1)).pow(2).sum(-1)  # [S, n, b]
    return torch.logsumexp(-0.5 * squared, dim=0) - half_log_det(cholesky) - 0.5 * d * LOG_2PI


def _fit(z: torch.Tensor, log_weights: torch.Tensor, floor: torch.Tensor, periodic: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean ``[b, d]`` and Cholesky factor ``[b, d, d]`` of 2 x the weighted covariance plus ``floor`` ``[b]``
    for samples ``z: [n, b, d]`` with log-weights ``[n, b]`` (circular means and nearest-image offsets on the torus)."""
    weights = torch.softmax(log_weights, dim=0).unsqueeze(-1)  # [n, b, 1]
    if periodic:
        mean = circular_mean(z, weights, dim=0)  # [n, b, d], [n, b, 1] -> [b, d]
        offset = nearest_image(z - mean)
    else:
        mean = (weights * z).sum(0)
        offset = z - mean
    covariance = 2 * torch.einsum("nb,nbi,nbj->bij", weights.squeeze(-1), offset, offset)
    identity = torch.eye(z.shape[-1], dtype=z.dtype, device=z.device)
    return mean, torch.linalg.cholesky(covariance + floor[:, None, None] * identity)


@torch.no_grad()
def _example_normals(x_flat: torch.Tensor, seed: int | None, salt: int, k: int, d: int) -> torch.Tensor:
    """Standard normals ``[k, b, d]``: from the global generator, or, with a ``seed``, from one generator per example
    seeded by the seed, the example's bytes and ``salt``, so an example's draws do not depend on its batch or process
    (DDP then reproduces the single-process estimate exactly)."""
    if seed is None:
        return torch.randn(k, len(x_flat), d, dtype=x_flat.dtype, device=x_flat.device)
    rows = x_flat.detach().cpu().numpy()
    def example_seed(row) -> int:  # a hash that is the same in every process (Python's hash() is salted)
        digest = hashlib.blake2b(row.tobytes(), digest_size=8, key=f"{seed}:{salt}".encode()).digest()
        return int.from_bytes(digest, "little") % 2**63

    draws = [torch.randn(k, d, dtype=x_flat.dtype, generator=torch.Generator().manual_seed(example_seed(row)))
             for row in rows]
    return torch.stack(draws, dim=1).to(x_flat.device)  # [k, b, d]


def defensive_log_likelihood(log_likelihood: LogLikelihood, pairwise: Pairwise, prior: InvertiblePrior,
                             x_flat: torch.Tensor, cube_points: torch.Tensor, num_samples: int = 100, stages: int = 5,
                             chunk_size: int | None = None, seed: int | None = None,
                             q: tuple[torch.Tensor, torch.Tensor] | None = None,
                             lattice_table: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``log p_hat(x)`` ``[b]`` (module docstring) and the effective sample size ``[b]`` for the examples ``x_flat``
    ``[b, D]`` under a prior reached from the unit cube, from ``log_likelihood: z [n, b, d] -> log p(x_b | z_nb) [n, b]``
    and ``pairwise: z [c, d] -> log p(x_i | z_j) [b, c]``; ``cube_points`` ``[m, d]`` is the shifted lattice in the unit
    cube; ``q`` the mean and log-variance ``[b, d]`` of a diagonal-Gaussian q(z | x), one more technique (not on the
    torus);
    ``num_samples`` is K per stage (and for q); ``chunk_size`` bounds the decoded points per call. An example whose
    lattice (and q) samples already have an effective sample size of at least K (a posterior broader than the
    lattice spacing) keeps that estimate, eq. 5 combined with q; the adaptive stages run for the others. ``seed``
    makes every example's draws a function of the example (:func:`_example_normals`). ``lattice_table``
    ``[b, m]``: ``pairwise`` on the lattice's latent points, where the caller already has it (e.g. from decoder outputs
    it keeps across batches); otherwise computed here."""
    periodic = prior.periodic
    b, m = len(x_flat), len(cube_points)
    z_lattice = prior.from_unit_cube(cube_points.to(x_flat))  # [m, d]
    d = z_lattice.shape[1]
    mixture = _Mixture(prior)
    mixture.add_source(m, prior.log_prob)
    if lattice_table is None:
        lattice_table = pairwise_table(pairwise, z_lattice, chunk_size)  # [b, m]
    mixture.add_block(z_lattice[:, None].expand(m, b, d), lattice_table.T)
    if q is not None and not periodic:
        mean_q, log_var_q = q
        mixture.add_source(num_samples, lambda z: diagonal_gaussian_log_prob(z, mean_q, log_var_q))
        z_q = mean_q + (0.5 * log_var_q).exp() * _example_normals(x_flat, seed, -1, num_samples, d)  # [K, b, d]
        mixture.add_block(z_q, log_likelihood(z_q))
    log_weights = mixture.log_weights()  # [n, b]
    first_log_p, first_ess = torch.logsumexp(log_weights, dim=0), effective_sample_size(log_weights)
    resolved = first_ess >= num_samples  # [b]: examples whose posterior the lattice (and q) already resolve
    if resolved.all():
        return first_log_p, first_ess

    # the adaptive stages: stage 1 fits the lattice posterior, floored at the local lattice spacing
    # s^2 = (m p(mu))^(-2/d); each later stage refits to all weighted samples with a floor 100 x smaller, so the
    # proposals can narrow below the spacing
    spacing = _lattice_floor(prior, m, d, z_lattice, mixture.likelihoods[0], periodic)  # [b]
    for stage in range(stages):
        mean, cholesky = _fit(torch.cat(mixture.blocks), log_weights, spacing * 0.01**stage, periodic)
        mixture.add_source(num_samples, lambda z, mean=mean, cholesky=cholesky: _gaussian_log_prob(z, mean, cholesky,
                                                                                                  periodic))
        eps = _example_normals(x_flat, seed, stage, num_samples, d)  # [K, b, d]
        z_r = mean + (cholesky @ eps.unsqueeze(-1)).squeeze(-1)  # [K, b, d]
        if periodic:
            z_r = torch.remainder(z_r, 1.0)
        mixture.add_block(z_r, log_likelihood(z_r))
        log_weights = mixture.log_weights()
    log_p, ess = torch.logsumexp(log_weights, dim=0), effective_sample_size(log_weights)
    return torch.where(resolved, first_log_p, log_p), torch.where(resolved, first_ess, ess)


class _Mixture:
    """Sample blocks ``[n_k, b, d]`` with their log-likelihoods ``[n_k, b]`` and the sampling techniques (count and
    log-density) that drew them; each technique's density is evaluated once per block (balance heuristic), and each
    block keeps its running log-denominator log sum_t n_t r_t(z), updated as techniques are added."""

    def __init__(self, prior):
        self.prior = prior
        self.counts, self.densities = [], []  # per technique: how many samples it drew, its log-density
        self.blocks, self.likelihoods, self.log_priors = [], [], []  # per block
        self.denominators: list[torch.Tensor] = []  # per block: log sum_t n_t r_t(z_s), [n_k, b]

    def add_source(self, count: int, log_density) -> None:
        self.counts.append(count)
        self.densities.append(log_density)
        self.denominators = [torch.logsumexp(torch.stack([denominator, math.log(count) + log_density(block)]), dim=0)
                             for denominator, block in zip(self.denominators, self.blocks)]  # (logaddexp: slow log1p)

    def add_block(self, z: torch.Tensor, log_likelihood: torch.Tensor) -> None:
        self.blocks.append(z)
        self.likelihoods.append(log_likelihood)
        self.log_priors.append(self.prior.log_prob(z))
        self.denominators.append(torch.logsumexp(torch.stack([math.log(count) + log_density(z) for count, log_density
                                                              in zip(self.counts, self.densities)]), dim=0))

    def log_weights(self) -> torch.Tensor:
        """log w_s = log p(x | z_s) + log p(z_s) - log sum_t n_t r_t(z_s) for every sample, ``[n, b]``."""
        return torch.cat(self.likelihoods) + torch.cat(self.log_priors) - torch.cat(self.denominators)


def _lattice_floor(prior, m: int, d: int, z_lattice: torch.Tensor, lattice_table: torch.Tensor,
                   periodic: bool) -> torch.Tensor:
    """s^2 = (m p(mu))^(-2/d) at the lattice posterior's mean: the squared spacing of the lattice near it, ``[b]``
    (lattice points ``[m, d]``, log-likelihoods ``[m, b]``)."""
    b = lattice_table.shape[1]
    if periodic:  # uniform: the same spacing everywhere
        return torch.full((b,), m ** (-2.0 / d), dtype=z_lattice.dtype, device=z_lattice.device)
    mean = torch.softmax(lattice_table, dim=0).T @ z_lattice  # [b, d]
    return torch.exp(-2.0 / d * (math.log(m) + prior.log_prob(mean)))
