"""Probabilistic PCA: p(z) = N(0, I_2), p(x | z) = N(Wz + b, s2 I) has the closed-form marginal
p(x) = N(b, W W^T + s2 I) and Gaussian posterior N(M^{-1} W^T (x - b), s2 M^{-1}), M = W^T W + s2 I."""

import pytest
import torch
from torch import nn

from lvm.likelihoods import GaussianLikelihood
from lvm.model import LatentVariableModel
from lvm.posteriors import DiagonalGaussianPosterior
from lvm.priors import StandardNormalPrior, TorusPrior
from lvm.objectives import ELBO, IWAE, QMCObjective

pytestmark = pytest.mark.usefixtures("float64")

D, S2 = 6, 0.5


class ExactPosteriorEncoder(nn.Module):
    """Returns (mean, log-variance) of the exact PPCA posterior; diagonal when W has orthogonal columns."""

    def __init__(self, weight, bias):
        super().__init__()
        m = weight.T @ weight + S2 * torch.eye(weight.shape[1], dtype=weight.dtype)
        self.register_buffer("projection", torch.linalg.solve(m, weight.T))
        self.register_buffer("log_var", torch.log(S2 * torch.diagonal(torch.linalg.inv(m))))
        self.register_buffer("bias", bias.clone())

    def forward(self, x):
        mean = (x.flatten(1) - self.bias) @ self.projection.T
        return torch.cat([mean, self.log_var.expand_as(mean)], dim=1)


def _ppca(weight, objective, encoder=None):
    decoder = nn.Linear(2, D)
    with torch.no_grad():
        decoder.weight.copy_(weight)
        decoder.bias.copy_(torch.linspace(-1, 1, D, dtype=torch.float64))
    posterior = None if encoder is None else DiagonalGaussianPosterior()
    model = LatentVariableModel(decoder, GaussianLikelihood(S2, "identity"), StandardNormalPrior(2), objective, encoder,
                                posterior)
    return model, decoder.bias.detach().clone()


def _exact_log_marginal(x, weight, bias):
    cov = weight @ weight.T + S2 * torch.eye(D, dtype=torch.float64)
    return torch.distributions.MultivariateNormal(bias, cov).log_prob(x)


@pytest.fixture
def orthogonal_weight():
    q, _ = torch.linalg.qr(torch.randn(D, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    return q * torch.tensor([1.5, 0.8], dtype=torch.float64)


def test_qmc_log_likelihood_converges_to_exact_marginal(orthogonal_weight):
    torch.manual_seed(0)
    model, bias = _ppca(orthogonal_weight, QMCObjective(144))
    z = torch.randn(20, 2, dtype=torch.float64)
    x = z @ orthogonal_weight.T + bias + S2**0.5 * torch.randn(20, D, dtype=torch.float64)
    exact = _exact_log_marginal(x, orthogonal_weight, bias)
    errors = {m: (model.log_likelihood(x, num_points=m) - exact).abs().mean().item() for m in (89, 987, 10946)}
    assert errors[10946] < 3e-3  # in nats per example, for x drawn from the model itself
    assert errors[10946] < errors[987] < errors[89]
    assert errors[10946] < errors[89] / 20


def test_posterior_mean_embedding_matches_exact_posterior_mean(orthogonal_weight):
    torch.manual_seed(0)
    model, bias = _ppca(orthogonal_weight, QMCObjective(144))
    x = torch.randn(10, D, dtype=torch.float64) + bias
    encoder = ExactPosteriorEncoder(orthogonal_weight, bias)
    exact_mean = encoder(x)[:, :2]
    assert torch.allclose(model.embed(x, "mean", num_points=10946), exact_mean, atol=2e-3)


def test_elbo_below_iwae_below_exact_in_expectation(orthogonal_weight):
    """With a mismatched (too narrow, shifted) encoder the bounds are strict and ordered."""
    torch.manual_seed(0)
    bias = torch.linspace(-1, 1, D, dtype=torch.float64)
    encoder = ExactPosteriorEncoder(orthogonal_weight, bias)
    with torch.no_grad():
        encoder.log_var -= 1.5
        encoder.bias += 0.3
    x = torch.randn(8, D, dtype=torch.float64) + bias
    repeats = 4000
    x_rep = x.repeat(repeats, 1)
    elbo_model, _ = _ppca(orthogonal_weight, ELBO(num_samples=1), encoder)
    iwae_model, _ = _ppca(orthogonal_weight, IWAE(num_samples=10), encoder)
    elbo = elbo_model.objective(elbo_model, x_rep)["elbo"].item()
    iwae = iwae_model.objective(iwae_model, x_rep)["iwae"].item()
    exact = _exact_log_marginal(x, orthogonal_weight, bias).mean().item()
    assert elbo < iwae - 0.05
    assert iwae < exact - 0.01


def test_exact_posterior_makes_iwae_exact_and_elbo_tight(orthogonal_weight):
    torch.manual_seed(0)
    bias = torch.linspace(-1, 1, D, dtype=torch.float64)
    encoder = ExactPosteriorEncoder(orthogonal_weight, bias)
    x = torch.randn(16, D, dtype=torch.float64) + bias
    exact = _exact_log_marginal(x, orthogonal_weight, bias)
    iwae_model, _ = _ppca(orthogonal_weight, IWAE(num_samples=3), encoder)
    assert iwae_model.objective(iwae_model, x)["iwae"].item() == pytest.approx(exact.mean().item(), abs=1e-9)
    elbo_model, _ = _ppca(orthogonal_weight, ELBO(num_samples=2000), encoder)
    assert elbo_model.objective(elbo_model, x)["elbo"].item() == pytest.approx(exact.mean().item(), abs=0.02)


def test_encoder_objectives_reject_missing_encoder_or_non_gaussian_prior(orthogonal_weight):
    with pytest.raises(ValueError, match=r"ELBO needs model\.posterior: .*DiagonalGaussianPosterior \(with model\.encoder\)"):
        _ppca(orthogonal_weight, ELBO())
    encoder = ExactPosteriorEncoder(orthogonal_weight, torch.zeros(D, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"IWAE needs model\.prior: .*StandardNormalPrior; got TorusPrior"):
        LatentVariableModel(nn.Linear(4, D), GaussianLikelihood(), TorusPrior(2), IWAE(), encoder,
                            DiagonalGaussianPosterior())
    with pytest.raises(ValueError, match="encoder and a posterior come together"):  # an encoder needs its posterior
        LatentVariableModel(nn.Linear(2, D), GaussianLikelihood(), StandardNormalPrior(2), IWAE(), encoder)
