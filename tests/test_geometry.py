"""Latent geometry (R-VAE paper, eq. 2.5, appendix B, eq. 3.15) against closed forms."""

import math

import pytest
import torch
from torch import nn

from lvm.numerics.geometry import (brownian_motion, curve_energy, curve_length, geodesic, graph_geodesic, log_volume,
                          pullback_metric, spline_basis, straight_line_energy)

pytestmark = pytest.mark.usefixtures("float64")


def _linear(seed=0, d=2, n=5):
    torch.manual_seed(seed)
    layer = nn.Linear(d, n)
    return layer, layer.weight.detach()


def test_linear_decoder_metric_is_w_transpose_w_everywhere():
    decoder, w = _linear()
    std, v = _linear(seed=1)
    z = 3 * torch.randn(7, 2)
    assert torch.allclose(pullback_metric(decoder, z), (w.T @ w).expand(7, 2, 2), atol=1e-12)
    assert torch.allclose(pullback_metric(decoder, z, std), (w.T @ w + v.T @ v).expand(7, 2, 2), atol=1e-12)
    assert torch.allclose(log_volume(decoder, z), 0.5 * torch.logdet(w.T @ w).expand(7), atol=1e-12)


def test_spline_basis_interpolates_its_nodes_and_keeps_lines_straight():
    basis = spline_basis(5, 9)  # points 0, 2, 4, 6, 8 are the knots
    assert torch.allclose(basis[::2], torch.eye(5), atol=1e-12)
    nodes = torch.linspace(0, 1, 5)[:, None] * torch.tensor([[2.0, -1.0]])
    assert torch.allclose(basis @ nodes, torch.linspace(0, 1, 9)[:, None] * torch.tensor([[2.0, -1.0]]), atol=1e-12)


def test_geodesic_of_a_linear_decoder_is_the_straight_line_with_length_w_delta():
    decoder, w = _linear()
    z0, z1 = torch.randn(4, 2), torch.randn(4, 2)
    curve = geodesic(decoder, z0, z1, steps=50)
    line = z0[:, None] + torch.linspace(0, 1, curve.points.shape[1])[None, :, None] * (z1 - z0)[:, None]
    # a line is a minimiser, but not the only spline parametrisation of it: compare the images' distances
    assert (curve.points - line).norm(dim=-1).max() < 0.05
    expected = (z1 - z0) @ w.T  # W (z1 - z0)
    assert torch.allclose(curve.length, expected.norm(dim=-1), rtol=1e-6)
    assert torch.allclose(2 * curve.energy, curve.length**2, rtol=1e-3)  # constant speed: L^2 = 2E


def _bump(z):
    """A surface with a tall bump at the origin: straight lines through it climb over it."""
    return torch.cat([z, 3 * torch.exp(-z.pow(2).sum(-1, keepdim=True))], dim=-1)


def test_optimised_geodesic_is_shorter_than_the_straight_line_on_a_curved_map():
    z0, z1 = torch.tensor([[-2.0, 0.05]]), torch.tensor([[2.0, 0.0]])
    straight = geodesic(_bump, z0, z1, steps=0)
    optimised = geodesic(_bump, z0, z1, steps=300, num_nodes=8, num_points=64)
    assert optimised.length.item() < 0.9 * straight.length.item()
    assert optimised.points[0, :, 1].abs().max() > 0.5  # it goes around the bump
    path, length = graph_geodesic(_bump, z0[0], z1[0], -3.0, 3.0, per_side=81)
    assert length.item() == pytest.approx(optimised.length.item(), rel=0.08)
    assert torch.allclose(path[0], z0[0], atol=0.05) and torch.allclose(path[-1], z1[0], atol=0.05)
    assert curve_length(_bump, path[None]).item() == pytest.approx(length.item(), rel=1e-6)


def test_geodesic_length_is_differentiable_in_the_end_points():
    z0 = torch.tensor([[-1.0, 0.3]], requires_grad=True)
    z1 = torch.tensor([[1.0, 0.0]])
    energy = geodesic(_bump, z0, z1, steps=100).energy.sum()
    (grad,) = torch.autograd.grad(energy, z0)
    eps = 1e-4
    shifted = geodesic(_bump, z0.detach() + torch.tensor([[eps, 0.0]]), z1, steps=100).energy.sum()
    assert grad[0, 0].item() == pytest.approx(((shifted - energy) / eps).item(), rel=0.05)


def test_brownian_step_covariance_matches_the_inverse_metric():
    """eq. 3.15 for a linear decoder: every step is N(0, t / T (W^T W)^{-1})."""
    decoder, w = _linear(n=4)
    torch.manual_seed(0)
    t, steps, n = 0.5, 4, 40_000
    paths = brownian_motion(decoder, torch.zeros(n, 2), t, steps)
    assert paths.shape == (steps + 1, n, 2)
    increments = (paths[1:] - paths[:-1]).reshape(-1, 2)  # [steps * n, 2]
    expected = t / steps * torch.linalg.inv(w.T @ w)
    assert torch.allclose(increments.mean(0), torch.zeros(2), atol=3 * math.sqrt(expected.max() / len(increments)))
    assert torch.allclose(torch.cov(increments.T), expected, rtol=0.03, atol=1e-4)


def test_graph_geodesic_rejects_high_dimensional_latents():
    with pytest.raises(ValueError, match="2-D and 3-D"):
        graph_geodesic(lambda z: z, torch.zeros(4), torch.ones(4))


def test_straight_line_energy_with_known_end_images_equals_the_straight_geodesic():
    z0, z1 = torch.randn(3, 2), torch.randn(3, 2)
    reference = geodesic(_bump, z0, z1, steps=0, num_points=7).energy
    assert torch.allclose(straight_line_energy(_bump, z0, z1, _bump(z0), _bump(z1), 7), reference, atol=1e-12)


def test_straight_line_energy_gradients_equal_those_of_the_curve_energy():
    """The time-major straight-line energy and :func:`curve_energy` of the same polyline: same gradients with
    respect to both end points and the decoder's parameters (the end images are differentiable inputs)."""
    torch.manual_seed(0)
    decoder = nn.Sequential(nn.Linear(2, 5), nn.Tanh(), nn.Linear(5, 4))
    z0, z1 = torch.randn(3, 2, requires_grad=True), torch.randn(3, 2, requires_grad=True)

    def gradients(energy):
        decoder.zero_grad()
        z0.grad = z1.grad = None
        energy.sum().backward()
        return [z0.grad.clone(), z1.grad.clone(), *(p.grad.clone() for p in decoder.parameters())]

    fractions = torch.linspace(0, 1, 7)[None, :, None]
    points = z0[:, None] + fractions * (z1 - z0)[:, None]  # [3, 7, 2]
    reference = gradients(curve_energy(decoder, points))
    fast = gradients(straight_line_energy(decoder, z0, z1, decoder(z0), decoder(z1), 7))
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(fast, reference))
