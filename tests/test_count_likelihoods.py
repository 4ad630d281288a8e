"""The likelihoods for a scientist's own data: Poisson and negative-binomial counts, and a Gaussian whose variance is
learned (shared or per feature). Each against torch.distributions per pair and for the pairwise table, their Fisher
information against the variance of the score, and the learned scales against their maximum-likelihood values."""

import math

import pytest
import torch

from lvm.likelihoods import GaussianLikelihood, NegativeBinomialLikelihood, PoissonLikelihood
from lvm.model import LatentVariableModel
from lvm.networks import MLPDecoder
from lvm.objectives import QMCObjective
from lvm.priors import TorusPrior

D = 12


def _attached(likelihood, num_features=D):
    likelihood.attach(num_features)
    with torch.no_grad():  # distinct scales per feature, so a mix-up of features would show
        for parameter in likelihood.parameters():
            parameter.copy_(torch.linspace(-1.0, 1.0, parameter.numel()).view_as(parameter))
    return likelihood.double()


def _counts(b, generator):
    return torch.poisson(torch.full((b, D), 3.0, dtype=torch.float64), generator=generator)


def _reference(likelihood, x, params):
    """``log p(x | params)`` from torch.distributions, ``[..., D]`` summed over features."""
    if isinstance(likelihood, PoissonLikelihood):
        return torch.distributions.Poisson(params.exp()).log_prob(x).sum(-1)
    if isinstance(likelihood, NegativeBinomialLikelihood):
        r = likelihood.dispersion.expand_as(params)
        return torch.distributions.NegativeBinomial(total_count=r, logits=params - r.log()).log_prob(x).sum(-1)
    std = torch.as_tensor(likelihood.variance).sqrt().expand_as(params)
    return torch.distributions.Normal(likelihood.mean(params), std).log_prob(x).sum(-1)


CASES = {
    "poisson": lambda: PoissonLikelihood(),
    "negative-binomial per feature": lambda: _attached(NegativeBinomialLikelihood()),
    "negative-binomial shared": lambda: _attached(NegativeBinomialLikelihood(2.0, "shared")),
    "negative-binomial fixed": lambda: NegativeBinomialLikelihood(0.5, "none").double(),
    "gaussian per feature": lambda: _attached(GaussianLikelihood(0.5, "identity", "per_feature")),
    "gaussian shared": lambda: _attached(GaussianLikelihood(0.5, "identity", "shared")),
    "gaussian fixed": lambda: GaussianLikelihood(0.3, "identity"),
}


@pytest.mark.parametrize("case", CASES)
def test_per_pair_and_pairwise_log_prob_equal_torch_distributions(case):
    likelihood = CASES[case]()
    generator = torch.Generator().manual_seed(0)
    x = _counts(7, generator)
    if isinstance(likelihood, GaussianLikelihood):
        x = x + torch.randn(x.shape, generator=generator, dtype=torch.float64)
    params = torch.randn(11, D, generator=generator, dtype=torch.float64)  # log-rates / means of 11 latent points
    expected = _reference(likelihood, x[:, None, :], params[None, :, :])  # [7, 11] through a [7, 11, D] tensor
    assert torch.allclose(likelihood.log_prob(x[:, None, :], params[None, :, :]), expected, atol=1e-9)
    assert torch.allclose(likelihood.pairwise_log_prob(x, params), expected, atol=1e-9)


@pytest.mark.parametrize("case", ["poisson", "negative-binomial per feature", "gaussian per feature"])
def test_pairwise_gradients_equal_those_of_the_reference(case):
    """The learned scales are trained through the pairwise table (QMC): its gradients must be the reference's."""
    likelihood = CASES[case]()
    generator = torch.Generator().manual_seed(1)
    x = _counts(5, generator)
    params = torch.randn(6, D, generator=generator, dtype=torch.float64, requires_grad=True)
    weights = torch.rand(5, 6, generator=generator, dtype=torch.float64)
    tensors = [params, *likelihood.parameters()]
    fast = torch.autograd.grad((weights * likelihood.pairwise_log_prob(x, params)).sum(), tensors)
    slow = torch.autograd.grad((weights * _reference(likelihood, x[:, None], params[None])).sum(), tensors)
    for a, b in zip(fast, slow):
        assert torch.allclose(a, b, atol=1e-9)


@pytest.mark.parametrize("case", ["poisson", "negative-binomial shared"])
def test_fisher_information_is_the_variance_of_the_score(case):
    """I(mu) = E[(d/dmu log p(x | mu))^2], summed exactly over x = 0..19999 for a few means."""
    likelihood = CASES[case]()
    means = torch.tensor([0.3, 2.0, 9.0], dtype=torch.float64)
    grid = means.repeat(20000, 1).requires_grad_()  # [N, 3]: one leaf per (count, mean), so grad is per element
    x = torch.arange(20000, dtype=torch.float64)[:, None].expand(-1, 3)  # [N, 3]
    log_p = likelihood.log_prob(x[..., None], grid.log()[..., None])  # [N, 3]: log p(x | mu_k), one feature
    score, = torch.autograd.grad(log_p.sum(), grid)  # [N, 3]
    probability = log_p.detach().exp()
    assert torch.allclose(probability.sum(0), torch.ones(3, dtype=torch.float64), atol=1e-9)
    fisher = (probability * score.pow(2)).sum(0)
    assert torch.allclose(likelihood.mean_fisher_information(means), fisher, rtol=1e-6)


