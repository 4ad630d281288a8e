"""The dithered-lattice objective: Theorem 1, normalised pmfs, training on digits, discrete codes."""

import math

import pytest
import torch

from lvm.likelihoods import BernoulliLikelihood
from lvm.model import LatentVariableModel
from lvm.networks import GatedDecoder, GatedEncoder
from lvm.posteriors import DiagonalGaussianPosterior, PointMassPosterior
from lvm.priors import (GaussianProxyLatticePrior, LaplaceLatticePrior, LatticePMF, laplace_code_length,
                        laplace_representation_cost)
from lvm.numerics.quantizers import HexagonalLattice
from lvm.estimators.variational import dithered_log_likelihood
from lvm.objectives import DirectLatticeObjective, GaussianProxyLatticeObjective


def test_theorem_1_train_time_cost_equals_inference_code_length_in_expectation():
    """For Z with Laplacian S: E_U[log f_U(U) / f_{S-U}(e - U)] = E_U[-log p(K(e + U) | U)] (eq. 4)."""
    torch.manual_seed(0)
    delta, alpha = torch.tensor(0.7), torch.tensor(1.3)
    for e in (0.0, 0.2, 1.1, -2.45):
        u = (torch.rand(400_000, dtype=torch.float64) - 0.5) * delta
        train = laplace_representation_cost(e - u, delta, alpha).mean()
        z = torch.round((e + u) / delta) * delta
        inference = laplace_code_length(z, u, delta, alpha)
        error = 3 * inference.std() / math.sqrt(len(u))
        assert train.item() == pytest.approx(inference.mean().item(), abs=error.item())


def test_laplace_code_lengths_are_a_normalised_pmf_over_the_lattice():
    delta, alpha = torch.tensor(0.5, dtype=torch.float64), torch.tensor(2.0, dtype=torch.float64)
    z = torch.arange(-200, 201, dtype=torch.float64) * delta
    for u in (-0.2, 0.0, 0.13):
        total = torch.exp(-laplace_code_length(z, torch.tensor(u, dtype=torch.float64), delta, alpha)).sum()
        assert total.item() == pytest.approx(1.0, abs=1e-9)


def test_lattice_pmf_is_normalised_for_every_dither():
    torch.manual_seed(0)
    lattice = HexagonalLattice()
    pmf = LatticePMF(lattice, threshold=3, max_norm=12).double()
    with torch.no_grad():
        pmf.psi.normal_()
    points = lattice.short_vectors(12)  # every point with a logit of its own
    for u in lattice.sample_voronoi(3, dtype=torch.float64):
        total = torch.exp(pmf.log_prob(points, u.expand_as(points))).sum()
        assert total.item() == pytest.approx(1.0, abs=1e-9)
    assert len(pmf.small_points) == 7  # the origin and its 6 neighbours


def _digits():
    from lvm.datamodules import DigitsDataModule

    dm = DigitsDataModule()
    dm.setup()
    generator = torch.Generator().manual_seed(0)
    train = torch.bernoulli(torch.stack([x for x, _ in dm.train_set]), generator=generator)
    test = torch.bernoulli(torch.stack([x for x, _ in dm.test_set]), generator=generator)
    return train, test


@pytest.mark.parametrize("lattice,training", [("Z", "direct"), ("Z2", "gaussian_proxy"), ("A2", "gaussian_proxy"),
                                              ("E8", "gaussian_proxy")])
def test_objective_trains_on_digits_and_the_one_sample_nll_improves(lattice, training):
    train, test = _digits()
    torch.manual_seed(0)
    if training == "direct":
        prior, objective = LaplaceLatticePrior(8), DirectLatticeObjective()
    else:
        prior, objective = GaussianProxyLatticePrior(8, lattice=lattice), GaussianProxyLatticeObjective()
    model = LatentVariableModel(GatedDecoder([1, 8, 8], 64), BernoulliLikelihood(), prior, objective, GatedEncoder(8, 64),
                                PointMassPosterior())
    model.encoder(train[:1])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def test_nll():
        model.eval()
        with torch.no_grad():
            return -dithered_log_likelihood(lambda z: model.log_prob(test, z), model.prior, model.latent_code(test),
                                            1).mean().item()  # the one-sample quantized estimate

    before = test_nll()
    model.train()
    for _ in range(150):
        optimizer.zero_grad()
        model.objective(model, train[torch.randint(0, len(train), (64,))])["loss"].backward()
        optimizer.step()
    after = test_nll()
    assert math.isfinite(after) and after < before - 10
    model.eval()
    with torch.no_grad():
        several = -dithered_log_likelihood(lambda z: model.log_prob(test, z), model.prior, model.latent_code(test),
                                           20, 10).mean().item()
        assert several < after  # more importance samples, a tighter (lower) NLL
        codes, dither = model.prior.encode(model.latent_code(test[:5]))
        assert codes.dtype == torch.int64 and codes.shape == (5, 8)
        lattice_points = model.prior.lattice().from_coordinates(codes, dither.dtype)
        assert torch.allclose(model.prior.lattice().nearest_point(lattice_points), lattice_points, atol=1e-5)
        assert torch.allclose(model.decode(model.prior.decoder_input(codes, dither)), model.decode(lattice_points - dither))


def _lattice_model(prior, objective, posterior=None, outputs=None):
    return LatentVariableModel(GatedDecoder([4], 8), BernoulliLikelihood(), prior, objective,
                               GatedEncoder(outputs or prior.dim, 8), posterior or PointMassPosterior())


def test_latent_dimension_and_algorithm_errors_say_what_works():
    with pytest.raises(ValueError, match="multiple of 8 \\(8, 16, 24"):
        _lattice_model(GaussianProxyLatticePrior(12, lattice="E8"), GaussianProxyLatticeObjective())
    # direct training has a closed form for the integer lattice with a Laplacian S only (the old "A2" + "direct")
    with pytest.raises(ValueError, match="DirectLatticeObjective needs model.prior: lvm.priors.LaplaceLatticePrior"):
        _lattice_model(GaussianProxyLatticePrior(2, lattice="A2"), DirectLatticeObjective())
    with pytest.raises(ValueError, match="needs model.prior: lvm.priors.GaussianProxyLatticePrior"):
        _lattice_model(LaplaceLatticePrior(2), GaussianProxyLatticeObjective())
    with pytest.raises(ValueError, match="LaplaceLatticePrior"):
        GaussianProxyLatticePrior(2, lattice="Z")
    with pytest.raises(ValueError, match="one of"):
        GaussianProxyLatticePrior(8, lattice="D4")
    # the code is a point mass: a Gaussian posterior is refused
    with pytest.raises(ValueError, match="needs model.posterior: lvm.posteriors.PointMassPosterior"):
        _lattice_model(LaplaceLatticePrior(2), DirectLatticeObjective(), DiagonalGaussianPosterior(), outputs=4)
