"""R-VAE: the parametrix heat kernel, the Monte Carlo KL, the RBF precision and prior sampling."""

import math

import pytest
import torch
from torch import nn

from lvm.geometry import log_volume, pullback_metric
from lvm.latent_spaces import GaussianLatent
from lvm.likelihoods import HeteroscedasticGaussianLikelihood
from lvm.model import LatentVariableModel
from lvm.networks import MeanPrecisionDecoder, MLPEncoder, RBFPrecision
from objectives import RiemannianBrownianPrior
from objectives.riemannian import log_heat_kernel

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
    log_p = log_heat_kernel(immersion, z, centre, time, log_volume(immersion, z), log_volume(immersion, centre))
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
                                GaussianLatent(LATENT), RiemannianBrownianPrior(prior_time=1.5),
                                MLPEncoder(LATENT, [8], isotropic=True))
    model.objective.prior_phase.fill_(True)
    return model


def test_monte_carlo_kl_matches_the_gaussian_kl_on_a_flat_latent_space():
    """eq. 3.8 with one sample per example, averaged over many: KL(N(mu_q, t_q I) || N(mu_p, t_p I))."""
    model = _linear_rvae()
    with torch.no_grad():
        model.objective.prior_mean.copy_(torch.tensor([0.5, -0.2]))
    x = torch.randn(1, D).repeat(20_000, 1)
    out = model.objective(model, x)
    mean_q, t_q = model.objective.posterior(model, x[:1])
    t_p, mean_p = model.objective.prior_time, model.objective.prior_mean
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
    model.objective.walk_steps = 20
    with torch.no_grad():
        model.objective.prior_mean.copy_(torch.tensor([1.0, 2.0]))
    torch.manual_seed(0)
    z = model.objective.sample_latent(model, 20_000)  # flat metric: N(mu_p, t_p I)
    assert torch.allclose(z.mean(0), torch.tensor([1.0, 2.0]), atol=0.03)
    assert torch.allclose(torch.cov(z.T), 1.5 * torch.eye(2), atol=0.05)
    assert model.sample(3).shape == (3, D)


def test_rvae_needs_a_decoded_standard_deviation():
    with pytest.raises(ValueError, match="HeteroscedasticGaussianLikelihood"):
        from lvm.likelihoods import GaussianLikelihood
        LatentVariableModel(nn.Linear(LATENT, D), GaussianLikelihood(), GaussianLatent(LATENT), RiemannianBrownianPrior(),
                            MLPEncoder(LATENT, [8], isotropic=True))
    assert math.isclose(RiemannianBrownianPrior(prior_time=2.0).prior_time.item(), 2.0)


def test_latent_classification_scores_separable_codes_perfectly():
    from callbacks.latent_classification import LatentClassification

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
