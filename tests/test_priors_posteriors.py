"""Priors and posterior families against closed forms and torch.distributions; the held-out estimator follows
their types, never the objective."""

import math

import pytest
import torch
from torch import nn

import lvm.objectives
from lvm.divergences import kl_divergence
from lvm.estimators.heldout import held_out_estimator
from lvm.likelihoods import GaussianLikelihood, HeteroscedasticGaussianLikelihood
from lvm.model import LatentVariableModel
from lvm.networks import MeanPrecisionDecoder, MLPDecoder, MLPEncoder, RBFPrecision
from lvm.posteriors import BrownianStepPosterior, DiagonalGaussianPosterior, PointMassPosterior, laplace_precision
from lvm.priors import (BrownianMotionPrior, GaussianProxyLatticePrior, LaplaceLatticePrior, StandardNormalPrior,
                        TorusPrior, UnitCubePrior)


def test_invertible_priors_map_uniform_points_to_their_law():
    torch.manual_seed(0)
    cube = torch.rand(200_000, 2, dtype=torch.float64)
    z = StandardNormalPrior(2).from_unit_cube(cube)
    assert z.mean(0).abs().max() < 0.01 and (z.var(0) - 1).abs().max() < 0.02
    normal = torch.distributions.Normal(torch.zeros(2, dtype=torch.float64), 1.0)
    assert torch.allclose(StandardNormalPrior(2).log_prob(z[:10]), normal.log_prob(z[:10]).sum(-1))
    assert torch.equal(TorusPrior(2).from_unit_cube(cube), cube)
    inside_outside = torch.tensor([[0.5, 0.5], [1.5, 0.5]])
    assert UnitCubePrior(2).log_prob(inside_outside).tolist() == [0.0, -math.inf]


def test_diagonal_gaussian_posterior_matches_torch_distributions():
    torch.manual_seed(0)
    params = torch.randn(5, 6, dtype=torch.float64)  # d = 3
    posterior = DiagonalGaussianPosterior()
    mean, log_var = posterior.mean_and_log_var(params)
    q = torch.distributions.Normal(mean, (0.5 * log_var).exp())
    z = posterior.rsample(params, 4)  # [4, 5, 3]
    assert z.shape == (4, 5, 3) and posterior.output_size(3) == 6
    assert torch.allclose(posterior.log_prob(z, params), q.log_prob(z).sum(-1))
    p = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    assert torch.allclose(kl_divergence(posterior, StandardNormalPrior(3), params), torch.distributions.kl_divergence(q, p))


def test_laplace_precision_adds_the_prior_curvature_to_the_fisher_term(float64):
    decoder = nn.Linear(2, 5)
    model = LatentVariableModel(decoder, GaussianLikelihood(0.25, "identity"), StandardNormalPrior(2),
                                lvm.objectives.MLAEObjective(), nn.Linear(5, 2), PointMassPosterior())
    code = torch.randn(3, 2, dtype=torch.float64)
    expected = torch.eye(2, dtype=torch.float64) + decoder.weight.T @ decoder.weight / 0.25  # I + W^T W / c
    precision = laplace_precision(model.decoded_mean, model.likelihood.mean_fisher_information, model.prior.log_prob, code)
    assert torch.allclose(precision, expected.expand(3, 2, 2))


def test_laplace_lattice_prior_is_a_density_of_s_minus_u():
    prior = LaplaceLatticePrior(1)
    with torch.no_grad():
        prior.log_delta.fill_(math.log(0.7))
        prior.log_alpha.fill_(math.log(1.3))
    grid = torch.linspace(-30, 30, 600_001, dtype=torch.float64)[:, None]
    density = prior.log_prob(grid).exp()
    assert torch.trapezoid(density, grid[:, 0]).item() == pytest.approx(1.0, abs=1e-6)
    # the mean of -log f_{S-U} over draws of S - U is the differential entropy: compare with the grid
    torch.manual_seed(0)
    draws = prior.sample(200_000).double()
    entropy = torch.trapezoid(-density * density.clamp_min(1e-300).log(), grid[:, 0]).item()
    assert -prior.log_prob(draws).mean().item() == pytest.approx(entropy, abs=0.01)


def test_gaussian_proxy_lattice_prior_is_the_proxy_gaussian():
    prior = GaussianProxyLatticePrior(8, "E8")
    variance = (prior.log_var_u.exp() + prior.log_var_s.exp()).item()
    z = torch.randn(4, 8)
    normal = torch.distributions.Normal(0.0, math.sqrt(variance))
    assert torch.allclose(prior.log_prob(z), normal.log_prob(z).sum(-1), atol=1e-5)
    with pytest.raises(ValueError, match="multiple of 8"):
        GaussianProxyLatticePrior(12, "E8")


