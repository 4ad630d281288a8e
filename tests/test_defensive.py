"""The defensive held-out estimator against the closed-form marginal of a linear-Gaussian decoder with a sharp
posterior (observation variance 1e-3, D = 64), where the lattice alone fails."""

import pytest
import torch
from torch import nn

from lvm.estimators.defensive import defensive_log_likelihood
from lvm.likelihoods import GaussianLikelihood
from lvm.model import LatentVariableModel
from lvm.networks import MLPDecoder
from lvm.posteriors import DiagonalGaussianPosterior
from lvm.priors import StandardNormalPrior, TorusPrior
from lvm.objectives import ELBO, QMCObjective

pytestmark = pytest.mark.usefixtures("float64")

D, S2 = 64, 1e-3


class FixedEncoder(nn.Module):
    """q(z | x) = N(A (x - bias) + shift, diag(variance)): the exact PPCA posterior, or a poor one."""

    def __init__(self, weight, bias, shift=0.0, variance_scale=1.0):
        super().__init__()
        precision = weight.T @ weight / S2 + torch.eye(weight.shape[1])
        covariance = torch.linalg.inv(precision)
        self.register_buffer("projection", covariance @ weight.T / S2)
        self.register_buffer("log_var", torch.log(variance_scale * torch.diagonal(covariance)))
        self.register_buffer("bias", bias.clone())
        self.shift = shift

    def forward(self, x):
        mean = (x - self.bias) @ self.projection.T + self.shift
        return torch.cat([mean, self.log_var.expand_as(mean)], dim=1)


def _ppca(objective, encoder_args=None):
    generator = torch.Generator().manual_seed(0)
    weight, bias = 0.5 * torch.randn(D, 2, generator=generator), 0.1 * torch.randn(D, generator=generator)
    decoder = nn.Linear(2, D)
    with torch.no_grad():
        decoder.weight.copy_(weight)
        decoder.bias.copy_(bias)
    encoder = None if encoder_args is None else FixedEncoder(weight, bias, **encoder_args)
    model = LatentVariableModel(decoder, GaussianLikelihood(S2, "identity"), StandardNormalPrior(2), objective,
                                encoder, None if encoder is None else DiagonalGaussianPosterior())
    z = torch.randn(16, 2, generator=generator)
    x = z @ weight.T + bias + S2**0.5 * torch.randn(16, D, generator=generator)
    exact = torch.distributions.MultivariateNormal(bias, weight @ weight.T + S2 * torch.eye(D)).log_prob(x)
    return model, x, exact


def _defensive(model, x, cube, num_samples):
    """The estimator on the model's callables, with the encoder's q(z | x) where the model has one."""
    x_flat = model.flatten(x)
    q = model.posterior.mean_and_log_var(model.encode(x)) if model.encoder is not None else None
    return defensive_log_likelihood(lambda z: model.log_prob(x, z), lambda z: model.pairwise_log_likelihood(x_flat, z),
                                    model.prior, x_flat, cube, num_samples, q=q)


@pytest.mark.parametrize("objective, encoder_args", [
    (QMCObjective(89), None),  # decoder-only: the lattice and the adapted proposals
    (ELBO(), {}),  # the exact posterior as the encoder
    (ELBO(), {"shift": 0.3, "variance_scale": 25.0}),  # a poor encoder: off by ~40 posterior sds, 5x too wide
])
def test_defensive_estimate_matches_the_exact_marginal_with_a_sharp_posterior(objective, encoder_args):
    torch.manual_seed(0)
    model, x, exact = _ppca(objective, encoder_args)
    cube = model.shifted_lattice(2584, shift_seed=0)
    estimate, ess = _defensive(model, x, cube, num_samples=100)
    assert (estimate - exact).abs().mean() < 0.1  # nats per example
    assert (estimate - exact).abs().max() < 0.3
    assert ess.min() > 10
    # why the mixture is needed: the lattice alone (eq. 5) misses the posterior mass by tens of nats
    assert (model.log_likelihood(x, 2584, shift_seed=0) - exact).mean() < -5


def test_held_out_evaluation_uses_it_and_is_never_below_the_iwae_bound(float64):
    torch.manual_seed(0)
    model, x, exact = _ppca(ELBO(), {"shift": 0.3, "variance_scale": 25.0})
    model.eval_num_points = 2584
    estimate = model.evaluation.log_likelihood(model, x)["log_likelihood"]
    from lvm.estimators.variational import proposal_log_likelihood

    iwae = proposal_log_likelihood(lambda z: model.log_prob(x, z), model.posterior.proposal(model.encode(x)),
                                   model.prior.log_prob, 100)
    assert (estimate - exact).abs().mean() < 0.1
    assert (estimate >= iwae - 0.05).all()


def test_broad_posteriors_keep_the_lattice_estimate():
    torch.manual_seed(0)
    model = LatentVariableModel(MLPDecoder([12], [8]), GaussianLikelihood(1.0), TorusPrior(2), QMCObjective(89))
    x = torch.rand(5, 12)
    cube = model.shifted_lattice(610, shift_seed=3)
    estimate, ess = _defensive(model, x, cube, num_samples=20)
    assert (ess >= 20).all()  # the lattice resolves these posteriors: no adaptive stage runs
    torch.testing.assert_close(estimate, model.log_likelihood(x, 610, shift_seed=3))
