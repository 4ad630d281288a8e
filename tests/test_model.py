import math

import numpy as np
import pytest
import torch
from torch import nn

from lvm.numerics.lattices import PointSet
from lvm.likelihoods import BernoulliLikelihood, GaussianLikelihood
from lvm.model import LatentVariableModel
from lvm.networks import ConvDecoder, ConvEncoder, MLPDecoder
from lvm.priors import StandardNormalPrior, TorusPrior, UnitCubePrior
from lvm.objectives import QMCObjective


def _torus_model(objective=None, likelihood=None):
    torch.manual_seed(0)
    decoder = MLPDecoder([12], hidden=[16])
    return LatentVariableModel(decoder, likelihood or GaussianLikelihood(0.1), TorusPrior(2),
                               objective or QMCObjective(89, points="qmc"))


def test_torus_log_likelihood_matches_dense_grid_quadrature():
    model = _torus_model()
    x = model.sample(4) + 0.05 * torch.randn(4, 12)
    side = 400
    centres = (torch.arange(side) + 0.5) / side
    grid = torch.stack(torch.meshgrid(centres, centres, indexing="ij"), -1).reshape(-1, 2)  # [side^2, 2]
    log_p = model.likelihood.log_prob(x[:, None, :], model.decoder_params(grid)[None])  # brute force [b, n, D]
    reference = torch.logsumexp(log_p, dim=1) - math.log(len(grid))
    assert torch.allclose(model.log_likelihood(x, num_points=6765), reference, atol=1e-3)


def test_qmc_objective_equals_brute_force_average_over_the_lattice():
    model = _torus_model(likelihood=BernoulliLikelihood())
    x = torch.bernoulli(torch.full((5, 12), 0.4))
    lattice = PointSet(89, 2, model.objective.points).draw()  # the fixed 89-point Fibonacci lattice
    expected = []
    for xi in x:
        p = torch.stack([model.likelihood.log_prob(xi, model.decoder_params(z[None].float())[0]).exp() for z in lattice])
        expected.append(torch.log(p.mean()))
    loss = model.objective(model, x)["loss"]
    assert loss.item() == pytest.approx(-torch.stack(expected).mean().item(), rel=1e-5)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.decoder.parameters())


def test_posterior_weights_are_bayes_rule_on_the_lattice():
    model = _torus_model()
    x = model.sample(3)
    z, weights = model.posterior_on_lattice(x, num_points=233)
    assert z.shape == (233, 2) and weights.shape == (3, 233)
    assert torch.allclose(weights.sum(1), torch.ones(3))
    log_p = model.likelihood.log_prob(x[:, None, :], model.decoder_params(z)[None])
    assert torch.allclose(weights, torch.softmax(log_p, dim=1), atol=1e-6)
    assert torch.equal(model.embed(x, "mode", 233), z[weights.argmax(1)])


def test_circular_mean_on_the_torus_wraps_around_the_seam():
    z = torch.tensor([[0.95, 0.5], [0.05, 0.5]])
    weights = torch.tensor([[0.5, 0.5]])
    torus_mean = TorusPrior(2).weighted_mean(z, weights)[0]
    seam_distance = torch.minimum(torus_mean[0], 1 - torus_mean[0])
    assert seam_distance.item() < 1e-6 and torus_mean[1].item() == pytest.approx(0.5)
    assert UnitCubePrior(2).weighted_mean(z, weights)[0, 0].item() == pytest.approx(0.5)


def test_embed_uses_the_circular_mean():
    model = _torus_model()
    x = model.decode(torch.tensor([[0.999, 0.3]]))  # an image decoded at the seam
    z, weights = model.posterior_on_lattice(x, 6765)
    assert torch.allclose(model.embed(x, "mean", 6765), model.prior.weighted_mean(z, weights))
    with pytest.raises(ValueError, match="reduce"):
        model.embed(x, "median")


def test_latent_features_and_inversion():
    torus = TorusPrior(2)
    z = torch.rand(5, 2)
    assert torch.allclose(torus.features(z), torus.features(z + 1.0), atol=1e-5)  # periodic
    assert torus.features(z).shape == (5, 4)
    gaussian = StandardNormalPrior(1)
    c = torch.tensor([[0.5], [0.975]], dtype=torch.float64)
    assert gaussian.from_unit_cube(c)[:, 0].tolist() == pytest.approx([0.0, 1.959964], abs=1e-5)
    with pytest.raises(ValueError, match="at least 1"):
        TorusPrior(0)


