"""TaylorELBO against slow, obviously-correct references (dense n x n covariances, autograd Jacobians)."""

import math

import pytest
import torch
from torch import nn

from lvm.divergences import kl_divergence
from lvm.numerics.jacobians import forward_jacobian
from lvm.likelihoods import BernoulliLikelihood, GaussianLikelihood
from lvm.numerics.gaussian import lowrank_gaussian_log_prob
from lvm.estimators.metrics import PosteriorCollapse
from lvm.model import LatentVariableModel
from lvm.networks import MLPDecoder, MLPEncoder
from lvm.posteriors import DiagonalGaussianPosterior
from lvm.priors import StandardNormalPrior
from lvm.objectives import TaylorELBO

pytestmark = pytest.mark.usefixtures("float64")

C = 0.5


def _dense_log_prob(residual, factor, c, gamma):
    """Sigma = c I + U U^T built explicitly; gamma Sigma^{-1} + (1 - gamma) / c I in the quadratic."""
    n = residual.shape[-1]
    out = []
    for r, u in zip(residual, factor):
        sigma = c * torch.eye(n) + u @ u.T
        precision = gamma * torch.linalg.solve(sigma, torch.eye(n)) + (1 - gamma) / c * torch.eye(n)
        _, log_det = torch.linalg.slogdet(sigma)
        out.append(-0.5 * (n * math.log(2 * math.pi) + log_det + r @ precision @ r))
    return torch.stack(out)


@pytest.mark.parametrize("gamma", [1.0, 0.5, 0.0])
def test_woodbury_log_prob_equals_dense_computation(gamma):
    torch.manual_seed(0)
    residual, factor = torch.randn(4, 30), 0.7 * torch.randn(4, 30, 3)
    assert torch.allclose(lowrank_gaussian_log_prob(residual, factor, C, gamma),
                          _dense_log_prob(residual, factor, C, gamma), atol=1e-9)


def _model(decoder, latent_dim=3, gamma=1.0, likelihood=None):
    torch.manual_seed(0)
    return LatentVariableModel(decoder, likelihood or GaussianLikelihood(C, "identity"), StandardNormalPrior(latent_dim),
                               TaylorELBO(gamma), MLPEncoder(2 * latent_dim, [16]), DiagonalGaussianPosterior())


@pytest.mark.parametrize("gamma", [1.0, 0.5])
def test_taylor_elbo_on_a_small_relu_decoder_equals_dense_reference(gamma):
    model = _model(MLPDecoder([12], [10]), gamma=gamma)
    x = torch.rand(5, 12)
    out = model.objective(model, x)
    mean, log_var = model.encoder(x).chunk(2, dim=1)
    residual, factor = [], []
    for mu_i, log_var_i, x_i in zip(mean, log_var, x):
        f = lambda z: model.decoder_params(z[None])[0]  # noqa: E731
        jacobian = torch.autograd.functional.jacobian(f, mu_i)  # [n, m], reverse mode
        residual.append(f(mu_i) - x_i)
        factor.append(jacobian * torch.exp(0.5 * log_var_i))
    expected = _dense_log_prob(torch.stack(residual), torch.stack(factor), C, gamma) - kl_divergence(model.posterior, model.prior, model.encoder(x)).sum(-1)
    assert out["taylor_elbo"].item() == pytest.approx(expected.mean().item(), abs=1e-9)


def test_linear_decoder_gives_the_exact_expected_gaussian_and_matches_monte_carlo():
    """For f(z) = W z + b the linearisation is exact: the gamma = 1 term is log N(x; f(mu), c I + W h W^T),
    the log of E_q[p(x | z)] (a Gaussian convolution), which a many-sample average confirms."""
    decoder = nn.Linear(3, 8)
    model = _model(decoder)
    x = torch.randn(4, 8)
    mean, log_var = model.encoder(x).chunk(2, dim=1)
    reconstruction = model.objective(model, x)["reconstruction"]
    w = decoder.weight.detach()
    exact = torch.stack([
        torch.distributions.MultivariateNormal(decoder(m), C * torch.eye(8) + w @ torch.diag(lv.exp()) @ w.T).log_prob(xi)
        for m, lv, xi in zip(mean, log_var, x)
    ])
    assert reconstruction.item() == pytest.approx(exact.mean().item(), abs=1e-9)
    z = mean + torch.exp(0.5 * log_var) * torch.randn(200_000, *mean.shape)  # [S, b, m]
    log_p = torch.distributions.Normal(decoder(z), C**0.5).log_prob(x).sum(-1)  # [S, b]
    monte_carlo = torch.logsumexp(log_p, dim=0) - math.log(len(z))  # log E_q p(x | z)
    assert torch.allclose(monte_carlo, exact, atol=0.02)


@pytest.mark.parametrize("activation", ["relu", "tanh", "elu"])
def test_forward_jacobian_equals_autograd_jacobian_and_is_differentiable(activation):
    torch.manual_seed(0)
    net = MLPDecoder([11], [9, 7], activation=activation)
    net(torch.zeros(1, 4))
    z = torch.randn(3, 4)
    value, jacobian = forward_jacobian(net, z)
    assert torch.allclose(value, net(z))
    for i in range(3):
        reference = torch.autograd.functional.jacobian(lambda zi: net(zi[None])[0], z[i])
        assert torch.allclose(jacobian[i], reference, atol=1e-12)
    # gradients through the forward-mode Jacobian match those through the reverse-mode one
    params = list(net.parameters())
    forward_grads = torch.autograd.grad(jacobian.pow(2).sum(), params, materialize_grads=True)
    reverse = sum(torch.autograd.functional.jacobian(lambda zi: net(zi[None])[0], zi, create_graph=True).pow(2).sum()
                  for zi in z)
    reverse_grads = torch.autograd.grad(reverse, params, materialize_grads=True)
    assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(forward_grads, reverse_grads))


def test_taylor_trains_a_tanh_decoder_and_rejects_non_gaussian_likelihoods():
    model = _model(MLPDecoder([12], [10], activation="tanh"), gamma=0.5)
    x = torch.rand(16, 12)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = model.objective(model, x)["loss"]
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 1.0
    with pytest.raises(ValueError, match="GaussianLikelihood"):
        _model(MLPDecoder([12], [10]), likelihood=BernoulliLikelihood())
    with pytest.raises(ValueError, match="gamma"):
        TaylorELBO(1.5)


def test_collapse_metric_counts_prior_matching_dimensions_only():
    metric = PosteriorCollapse(latent_dim=3)
    torch.manual_seed(0)
    mean = torch.stack([torch.zeros(500), 2 * torch.randn(500), torch.full((500,), 0.01)], dim=1)
    log_var = torch.stack([torch.zeros(500), torch.full((500,), -4.0), torch.zeros(500)], dim=1)
    kl = kl_divergence(DiagonalGaussianPosterior(), StandardNormalPrior(3), torch.cat([mean, log_var], dim=1))  # [b, d]
    metric.update(kl[:250])
    metric.update(kl[250:])
    # dims 0 and 2 equal (or nearly equal) the prior -> collapsed; dim 1 is informative
    assert metric.compute().item() == pytest.approx(2 / 3)
    metric.reset()
    informative = mean.clone()
    informative[:10, 0] = 3.0  # 2 % of the examples now have KL > eps in dim 0: more than delta = 1 %
    metric.update(kl_divergence(DiagonalGaussianPosterior(), StandardNormalPrior(3), torch.cat([informative, log_var], dim=1)))
    assert metric.compute().item() == pytest.approx(1 / 3)
