"""MLAE (maximum-likelihood autoencoder): the single-pass log-determinant surrogate against exact
gradients, the Hutchinson noise, and the Laplace held-out estimate."""

import math

import pytest
import torch
from torch import nn

from lvm.datamodules.sinusoid import noisy_sinusoid
from lvm.numerics.hutchinson import hutchinson_noise, log_det_surrogate
from lvm.likelihoods import BernoulliLikelihood, GaussianLikelihood
from lvm.estimators.metrics import GaussianFrechetDistance
from lvm.model import LatentVariableModel
from lvm.networks import MLPDecoder, MLPEncoder, ResidualMLPDecoder, ResidualMLPEncoder
from lvm.posteriors import DiagonalGaussianPosterior, PointMassPosterior
from lvm.priors import StandardNormalPrior, TorusPrior
from lvm.samplers import GaussianMixtureSampler
from lvm.estimators.variational import proposal_log_likelihood
from lvm.posteriors import laplace_precision
from lvm.objectives import MLAEObjective

pytestmark = pytest.mark.usefixtures("float64")

D, LATENT = 5, 3


def _linear_pair(seed=0):
    """g(z) = W z + b and its pseudo-inverse f(x) = W^+ (x - b): f(g(z)) = z exactly (eq. 10)."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(D, LATENT, generator=generator)
    bias = torch.randn(D, generator=generator)
    pinv = torch.linalg.pinv(weight)
    decoder, encoder = nn.Linear(LATENT, D), nn.Linear(D, LATENT)
    with torch.no_grad():
        decoder.weight.copy_(weight), decoder.bias.copy_(bias)
        encoder.weight.copy_(pinv), encoder.bias.copy_(-pinv @ bias)
    model = LatentVariableModel(decoder, GaussianLikelihood(0.1, "identity"), StandardNormalPrior(LATENT), MLAEObjective(),
                                encoder, PointMassPosterior())
    return model, weight, pinv


def _surrogate_grads(model, x, num_hutchinson, gradient_to, orthogonal=True):
    noise = hutchinson_noise(num_hutchinson, len(x), LATENT, orthogonal)
    _, _, surrogate = log_det_surrogate(model.encoder, model.decoded_mean, x, noise, gradient_to)
    encoder_grad, decoder_grad = torch.autograd.grad(surrogate.mean(), [model.encoder.weight, model.decoder.weight],
                                                     materialize_grads=True)
    return encoder_grad, decoder_grad


def test_encoder_surrogate_gradient_equals_log_det_gradient_for_a_linear_pair():
    """d/dA of -1/2 log det(A A^T) at A = W^+ is -W^T (eq. 34): exact with K = d orthogonal vectors,
    within Monte Carlo error on average with K = 1."""
    torch.manual_seed(0)
    model, weight, pinv = _linear_pair()
    encoder_weight = pinv.clone().requires_grad_()
    exact = torch.autograd.grad(-0.5 * torch.logdet(encoder_weight @ encoder_weight.T), encoder_weight)[0]
    assert torch.allclose(exact, -weight.T)
    x = torch.randn(8, D)
    encoder_grad, decoder_grad = _surrogate_grads(model, x, LATENT, "encoder")
    assert torch.allclose(encoder_grad, exact, atol=1e-10)
    assert torch.equal(decoder_grad, torch.zeros_like(decoder_grad))  # the decoder side is stopped
    encoder_grad, _ = _surrogate_grads(model, torch.randn(40_000, D), 1, "encoder")
    assert (encoder_grad - exact).norm() / exact.norm() < 0.03
    single = _surrogate_grads(model, x[:1], 1, "encoder")[0]
    assert (single - exact).norm() / exact.norm() > 0.05  # one vector alone is noisy: the average matters


def test_decoder_surrogate_gradient_equals_log_det_gradient_for_a_linear_pair():
    """d/dW of 1/2 log det(W^T W) is W (W^T W)^{-1} = (W^+)^T (eq. 5 / 11)."""
    torch.manual_seed(0)
    model, weight, pinv = _linear_pair(seed=1)
    decoder_weight = weight.clone().requires_grad_()
    exact = torch.autograd.grad(0.5 * torch.logdet(decoder_weight.T @ decoder_weight), decoder_weight)[0]
    assert torch.allclose(exact, pinv.T)
    _, decoder_grad = _surrogate_grads(model, torch.randn(8, D), LATENT, "decoder")
    assert torch.allclose(decoder_grad, exact, atol=1e-10)
    _, decoder_grad = _surrogate_grads(model, torch.randn(40_000, D), 1, "decoder")
    assert (decoder_grad - exact).norm() / exact.norm() < 0.03


def test_surrogate_with_k_equal_d_matches_dense_jacobian_trace_on_a_nonlinear_autoencoder():
    """The fast path (one VJP, one JVP per vector) against the slow one: full Jacobians by autograd and
    -tr(f'(x) sg(g'(f(x)))) per example; parameter gradients must agree exactly."""
    torch.manual_seed(0)
    encoder, decoder = MLPEncoder(LATENT, [7], "tanh"), MLPDecoder([D], [6], "elu")
    model = LatentVariableModel(decoder, GaussianLikelihood(0.1, "identity"), StandardNormalPrior(LATENT), MLAEObjective(),
                                encoder, PointMassPosterior())
    x = torch.randn(4, D)
    encoder(x)
    params = list(encoder.parameters())
    _, _, surrogate = log_det_surrogate(encoder, model.decoded_mean, x, hutchinson_noise(LATENT, 4, LATENT), "encoder")
    fast = torch.autograd.grad(surrogate.sum(), params, materialize_grads=True)
    dense = 0
    for xi in x:
        f_jac = torch.autograd.functional.jacobian(lambda v: encoder(v[None])[0], xi, create_graph=True)  # [d, D]
        zi = encoder(xi[None])[0].detach()
        g_jac = torch.autograd.functional.jacobian(lambda v: model.decoded_mean(v[None])[0], zi)  # [D, d]
        dense = dense - torch.trace(f_jac @ g_jac)
    slow = torch.autograd.grad(dense, params, materialize_grads=True)
    assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(fast, slow))


def test_hutchinson_noise_is_isotropic_scaled_and_orthogonal():
    noise = hutchinson_noise(3, 2000, 4)
    assert noise.shape == (3, 2000, 4)
    assert torch.allclose(noise.norm(dim=-1), torch.full((3, 2000), 2.0))  # length sqrt(d)
    gram = torch.einsum("kbi,lbi->bkl", noise, noise)  # [b, K, K]
    assert torch.allclose(gram, 4 * torch.eye(3).expand_as(gram), atol=1e-10)
    second_moment = torch.einsum("kbi,kbj->ij", noise, noise) / (3 * 2000)
    assert torch.allclose(second_moment, torch.eye(4), atol=0.06)  # E[eps eps^T] = I
    with pytest.raises(ValueError, match="between 1 and the latent dimension 4"):
        hutchinson_noise(5, 1, 4)


def test_orthogonal_noise_has_lower_variance_than_independent_noise():
    """Appendix D.3.5: Var = 2 d^2 (d - K) / (K (d - 1)(d + 2)) s^2 (orthogonal, eq. 114) versus
    2 d^2 / (K (d + 2)) s^2 (independent, eq. 115), s^2 the variance of the eigenvalues of A."""
    torch.manual_seed(0)
    d, k, draws = 6, 3, 200_000
    eigenvalues = torch.tensor([3.0, 1.0, 0.5, -1.0, 2.0, 0.0])
    q, _ = torch.linalg.qr(torch.randn(d, d))
    a = q @ torch.diag(eigenvalues) @ q.T
    spread = eigenvalues.var(unbiased=False).item()
    variances = {}
    for orthogonal in (True, False):
        eps = hutchinson_noise(k, draws, d, orthogonal)  # [K, draws, d]
        estimates = torch.einsum("kbi,ij,kbj->b", eps, a, eps) / k
        assert estimates.mean().item() == pytest.approx(torch.trace(a).item(), abs=0.02)
        variances[orthogonal] = estimates.var().item()
    assert variances[True] == pytest.approx(2 * d**2 * (d - k) / (k * (d - 1) * (d + 2)) * spread, rel=0.03)
    assert variances[False] == pytest.approx(2 * d**2 / (k * (d + 2)) * spread, rel=0.03)
    assert variances[True] < 0.7 * variances[False]
    eps = hutchinson_noise(d, 10, d)  # K = d: every estimate is the exact trace
    assert torch.allclose(torch.einsum("kbi,ij,kbj->b", eps, a, eps) / d, torch.trace(a).expand(10), atol=1e-10)


def test_mlae_loss_terms_and_training_reduce_reconstruction():
    torch.manual_seed(0)
    encoder, decoder = MLPEncoder(2, [16], "tanh"), MLPDecoder([D], [16])
    objective = MLAEObjective(beta=5.0, num_hutchinson=2)  # beta = 1 / (2 c) for the likelihood variance c = 0.1
    model = LatentVariableModel(decoder, GaussianLikelihood(0.1, "identity"), StandardNormalPrior(2), objective, encoder,
                                PointMassPosterior())
    x = torch.randn(64, D) @ torch.randn(D, D) * 0.3
    encoder(x)
    out = model.objective(model, x)
    z = encoder(x)
    assert out["latent_nll"].item() == pytest.approx((0.5 * z.pow(2).sum(-1) + math.log(2 * math.pi)).mean().item())
    assert out["reconstruction"].item() == pytest.approx((model.decoded_mean(z) - x).pow(2).sum(-1).mean().item())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = out["reconstruction"].item()
    for _ in range(150):
        optimizer.zero_grad()
        model.objective(model, x)["loss"].backward()
        optimizer.step()
    assert model.objective(model, x)["reconstruction"].item() < 0.5 * first


def _mlae_model(objective, variance=0.1, prior=None, posterior=None, likelihood=None, outputs=2):
    """A small MLAE with a 2-D latent whose Gaussian likelihood has ``variance`` (beta = 1 / (2 variance))."""
    return LatentVariableModel(MLPDecoder([D], [4]), likelihood or GaussianLikelihood(variance, "identity"),
                               prior or StandardNormalPrior(2), objective, MLPEncoder(outputs, [4]),
                               posterior or PointMassPosterior())


def test_beta_ramp_and_configuration_errors():
    ramp = _mlae_model(MLAEObjective(beta=10.0, beta_start=1.0, beta_ramp_epochs=9), variance=1 / (2 * 10.0))
    assert [ramp.objective.beta_at(ramp, e) for e in (0, 3, 9, 20)] == [1.0, 4.0, 10.0, 10.0]
    fixed = _mlae_model(MLAEObjective(beta=7.0), variance=1 / (2 * 7.0))
    assert fixed.objective.beta_at(fixed, 5) == 7.0
    derived = _mlae_model(MLAEObjective(), variance=1 / (2 * 7.0))  # beta read from the likelihood's variance
    assert derived.objective.beta_at(derived, 5) == 7.0
    with pytest.raises(ValueError, match="gradient_to"):
        MLAEObjective(gradient_to="both")
    with pytest.raises(ValueError, match="beta_ramp_epochs"):
        MLAEObjective(beta_start=1.0)
    with pytest.raises(ValueError, match="between 1 and the latent dimension 2"):
        _mlae_model(MLAEObjective(num_hutchinson=3))
    # beta and the likelihood variance are one quantity: a given beta must match c = 1 / (2 beta)
    with pytest.raises(ValueError, match="c = 1 / \\(2 beta\\)"):
        _mlae_model(MLAEObjective(beta=10.0), variance=0.1)
    # the wrong components: errors name the missing one
    with pytest.raises(ValueError, match="model.posterior: lvm.posteriors.PointMassPosterior"):
        _mlae_model(MLAEObjective(), posterior=DiagonalGaussianPosterior(), outputs=4)
    with pytest.raises(ValueError, match="model.prior: lvm.priors.StandardNormalPrior"):
        _mlae_model(MLAEObjective(), prior=TorusPrior(2))
    with pytest.raises(ValueError, match="model.likelihood: lvm.likelihoods.GaussianLikelihood"):
        _mlae_model(MLAEObjective(), likelihood=BernoulliLikelihood())
    with pytest.raises(ValueError, match="encoder and a posterior come together"):
        LatentVariableModel(MLPDecoder([D], [4]), GaussianLikelihood(), StandardNormalPrior(2), MLAEObjective(),
                            MLPEncoder(2, [4]))


def test_laplace_estimate_is_exact_for_linear_gaussian_with_the_posterior_mean_code():
    """PPCA: p(z | x) = N(M^{-1} W^T (x - b), c M^{-1}), M = W^T W + c I; with the code at the posterior
    mean the Laplace proposal is the exact posterior, so every importance weight equals p(x)."""
    torch.manual_seed(0)
    c, weight, bias = 0.3, torch.randn(D, LATENT), torch.randn(D)
    m = weight.T @ weight + c * torch.eye(LATENT)
    decoder, encoder = nn.Linear(LATENT, D), nn.Linear(D, LATENT)
    with torch.no_grad():
        decoder.weight.copy_(weight), decoder.bias.copy_(bias)
        encoder.weight.copy_(torch.linalg.solve(m, weight.T)), encoder.bias.copy_(-torch.linalg.solve(m, weight.T) @ bias)
    model = LatentVariableModel(decoder, GaussianLikelihood(c, "identity"), StandardNormalPrior(LATENT), MLAEObjective(),
                                encoder, PointMassPosterior())
    x = torch.randn(6, D) * 2
    exact = torch.distributions.MultivariateNormal(bias, weight @ weight.T + c * torch.eye(D)).log_prob(x)
    def laplace_estimate(num_samples, chunk_size=None):
        code = model.latent_code(x)
        precision = laplace_precision(model.decoded_mean, model.likelihood.mean_fisher_information,
                                      model.prior.log_prob, code)
        return proposal_log_likelihood(lambda z: model.log_prob(x, z), model.posterior.laplace_proposal(code, precision),
                                       model.prior.log_prob, num_samples, chunk_size)

    with torch.no_grad():  # a held-out estimate (proposal_log_likelihood also serves as a training bound)
        assert torch.allclose(laplace_estimate(3), exact, atol=1e-10)
        encoder.bias.add_(0.3)  # a code away from the posterior mean: a stochastic lower bound, tight with K
        loose, tight = laplace_estimate(1).mean(), laplace_estimate(5000, 500).mean()
    assert loose < tight - 0.05 and tight == pytest.approx(exact.mean().item(), abs=0.03)


def _with_moments(n, mean, covariance, generator):
    """``n`` samples whose empirical mean and unbiased covariance are exactly ``mean`` and ``covariance``."""
    raw = torch.randn(n, len(mean), generator=generator)
    raw = raw - raw.mean(0)
    whitened = raw @ torch.linalg.inv(torch.linalg.cholesky(raw.T @ raw / (n - 1))).T
    return mean + whitened @ torch.linalg.cholesky(covariance).T


def test_gaussian_frechet_distance_is_zero_for_identical_samples_and_matches_the_closed_form():
    generator = torch.Generator().manual_seed(0)
    metric = GaussianFrechetDistance(3)
    samples = torch.randn(500, 3, generator=generator) @ torch.randn(3, 3, generator=generator)
    metric.update(samples[:200], real=True), metric.update(samples[200:], real=True)
    metric.update(samples.flip(0), real=False)
    assert metric.compute().item() == pytest.approx(0.0, abs=1e-9)
    metric.reset()
    # N(mu_1, diag a) vs N(mu_2, diag b): |mu_1 - mu_2|^2 + sum (sqrt a - sqrt b)^2
    mu_1, mu_2 = torch.tensor([0.0, 1.0, -1.0]), torch.tensor([0.5, 1.0, 1.0])
    a, b = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.25])
    metric.update(_with_moments(300, mu_1, torch.diag(a), generator), real=True)
    metric.update(_with_moments(700, mu_2, torch.diag(b), generator), real=False)
    expected = (mu_1 - mu_2).pow(2).sum() + (a.sqrt() - b.sqrt()).pow(2).sum()  # 4.25 + 4 + 1 = 9.25
    assert metric.compute().item() == pytest.approx(expected.item(), abs=1e-8)
    # a rotated (non-commuting) covariance: the general formula against scipy's matrix square root
    from scipy.linalg import sqrtm
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=generator))
    cov_r, cov_g = q @ torch.diag(a) @ q.T, torch.diag(b)
    metric.reset()
    metric.update(_with_moments(400, mu_1, cov_r, generator), real=True)
    metric.update(_with_moments(400, mu_2, cov_g, generator), real=False)
    half = torch.from_numpy(sqrtm(cov_r.numpy()).real)
    root = torch.from_numpy(sqrtm((half @ cov_g @ half).numpy()).real)
    expected = (mu_1 - mu_2).pow(2).sum() + torch.trace(cov_r + cov_g - 2 * root)
    assert metric.compute().item() == pytest.approx(expected.item(), abs=1e-8)


def test_gaussian_mixture_sampler_recovers_separated_clusters_and_drives_model_sampling():
    torch.manual_seed(0)
    centres = torch.tensor([[-4.0, 0.0], [4.0, 0.0], [0.0, 5.0]])
    codes = torch.cat([c + 0.3 * torch.randn(400, 2) for c in centres])
    sampler = GaussianMixtureSampler(num_components=3)
    sampler.attach(2)
    assert not sampler.fitted
    sampler.fit(codes)
    order = sampler.means[:, 0].argsort()
    assert torch.allclose(sampler.means[order].to(centres), centres[[0, 2, 1]], atol=0.1)
    assert torch.allclose(sampler.weights, torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.01)
    draws = sampler.sample(3000)
    nearest = torch.cdist(draws.double(), centres.double()).argmin(1)
    assert torch.bincount(nearest).min() > 850
    model = LatentVariableModel(nn.Linear(2, D), GaussianLikelihood(0.1, "identity"), StandardNormalPrior(2), MLAEObjective(),
                                MLPEncoder(2, [4]), PointMassPosterior(), latent_sampler=GaussianMixtureSampler(3))
    model.latent_sampler.load_state_dict(sampler.state_dict())
    torch.manual_seed(1)
    decoded = model.sample(5)
    torch.manual_seed(1)
    assert torch.allclose(decoded, model.decode(sampler.sample(5).double()))
    with pytest.raises(ValueError, match="at least as many codes"):
        GaussianMixtureSampler(10).fit(codes[:5])


def _train_on_sinusoid(beta: float, steps: int = 600) -> tuple[torch.Tensor, torch.Tensor]:
    """MLAE with a 1-D latent on the noisy sinusoid (Fig. 3); returns the codes and clean positions."""
    torch.manual_seed(0)
    x, t = noisy_sinusoid(2000, 0.1, torch.Generator().manual_seed(0))
    encoder = ResidualMLPEncoder(1, [64, 64], 2, [64])
    decoder = ResidualMLPDecoder([2], 1, [64, 64], 2, [64])
    likelihood = GaussianLikelihood(1 / (2 * beta), "identity")  # beta |x - g(z)|^2 is N(g(z), 1 / (2 beta) I)
    model = LatentVariableModel(decoder, likelihood, StandardNormalPrior(1), MLAEObjective(beta), encoder,
                                PointMassPosterior())
    encoder(x[:1])  # fixes the lazy first layer's input size before the objective's torch.func transforms
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        batch = x[torch.randint(0, len(x), (128,))]
        optimizer.zero_grad()
        model.objective(model, batch)["loss"].backward()
        optimizer.step()
    with torch.no_grad():
        return encoder(x)[:, 0], t


def test_sinusoid_phase_transition_in_beta():
    """Section 4.2 / Fig. 3: with a large reconstruction weight the 1-D code follows the position
    along the curve (monotone: |Spearman rho| ~ 1); with a small one the likelihood term wins and
    the code discards the position (it concentrates the projected data instead)."""
    from scipy.stats import spearmanr

    def rank_correlation(beta):
        z, t = _train_on_sinusoid(beta)
        return abs(spearmanr(z.double().numpy(), t.double().numpy()).correlation) if z.std() > 1e-6 else 0.0

    assert rank_correlation(10.0) > 0.97
    assert rank_correlation(0.1) < 0.3