def _rvae(dim=2, data=6):
    decoder = MeanPrecisionDecoder(MLPDecoder([data], [8], activation="elu"), RBFPrecision(dim, data, num_centers=4))
    return LatentVariableModel(decoder, HeteroscedasticGaussianLikelihood("identity"), BrownianMotionPrior(dim),
                               lvm.objectives.RiemannianELBO(), MLPEncoder(dim + 1, [8]), BrownianStepPosterior())


def test_brownian_step_posterior_density_is_that_of_its_draws():
    torch.manual_seed(0)
    model = _rvae()
    params = model.encode(torch.rand(5, 6))
    immersion = model.immersion()
    z, _, _, log_density = model.posterior.step(params, 3, immersion)  # [3, 5, 2], [3, 5]
    assert torch.allclose(model.posterior.log_prob(z, params, immersion), log_density, atol=1e-5)
    assert model.posterior.output_size(2) == 3


def test_held_out_estimator_follows_the_components_not_the_objective():
    def chosen(prior, posterior):
        return type(held_out_estimator(prior, posterior)).__name__

    assert chosen(TorusPrior(2), None) == "DefensiveEstimator"
    assert chosen(StandardNormalPrior(2), DiagonalGaussianPosterior()) == "DefensiveEstimator"
    assert held_out_estimator(StandardNormalPrior(2), DiagonalGaussianPosterior()).with_q
    assert not held_out_estimator(StandardNormalPrior(2), PointMassPosterior()).with_q
    assert chosen(StandardNormalPrior(5), DiagonalGaussianPosterior()) == "ProposalEstimator"
    assert chosen(StandardNormalPrior(5), PointMassPosterior()) == "LaplaceEstimator"
    assert chosen(LaplaceLatticePrior(2), PointMassPosterior()) == "DitheredEstimator"
    assert type(_rvae().evaluation.estimator).__name__ == "ProposalEstimator"
    with pytest.raises(ValueError, match="add model.encoder and model.posterior"):
        held_out_estimator(StandardNormalPrior(5), None)

    torch.manual_seed(0)
    built = [LatentVariableModel(MLPDecoder([6], [8]), GaussianLikelihood(0.1), StandardNormalPrior(5), objective,
                                 MLPEncoder(10, [8]), DiagonalGaussianPosterior())
             for objective in (lvm.objectives.ELBO(), lvm.objectives.IWAE(), lvm.objectives.TaylorELBO())]
    for model in built[1:]:
        model.load_state_dict(built[0].state_dict())
    x = torch.rand(4, 6)
    estimates = []
    for model in built:
        torch.manual_seed(1)
        estimates.append(model.evaluation.log_likelihood(model, x)["log_likelihood"])
    assert torch.equal(estimates[0], estimates[1]) and torch.equal(estimates[0], estimates[2])


def test_brownian_prior_normaliser_is_exact_for_a_flat_metric(float64):
    """An isometric mean decoder with a constant precision: G = I, the parametrix is N(c, t I) and Z = 1."""
    q, _ = torch.linalg.qr(torch.randn(6, 2, generator=torch.Generator().manual_seed(0)))
    mean, precision = nn.Linear(2, 6, bias=False), RBFPrecision(2, 6, num_centers=4, floor=4.0)
    with torch.no_grad():
        mean.weight.copy_(q)
        precision.raw_weight.fill_(-40.0)  # softplus ~ 0: the precision is the floor everywhere
    model = LatentVariableModel(MeanPrecisionDecoder(mean, precision), HeteroscedasticGaussianLikelihood("identity"),
                                BrownianMotionPrior(2, time=1.5), lvm.objectives.RiemannianELBO(), MLPEncoder(3, [8]),
                                BrownianStepPosterior())
    assert abs(model.prior.log_normaliser(model.immersion()).item()) < 1e-6 and model.prior.normalisation_error < 1e-3
    z = torch.randn(5, 2)
    heat_kernel = torch.distributions.Normal(torch.zeros(2), 1.5**0.5).log_prob(z).sum(-1)
    torch.testing.assert_close(model.prior_log_prob(z).detach(), heat_kernel)


def test_brownian_prior_integrates_to_one_within_its_stated_error(float64):
    torch.manual_seed(0)
    model = _rvae()
    log_normaliser = model.prior.log_normaliser(model.immersion())
    assert abs(log_normaliser.item()) > 0.01  # the raw parametrix is not normalised on a curved metric
    grid = torch.linspace(-20, 20, 801)
    points = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        density = torch.cat([model.prior_log_prob(chunk) for chunk in points.split(8192)]).exp()
    integral = (density.sum() * (grid[1] - grid[0]) ** 2).item()
    assert abs(integral - 1) < model.prior.normalisation_error + 1e-3  # the grid's own error is well below 1e-3
    with torch.no_grad():
        model.prior.log_time += 0.1  # a parameter changed in place (as an optimiser step): the normaliser is recomputed
    assert model.prior.log_normaliser(model.immersion()).item() != pytest.approx(log_normaliser.item(), abs=1e-9)


