"""The torus helpers: nearest images agree for tensors and arrays, circular means see across the seam, the
matrix and elementwise forms of the weighted mean agree, and the seam offsets put the square's edges where there are
no points (or no density), move with the points and leave a view that is already good as it is."""

import numpy as np
import pytest
import torch

from lvm.numerics.torus import circular_mean, nearest_image, seam_offsets, translate, weighted_circular_mean


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


def _gap(n: int = 3000, gap: tuple[float, float] = (0.6, 0.7), seed: int = 0) -> np.ndarray:
    """Points ``[n, 1]`` spread uniformly over the circle but for an empty ``gap``."""
    width = gap[1] - gap[0]
    z = np.random.default_rng(seed).uniform(0, 1 - width, (n, 1))
    return np.where(z >= gap[0], z + width, z)


def _circular_distance(a, b) -> np.ndarray:
    return np.abs(nearest_image(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)))


def test_the_seam_of_a_cluster_cut_by_the_edges_moves_into_the_empty_region():
    rng = np.random.default_rng(0)
    z = np.remainder(rng.choice([0.02, 0.98], size=(400, 2)) + rng.normal(0, 0.01, (400, 2)), 1.0)  # [n, d]
    offsets = seam_offsets(z)
    assert offsets.shape == (2,) and (_circular_distance(offsets, 0.5) < 0.05).all()
    shown = translate(z, -offsets)  # [n, d] in [0, 1)
    assert ((shown >= 0) & (shown < 1)).all()
    assert (np.ptp(shown, axis=0) < 0.15).all()  # one contiguous cluster, not two halves at the edges
    torch.testing.assert_close(seam_offsets(torch.tensor(z)), torch.tensor(offsets))  # tensors in, a tensor out


def test_the_seam_lands_in_a_gap_of_evenly_spread_points():
    (offset,) = seam_offsets(_gap())
    assert 0.6 < offset < 0.7
    (narrow,) = seam_offsets(_gap(gap=(0.2, 0.24)))  # narrower than the window
    assert 0.2 < narrow < 0.24


def test_a_density_on_a_grid_puts_the_seam_where_it_is_least():
    centres = (np.arange(40) + 0.5) / 40
    grid = np.stack(np.meshgrid(centres, centres, indexing="ij"), axis=-1).reshape(-1, 2)  # [1600, 2]
    density = np.exp(3 * np.cos(2 * np.pi * (grid[:, 0] - 0.05)))  # least at z1 = 0.55; even along z2 ...
    density *= np.where((grid[:, 1] > 0.6) & (grid[:, 1] < 0.7), 1e-3, 1.0)  # ... but for a band at 0.6-0.7
    offsets = seam_offsets(grid, density)
    assert _circular_distance(offsets[0], 0.55) <= 0.02 and 0.6 < offsets[1] < 0.7
    coarse = (np.arange(16) + 0.5) / 16  # coarser than the window: some windows hold no grid point
    (offset,) = seam_offsets(coarse[:, None], np.exp(3 * np.cos(2 * np.pi * (coarse - 0.3))))
    assert _circular_distance(offset, 0.8) <= 1 / 16
    tensor = seam_offsets(torch.tensor(grid), torch.tensor(density))
    np.testing.assert_allclose(tensor.numpy(), offsets)


@pytest.mark.parametrize("shift", [0.13, 0.37, 0.5, 0.71, 0.999])
def test_moving_the_points_moves_the_seam_with_them(shift):
    z = np.concatenate([_gap(gap=(0.2, 0.26)), _gap(gap=(0.75, 0.81), seed=1)], axis=1)  # [n, 2]
    offsets = seam_offsets(z)
    moved = seam_offsets(translate(z, shift))
    assert (_circular_distance(moved, offsets + shift) <= 0.0101).all()  # within a bin of 1/100
    assert (seam_offsets(z) == offsets).all()  # deterministic


def test_a_view_whose_seam_is_already_empty_stays_as_it_is():
    z = np.random.default_rng(0).uniform(0.1, 0.9, (500, 2))  # nothing near the edges
    assert (seam_offsets(z) == 0).all()
    assert (seam_offsets(np.zeros((0, 3))) == 0).all()  # nothing anywhere
    with pytest.raises(ValueError, match="even number of bins"):
        seam_offsets(z, window=5)
