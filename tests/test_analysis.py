"""Posterior analyses (QLVM appendices A.2 and C) on known densities and decoders."""

import math

import pytest
import torch
from torch import nn

from lvm.analysis.landscape import aggregated_posterior, density_geodesic, jacobian_frobenius_norm, weighted_mean_shift
from lvm.numerics.lattices import fibonacci
from lvm.likelihoods import GaussianLikelihood
from lvm.model import LatentVariableModel
from lvm.networks import MLPDecoder
from lvm.priors import StandardNormalPrior, TorusPrior
from lvm.objectives import QMCObjective

pytestmark = pytest.mark.usefixtures("float64")


def _bumps(points, centres, width=0.05):
    delta = points[None] - torch.tensor(centres)[:, None]
    delta = delta - torch.round(delta)  # on the torus
    return torch.exp(-delta.pow(2).sum(-1) / (2 * width**2)).sum(0)


def test_weighted_mean_shift_finds_both_modes_of_a_two_bump_density():
    points = fibonacci(2584)
    density = _bumps(points, [[0.25, 0.3], [0.7, 0.75]])
    modes, weights = weighted_mean_shift(points, density / density.sum(), bandwidth=0.1, periodic=True)
    assert len(modes) == 2
    found = sorted(modes.tolist())
    assert found[0] == pytest.approx([0.25, 0.3], abs=0.01) and found[1] == pytest.approx([0.7, 0.75], abs=0.01)
    # a bump across the seam of the torus is one mode, at the seam
    seam = _bumps(points, [[0.99, 0.5]])
    (mode,), _ = weighted_mean_shift(points, seam, bandwidth=0.1, periodic=True)
    assert min(mode[0].item(), 1 - mode[0].item()) < 0.01 and mode[1].item() == pytest.approx(0.5, abs=0.01)


def test_density_geodesic_goes_around_a_low_density_band():
    points = fibonacci(987)
    x, y = points[:, 0], points[:, 1]
    density = torch.ones(len(points))
    band = (x > 0.45) & (x < 0.55) & (y < 0.8)  # a wall of low density with a dense gap at the top
    density[band] = 1e-4
    start, end = torch.tensor([0.2, 0.2]), torch.tensor([0.8, 0.2])
    path = density_geodesic(points, density, start, end, radius=0.05, periodic=False)
    inside = (path[:, 0] > 0.45) & (path[:, 0] < 0.55)
    assert inside.any() and (path[inside, 1] >= 0.8).all()  # crosses only through the gap
    straight = density_geodesic(points, torch.ones(len(points)), start, end, radius=0.05)
    assert path[:, 1].max() > 0.75 and straight[:, 1].max() < 0.4  # without the wall it goes straight


def test_jacobian_norm_of_a_linear_decoder_is_the_frobenius_norm_of_w():
    decoder = nn.Linear(2, 7)
    model = LatentVariableModel(decoder, GaussianLikelihood(0.1, "identity"), StandardNormalPrior(2), QMCObjective(89))
    z = 3 * torch.randn(50, 2)
    expected = decoder.weight.detach().norm()
    assert torch.allclose(jacobian_frobenius_norm(model, z, chunk_size=16), expected.expand(50), rtol=1e-10)


def test_aggregated_posterior_is_the_mean_of_the_posteriors():
    torch.manual_seed(0)
    model = LatentVariableModel(MLPDecoder([6], [8]), GaussianLikelihood(0.1), TorusPrior(2), QMCObjective(89))
    x = model.sample(10) + 0.1 * torch.randn(10, 6)
    points, density = aggregated_posterior(model, [(x[:4],), (x[4:],)], num_points=233)
    _, weights = model.posterior_on_lattice(x, 233)
    assert torch.allclose(density, weights.mean(0)) and math.isclose(density.sum().item(), 1.0, rel_tol=1e-9)
    assert points.shape == (233, 2)