def test_a_fused_optimiser_step_renews_the_brownian_normaliser(float64):
    """Regression: fused Adam updates parameters in place without bumping their version counters, and the normaliser
    was cached on those counters, so after a step the prior's density kept the old log Z."""
    torch.manual_seed(0)
    model = _rvae()
    cached = model.prior.log_normaliser(model.immersion())
    decoder = [p for p in model.decoder.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(decoder, lr=0.05, fused=True)
    for parameter in decoder:
        parameter.grad = torch.ones_like(parameter)
    optimizer.step()
    renewed = model.prior.log_normaliser(model.immersion())
    model.prior._normaliser_cache = None
    fresh = model.prior.log_normaliser(model.immersion())
    assert renewed.item() == pytest.approx(fresh.item(), abs=1e-12) and renewed.item() != pytest.approx(cached.item(),
                                                                                                        abs=1e-9)


def test_no_component_holds_a_reference_to_its_model():
    """The data flow goes model -> component (the decoder's immersion is an argument), never component -> model."""
    model = _rvae()
    held = [(name, key) for name, module in model.named_modules() if module is not model
            for key, value in vars(module).items() if value is model]
    assert held == []
    with pytest.raises(ValueError, match="pass the decoder's immersion"):
        model.prior.log_prob(torch.zeros(3, 2))  # the density needs the decoder: it says so instead of reaching it
    z = torch.zeros(3, 2)
    torch.testing.assert_close(model.prior_log_prob(z), model.prior.log_prob(z, model.immersion()))


def test_a_new_prior_type_registers_its_own_estimator_and_kl():
    from lvm.divergences import _REGISTRY as KL_REGISTRY, has_analytic_kl, register_kl
    from lvm.estimators.heldout import _REGISTRY as ESTIMATORS, HeldOutEstimator, register_estimator

    class WidePrior(StandardNormalPrior):
        """N(0, 4 I): a family the library does not know."""

        def log_prob(self, z, immersion=None):
            return torch.distributions.Normal(0.0, 2.0).log_prob(z).sum(-1)

    class Marker(HeldOutEstimator):
        pass

    def kl_to_wide(posterior, prior, params):
        mean, log_var = posterior.mean_and_log_var(params)
        q, p = torch.distributions.Normal(mean, (0.5 * log_var).exp()), torch.distributions.Normal(0.0, 2.0)
        return torch.distributions.kl_divergence(q, p)  # [b, d]

    register_estimator(WidePrior, DiagonalGaussianPosterior)(lambda prior, posterior: Marker())
    register_kl(DiagonalGaussianPosterior, WidePrior)(kl_to_wide)
    try:
        assert isinstance(held_out_estimator(WidePrior(2), DiagonalGaussianPosterior()), Marker)  # the most specific
        assert type(held_out_estimator(WidePrior(2), PointMassPosterior())).__name__ == "DefensiveEstimator"  # inherited
        params = torch.randn(4, 4)
        mean, log_var = params.chunk(2, dim=1)
        expected = 0.5 * ((mean.pow(2) + log_var.exp()) / 4 - 1 - log_var + math.log(4))
        torch.testing.assert_close(kl_divergence(DiagonalGaussianPosterior(), WidePrior(2), params), expected)
        assert has_analytic_kl(DiagonalGaussianPosterior(), StandardNormalPrior(2))
        assert not has_analytic_kl(PointMassPosterior(), StandardNormalPrior(2))
        assert not has_analytic_kl(BrownianStepPosterior(), BrownianMotionPrior(2))
    finally:
        del ESTIMATORS[WidePrior, DiagonalGaussianPosterior], KL_REGISTRY[DiagonalGaussianPosterior, WidePrior]


def test_type_pair_lookup_orders_the_most_specific_first_and_object_matches_none():
    from lvm.dispatch import matches_by_specificity

    registry = {(StandardNormalPrior, object): "normal, any", (StandardNormalPrior, DiagonalGaussianPosterior): "both",
                (BrownianMotionPrior, object): "other prior", (nn.Module, nn.Module): "modules"}
    assert matches_by_specificity(registry, StandardNormalPrior(2), DiagonalGaussianPosterior()) == [
        "both", "normal, any", "modules"]
    assert matches_by_specificity(registry, StandardNormalPrior(2), None) == ["normal, any"]
