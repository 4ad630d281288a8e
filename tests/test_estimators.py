"""The estimators are functions of tensors and callables: on a 1-D linear-Gaussian model written as plain functions
(no decoder module, no LightningModule), p(x | z) = N(x; z, s^2), p(z) = N(0, 1), each recovers the exact
marginal p(x) = N(x; 0, 1 + s^2)."""

import math

import torch

from lvm.estimators.defensive import defensive_log_likelihood
from lvm.estimators.qmc import qmc_log_likelihood, qmc_posterior
from lvm.estimators.variational import proposal_log_likelihood
from lvm.numerics.lattices import lattice_rule, random_shift
from lvm.priors import StandardNormalPrior

S = 0.05  # a posterior much narrower than the prior: eq. 5 alone needs a dense lattice
X = torch.tensor([[-1.2], [0.1], [0.7], [2.0]], dtype=torch.float64)  # [b, 1]
EXACT = torch.distributions.Normal(torch.zeros((), dtype=torch.float64), math.sqrt(1 + S**2)).log_prob(X[:, 0])
POSTERIOR_VAR = S**2 / (1 + S**2)
POSTERIOR_MEAN = X[:, 0] / (1 + S**2)


def pairwise(z: torch.Tensor) -> torch.Tensor:
    """log p(x_i | z_j) for z [m, 1] -> [b, m]."""
    return torch.distributions.Normal(z[:, 0][None, :], S).log_prob(X)


def log_likelihood(z: torch.Tensor) -> torch.Tensor:
    """log p(x_b | z_kb) for z [k, b, 1] -> [k, b]."""
    return torch.distributions.Normal(z[..., 0], S).log_prob(X[:, 0])


def test_qmc_on_a_dense_lattice_recovers_the_exact_marginal_and_posterior():
    prior = StandardNormalPrior(1)
    z = prior.from_unit_cube(random_shift(lattice_rule(20_000, 1), torch.Generator().manual_seed(0)).double())
    torch.testing.assert_close(qmc_log_likelihood(pairwise, z), EXACT, atol=2e-3, rtol=0)
    weights = qmc_posterior(pairwise, z, chunk_size=999)  # [b, m]
    torch.testing.assert_close(weights @ z[:, 0], POSTERIOR_MEAN, atol=1e-3, rtol=0)


def test_importance_sampling_with_the_exact_posterior_has_zero_variance():
    def proposal(k: int):
        q = torch.distributions.Normal(POSTERIOR_MEAN, math.sqrt(POSTERIOR_VAR))
        z = q.sample((k,))  # [k, b]
        return z[..., None], q.log_prob(z)

    prior = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0)
    estimate = proposal_log_likelihood(log_likelihood, proposal, lambda z: prior.log_prob(z[..., 0]), 7, chunk_size=3)
    torch.testing.assert_close(estimate, EXACT, atol=1e-9, rtol=0)


def test_defensive_sampling_on_a_coarse_lattice_converges():
    prior = StandardNormalPrior(1)
    cube = random_shift(lattice_rule(55, 1), torch.Generator().manual_seed(1)).double()  # spacing ~ the posterior width
    estimate, ess = defensive_log_likelihood(log_likelihood, pairwise, prior, X, cube, num_samples=500, seed=0)
    assert (ess > 100).all()
    # the estimate of p(x) has a relative standard deviation of about 1 / sqrt(ESS): within three of them in log space
    assert ((estimate - EXACT).abs() < 3 / ess.sqrt()).all(), (estimate - EXACT, 3 / ess.sqrt())
    lattice_alone = qmc_log_likelihood(pairwise, prior.from_unit_cube(cube))
    assert (lattice_alone - EXACT).abs().max() > 10 * (estimate - EXACT).abs().max()  # what the mixture adds
