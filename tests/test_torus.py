"""The torus helpers: nearest images agree for tensors and arrays, circular means see across the seam, and the
matrix and elementwise forms of the weighted mean agree."""

import numpy as np
import torch

from lvm.numerics.torus import circular_mean, nearest_image, weighted_circular_mean


def test_nearest_image_is_the_shortest_displacement_for_tensors_and_arrays():
    offsets = torch.linspace(-3.2, 3.2, 641, dtype=torch.float64)
    images = nearest_image(offsets)
    assert ((images >= -0.5) & (images < 0.5)).all()
    shift = images - offsets
    assert torch.allclose(shift, torch.round(shift), atol=1e-9)  # the same point of the torus
    np.testing.assert_allclose(nearest_image(offsets.numpy()), images.numpy(), atol=1e-12)


def test_circular_mean_sees_across_the_seam():
    z = torch.tensor([[0.95, 0.5], [0.05, 0.5], [0.99, 0.5], [0.01, 0.5]], dtype=torch.float64)  # [n, d]
    mean = circular_mean(z)
    assert min(mean[0].item(), 1 - mean[0].item()) < 1e-12 and abs(mean[1].item() - 0.5) < 1e-12
    assert abs(z[:, 0].mean().item() - 0.5) < 1e-12  # what the arithmetic mean would say


def test_matrix_and_elementwise_weighted_means_agree():
    generator = torch.Generator().manual_seed(0)
    z = torch.rand(50, 3, generator=generator, dtype=torch.float64)  # [m, d]
    weights = torch.softmax(torch.randn(4, 50, generator=generator, dtype=torch.float64), dim=1)  # [b, m]
    matrix = weighted_circular_mean(z, weights)  # [b, d]
    elementwise = circular_mean(z[:, None, :].expand(50, 4, 3), weights.T[:, :, None], dim=0)  # [m, b, d], [m, b, 1]
    torch.testing.assert_close(matrix, elementwise)
    one_hot = torch.eye(50, dtype=torch.float64)[:4]  # all weight on one point: the point itself
    torch.testing.assert_close(weighted_circular_mean(z, one_hot), z[:4])