def _fit(likelihood, x, params, steps=300):
    """Maximise the likelihood's own parameters (the decoder's outputs ``params`` held at the truth), by L-BFGS."""
    optimizer = torch.optim.LBFGS(list(likelihood.parameters()), lr=0.5, max_iter=steps, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-12, tolerance_change=1e-14)

    def closure():
        optimizer.zero_grad()
        loss = -likelihood.log_prob(x, params).mean()
        loss.backward()
        return loss

    optimizer.step(closure)
    return likelihood


def _known_decoder_data(n=4000, seed=0):
    """Data from a known 2-D latent through a known nonlinear map: the true means ``[n, D]``."""
    generator = torch.Generator().manual_seed(seed)
    z = torch.rand(n, 2, generator=generator, dtype=torch.float64)
    weights = torch.randn(2, D, generator=generator, dtype=torch.float64)
    return torch.sin(2 * math.pi * z @ weights), generator


def test_learned_gaussian_variance_reaches_the_mean_squared_residual():
    means, generator = _known_decoder_data()
    noise_std = torch.linspace(0.1, 1.0, D, dtype=torch.float64)
    x = means + noise_std * torch.randn(means.shape, generator=generator, dtype=torch.float64)
    per_feature = _fit(_attached(GaussianLikelihood(0.5, "identity", "per_feature", min_variance=1e-6)), x, means)
    residual = (x - means).pow(2)
    assert torch.allclose(per_feature.variance.detach(), residual.mean(0), rtol=1e-5)  # the closed-form MLE
    shared = _fit(_attached(GaussianLikelihood(0.5, "identity", "shared", min_variance=1e-6)), x, means)
    assert torch.allclose(shared.variance.detach(), residual.mean().reshape(1), rtol=1e-5)


def test_poisson_log_rate_of_a_constant_decoder_is_the_log_mean_count():
    """The Poisson MLE of one rate per feature is the mean count: the gradient of the mean log-likelihood with
    respect to the log-rates vanishes there and nowhere else."""
    generator = torch.Generator().manual_seed(2)
    rates = torch.linspace(0.2, 8.0, D, dtype=torch.float64)
    x = torch.poisson(rates.expand(3000, D), generator=generator)
    log_rate = x.mean(0).log().requires_grad_()
    gradient, = torch.autograd.grad(PoissonLikelihood().log_prob(x, log_rate.expand_as(x)).mean(), log_rate)
    assert gradient.abs().max() < 1e-10
    shifted = (log_rate.detach() + 0.1).requires_grad_()
    gradient, = torch.autograd.grad(PoissonLikelihood().log_prob(x, shifted.expand_as(x)).mean(), shifted)
    assert (gradient < 0).all()


def test_learned_dispersion_solves_its_score_equation_and_finds_the_true_dispersion():
    """The negative binomial's dispersion has no closed-form MLE; the learned one solves the score equation
    sum_i psi(x_i + r) - psi(r) + log(r / (r + mu_i)) + (mu_i - x_i) / (r + mu_i) = 0 per feature, and lies near the
    dispersion the data were drawn with."""
    means, generator = _known_decoder_data(n=20000, seed=3)
    mu = (1.5 + means).exp()  # [n, D]
    true_r = torch.linspace(0.5, 5.0, D, dtype=torch.float64)
    torch.manual_seed(3)
    x = torch.distributions.NegativeBinomial(total_count=true_r.expand_as(mu), logits=mu.log() - true_r.log()).sample()
    assert NegativeBinomialLikelihood(1.0).log_dispersion is None  # per feature: sized by attach
    likelihood = _fit(_attached(NegativeBinomialLikelihood(1.0)), x, mu.log())
    r = likelihood.dispersion.detach()
    score = (torch.digamma(x + r) - torch.digamma(r) + (r / (r + mu)).log() + (mu - x) / (r + mu)).mean(0)
    assert score.abs().max() < 1e-6
    assert torch.allclose(r, true_r, rtol=0.15)


def test_model_attaches_per_feature_scales_and_restores_them():
    model = LatentVariableModel(MLPDecoder([1, 3, 4], [8]), NegativeBinomialLikelihood(), TorusPrior(2), QMCObjective(21))
    assert model.likelihood.log_dispersion.shape == (12,)
    with torch.no_grad():
        model.likelihood.log_dispersion.fill_(0.7)
    again = LatentVariableModel(MLPDecoder([1, 3, 4], [8]), NegativeBinomialLikelihood(), TorusPrior(2), QMCObjective(21))
    again.load_state_dict(model.state_dict())
    assert torch.equal(again.likelihood.dispersion, torch.full((12,), math.exp(0.7)))
    assert any(parameter is model.likelihood.log_dispersion for parameter in model.parameters())  # it is trained


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="learn_variance"):
        GaussianLikelihood(0.1, "identity", "per_pixel")
    with pytest.raises(ValueError, match="min_variance"):
        GaussianLikelihood(0.1, "identity", "shared", min_variance=0.2)
    with pytest.raises(ValueError, match="positive dispersion"):
        NegativeBinomialLikelihood(0.0)
    with pytest.raises(ValueError, match="learn_dispersion"):
        NegativeBinomialLikelihood(1.0, "per_cell")


def test_objectives_of_a_fixed_variance_refuse_a_learned_one():
    from lvm.networks import MLPEncoder
    from lvm.objectives import TaylorELBO
    from lvm.posteriors import DiagonalGaussianPosterior
    from lvm.priors import StandardNormalPrior
    with pytest.raises(ValueError, match="learn_variance: none"):
        LatentVariableModel(MLPDecoder([4], [8]), GaussianLikelihood(0.1, "identity", "shared"), StandardNormalPrior(2),
                            TaylorELBO(), encoder=MLPEncoder(4, [8]), posterior=DiagonalGaussianPosterior())