def test_conv_networks_shapes_and_configuration_errors():
    assert ConvDecoder(28)(torch.randn(2, 4)).shape == (2, 1, 28, 28)
    assert ConvDecoder(80, channels=[64, 64, 32, 32])(torch.randn(2, 4)).shape == (2, 1, 80, 80)
    assert ConvEncoder(6, 28)(torch.randn(2, 1, 28, 28)).shape == (2, 6)
    assert ConvDecoder(80, channels=[64, 32])(torch.randn(2, 4)).shape == (2, 1, 80, 80)  # a 20x20 base grid
    # the data's shape, any size the stages divide, not square: a 128x64 spectrogram with the CPU config's channels
    assert ConvDecoder(hidden=16, channels=[8, 8, 4, 4], data_shape=[1, 128, 64])(torch.randn(2, 4)).shape == (
        2, 1, 128, 64)
    with pytest.raises(ValueError, match="need a side divisible by 8; got 28. Give channels 2 entries"):
        ConvDecoder(28, channels=[64, 32, 16])
    with pytest.raises(ValueError, match=r"image_size 64 with out_channels 1 makes \[1, 64, 64\], but the data are "
                                         r"\[1, 128, 128\]"):
        ConvDecoder(64, channels=[8, 8], data_shape=[1, 128, 128])


def test_sample_and_decode_shapes():
    model = LatentVariableModel(ConvDecoder(28), BernoulliLikelihood(), TorusPrior(2), QMCObjective(89))
    images = model.sample(6)
    assert images.shape == (6, 1, 28, 28) and ((images > 0) & (images < 1)).all()
    assert isinstance(model.decoder.project[0], nn.Linear)  # the lazy layer was materialised


def test_chunked_evaluation_is_exact():
    model = _torus_model()
    x = model.sample(5)
    torch.manual_seed(1)
    whole = model.log_likelihood(x, num_points=987)
    model.eval_chunk_size = 100
    torch.manual_seed(1)
    assert torch.allclose(model.log_likelihood(x, num_points=987), whole, atol=1e-5)
    z_whole, w_whole = model.posterior_on_lattice(x, 987)
    model.eval_chunk_size = 4096
    assert torch.allclose(model.posterior_on_lattice(x, 987)[1], w_whole, atol=1e-6)


def test_decoder_output_shape_mismatch_is_reported_at_setup():
    class FakeTrainer:
        class datamodule:
            data_shape = (1, 8, 8)

    model = _torus_model()  # decodes 12 values, the data have 64
    model._trainer = FakeTrainer()
    with pytest.raises(ValueError, match=r"decoder produces outputs of shape \[12\] but the data have shape \[1, 8, 8\]"):
        model.setup("fit")


def test_high_dimensional_encoder_models_embed_with_the_encoder_mean_and_plot():
    from lvm.networks import MLPEncoder
    from lvm.plotting.figures import plot_embedding
    from lvm.posteriors import DiagonalGaussianPosterior
    from lvm.objectives import ELBO

    model = LatentVariableModel(MLPDecoder([12], [8]), GaussianLikelihood(), StandardNormalPrior(5), ELBO(),
                                MLPEncoder(10, [8]), DiagonalGaussianPosterior())
    x = torch.rand(4, 12)
    assert torch.equal(model.embed(x), model.encoder(x)[:, :5])
    with pytest.raises(ValueError, match="num_points"):
        model.log_likelihood(x)
    assert len(plot_embedding(model.embed(x).numpy(), np.linspace(0, 1, 4)).axes) == 2  # scatter + colour bar
    categorical = plot_embedding(model.embed(x).numpy(), np.arange(4), label_names=list("abcd"), label_title="kind")
    assert len(categorical.axes) == 1  # a legend instead of a colour bar
    legend = categorical.axes[0].get_legend()
    assert legend.get_title().get_text() == "kind" and [t.get_text() for t in legend.get_texts()] == list("abcd")
