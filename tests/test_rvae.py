"""R-VAE: the parametrix heat kernel, the Monte Carlo KL, the RBF precision and prior sampling."""

import math

import pytest
import torch
from torch import nn

from lvm.numerics.geometry import geodesic, log_volume, pullback_metric
from lvm.likelihoods import HeteroscedasticGaussianLikelihood
from lvm.model import LatentVariableModel
from lvm.networks import MeanPrecisionDecoder, MLPEncoder, RBFPrecision
from lvm.posteriors import BrownianStepPosterior, DiagonalGaussianPosterior
from lvm.priors import BrownianMotionPrior, log_heat_kernel
from lvm.objectives import RiemannianELBO

pytestmark = pytest.mark.usefixtures("float64")

D, LATENT = 6, 2


def _isometry(seed=0):
    q, _ = torch.linalg.qr(torch.randn(D, LATENT, generator=torch.Generator().manual_seed(seed)))
    return q  # orthonormal columns: f(z) = Q z preserves distances


def test_parametrix_is_the_euclidean_gaussian_for_an_isometric_linear_decoder():
    q = _isometry()
    mean_map = lambda z: z @ q.T  # noqa: E731
    std_map = lambda z: torch.full((len(z), D), 0.3)  # noqa: E731  (constant: no contribution to G)
    z, centre = torch.randn(5, LATENT), torch.randn(5, LATENT)
    time = torch.tensor(0.7)
    assert torch.allclose(pullback_metric(mean_map, z, std_map), torch.eye(LATENT).expand(5, -1, -1), atol=1e-12)
    immersion = lambda z: torch.cat([mean_map(z), std_map(z)], dim=-1)  # noqa: E731
    squared_distance = 2 * geodesic(immersion, z, centre, num_points=8, steps=0).energy  # the straight line
    log_p = log_heat_kernel(z, time, squared_distance, log_volume(immersion, z), log_volume(immersion, centre))
    expected = torch.distributions.Normal(centre, time.sqrt()).log_prob(z).sum(-1)
    assert torch.allclose(log_p, expected, atol=1e-10)


def _linear_rvae():
    """Mean decoder Q z (an isometry) and a constant precision: the R-VAE is a Euclidean VAE."""
    torch.manual_seed(0)
    mean = nn.Linear(LATENT, D, bias=False)
    precision = RBFPrecision(LATENT, D, num_centers=4, floor=4.0)
    with torch.no_grad():
        mean.weight.copy_(_isometry())
        precision.raw_weight.fill_(-40.0)  # softplus ~ 0: precision = floor everywhere
    model = LatentVariableModel(MeanPrecisionDecoder(mean, precision), HeteroscedasticGaussianLikelihood("identity"),
                                BrownianMotionPrior(LATENT, time=1.5), RiemannianELBO(),
                                MLPEncoder(LATENT + 1, [8]), BrownianStepPosterior())
    model.prior.placed.fill_(True)
    return model


def test_monte_carlo_kl_matches_the_gaussian_kl_on_a_flat_latent_space():
    """eq. 3.8 with one sample per example, averaged over many: KL(N(mu_q, t_q I) || N(mu_p, t_p I))."""
    model = _linear_rvae()
    with torch.no_grad():
        model.prior.centre.copy_(torch.tensor([0.5, -0.2]))
    x = torch.randn(1, D).repeat(20_000, 1)
    out = model.objective(model, x)
    mean_q, t_q = model.posterior.centre_and_time(model.encode(x[:1]))
    t_p, mean_p = model.prior.time, model.prior.centre
    exact = 0.5 * (LATENT * t_q / t_p + (mean_q - mean_p).pow(2).sum() / t_p - LATENT + LATENT * torch.log(t_p / t_q))
    assert out["kl"].item() == pytest.approx(exact.item(), abs=0.03)
    assert out["elbo"].item() == pytest.approx((out["reconstruction"] - out["kl"]).item())


def test_rbf_precision_falls_to_its_floor_and_the_metric_grows_off_the_data():
    torch.manual_seed(0)
    codes = torch.randn(500, LATENT) * 0.5
    precision = RBFPrecision(LATENT, D, num_centers=20, bandwidth=2.0, floor=0.01)
    precision.fit_centres(codes)
    near, far = precision(torch.zeros(1, LATENT)), precision(torch.tensor([[6.0, 0.0]]))
    assert torch.allclose(far, torch.full_like(far, 0.01), rtol=1e-6)
    assert (near > 10 * far).all()
    std_map = lambda z: precision(z).rsqrt()  # noqa: E731
    mean_map = nn.Linear(LATENT, D)
    volumes = log_volume(mean_map, torch.tensor([[0.0, 0.0], [1.8, 0.0]]), std_map)
    assert volumes[1] > volumes[0] + 1.0  # the border of the data is expensive to cross


def test_prior_samples_are_brownian_walks_from_the_prior_mean():
    model = _linear_rvae()
    model.prior.walk_steps = 20
    with torch.no_grad():
        model.prior.centre.copy_(torch.tensor([1.0, 2.0]))
    torch.manual_seed(0)
    z = model.prior.sample(20_000, immersion=model.immersion())  # flat metric: N(mu_p, t_p I)
    assert torch.allclose(z.mean(0), torch.tensor([1.0, 2.0]), atol=0.03)
    assert torch.allclose(torch.cov(z.T), 1.5 * torch.eye(2), atol=0.05)
    assert model.sample(3).shape == (3, D)


def test_rvae_needs_a_decoded_standard_deviation():
    from lvm.likelihoods import GaussianLikelihood
    from lvm.priors import StandardNormalPrior

    with pytest.raises(ValueError, match="HeteroscedasticGaussianLikelihood"):
        LatentVariableModel(nn.Linear(LATENT, D), GaussianLikelihood(), BrownianMotionPrior(LATENT), RiemannianELBO(),
                            MLPEncoder(LATENT + 1, [8]), BrownianStepPosterior())
    assert math.isclose(BrownianMotionPrior(LATENT, time=2.0).time.item(), 2.0)
    # the R-VAE's components: the objective names the missing one
    decoder = lambda: MeanPrecisionDecoder(nn.Linear(LATENT, D), RBFPrecision(LATENT, D, num_centers=4))  # noqa: E731
    likelihood = HeteroscedasticGaussianLikelihood("identity")
    with pytest.raises(ValueError, match="RiemannianELBO needs model.posterior: lvm.posteriors.BrownianStepPosterior"):
        LatentVariableModel(decoder(), likelihood, BrownianMotionPrior(LATENT), RiemannianELBO(),
                            MLPEncoder(2 * LATENT, [8]), DiagonalGaussianPosterior())
    with pytest.raises(ValueError, match="BrownianMotionPrior"):  # the posterior draws on the prior's manifold
        LatentVariableModel(decoder(), likelihood, StandardNormalPrior(LATENT), RiemannianELBO(),
                            MLPEncoder(LATENT + 1, [8]), BrownianStepPosterior())


def test_latent_classification_scores_separable_codes_perfectly():
    from lvm.callbacks.latent_classification import LatentClassification

    class Codes(nn.Module):
        def forward(self, x):
            return x

    class FakeModel:
        device = torch.device("cpu")
        latent_code = Codes()
        logged = {}

        def log(self, name, value):
            self.logged[name] = value

    class FakeTrainer:
        class datamodule:
            generator = torch.Generator().manual_seed(0)
            labels = torch.arange(400) % 4
            separable = torch.utils.data.TensorDataset(labels[:, None] * 3.0 + 0.1 * torch.randn(400, 1, generator=generator),
                                                       labels)
            train_set = test_set = separable

    model = FakeModel()
    LatentClassification(epochs=200).on_test_epoch_end(FakeTrainer(), model)
    assert model.logged["test/code_f1"] == pytest.approx(1.0)
    assert set(model.logged) == {"test/code_f1"} | {f"test/code_f1_class_{k}" for k in range(4)}


def test_refitting_rbf_centres_keeps_the_mean_precision_over_the_codes():
    torch.manual_seed(0)
    precision = RBFPrecision(LATENT, D, num_centers=30, bandwidth=None, floor=0.1)
    codes = torch.randn(600, LATENT) * 0.3 + 1.0
    before = precision(codes).mean(0)
    precision.fit_centres(codes)
    assert torch.allclose(precision(codes).mean(0), before, rtol=1e-4)
    assert torch.allclose(precision.centres.mean(0), codes.mean(0), atol=0.05)
    assert precision.inverse_widths.min() > 1.0  # clusters of a 0.3-wide cloud are narrow


def _nonlinear_rvae(seed=0):
    torch.manual_seed(seed)
    decoder = MeanPrecisionDecoder(nn.Sequential(nn.Linear(LATENT, 8), nn.ELU(), nn.Linear(8, D)),
                                   RBFPrecision(LATENT, D, num_centers=5, bandwidth=0.5))
    model = LatentVariableModel(decoder, HeteroscedasticGaussianLikelihood("identity"), BrownianMotionPrior(LATENT),
                                RiemannianELBO(), MLPEncoder(LATENT + 1, [8]), BrownianStepPosterior())
    model.prior.placed.fill_(True)
    return model


def test_one_loss_evaluation_derives_the_rbf_weights_once_with_the_same_loss_and_gradients(monkeypatch):
    """The R-VAE loss calls the decoder four times (posterior centres, draws, prior centre, curve points); the
    softplus of the RBF weights is computed once per loss (lvm.numerics.derived.reusing_derived_weights), and the loss and
    every gradient equal those of a loss that recomputes it at each call."""
    model, x = _nonlinear_rvae(), torch.randn(7, D)
    model.objective(model, x)  # materialise the lazy encoder (its initialisation draws random numbers)
    softplus, calls, decoder_calls = nn.functional.softplus, [], []
    monkeypatch.setattr(nn.functional, "softplus", lambda t, *a, **k: calls.append(t.shape) or softplus(t, *a, **k))
    model.decoder.precision.register_forward_hook(lambda *_: decoder_calls.append(1))

    def loss_and_gradients(evaluate):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        loss = evaluate(model, x)["loss"]
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    loss, gradients = loss_and_gradients(model.objective)  # Objective.__call__: one scope per loss
    assert calls.count(model.decoder.precision.raw_weight.shape) == 1 and len(decoder_calls) >= 4
    calls.clear()
    reference, reference_gradients = loss_and_gradients(model.objective.forward)  # no scope: one softplus per call
    assert calls.count(model.decoder.precision.raw_weight.shape) == len(decoder_calls) // 2
    assert torch.allclose(loss, reference, rtol=1e-12)
    assert len(gradients) == len(reference_gradients) > 0
    assert all(torch.allclose(g, r, rtol=1e-10, atol=1e-12) for g, r in zip(gradients, reference_gradients))
    # two losses back-propagated without a parameter update in between (gradient accumulation): no stale graph
    for _ in range(2):
        model.objective(model, x)["loss"].backward()


def test_derived_weights_follow_in_place_updates_and_grad_mode():
    from lvm.numerics.derived import derived_weight, reusing_derived_weights

    parameter = nn.Parameter(torch.tensor([-1.0, 0.5]))
    with reusing_derived_weights():
        first = derived_weight(parameter, torch.exp)
        assert derived_weight(parameter, torch.exp) is first and first.requires_grad
        with torch.no_grad():
            assert not derived_weight(parameter, torch.exp).requires_grad  # a separate entry without autograd
            parameter.add_(1.0)  # an optimiser step changes the version: recomputed
        assert torch.allclose(derived_weight(parameter, torch.exp), torch.exp(torch.tensor([0.0, 1.5])))
        with reusing_derived_weights():  # nested blocks share the outer cache
            assert derived_weight(parameter, torch.exp) is derived_weight(parameter, torch.exp)
    assert derived_weight(parameter, torch.exp) is not derived_weight(parameter, torch.exp)  # outside: no cache
