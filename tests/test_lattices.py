import math

import numpy as np
import pytest
import torch
from scipy.special import i0

from lvm.numerics.lattices import (
    PointSet, default_num_points, fibonacci, fibonacci_numbers, korobov, korobov_generator, lattice_rule,
    monte_carlo, random_shift,
)


def _integer_points(points: torch.Tensor, m: int) -> set[tuple[int, ...]]:
    return {tuple(row) for row in torch.round(points * m).long().tolist()}


@pytest.mark.parametrize("m", [13, 89, 610])
def test_fibonacci_points_distinct_closed_and_generated_by_previous_fibonacci(m):
    points = fibonacci(m)
    assert points.shape == (m, 2)
    assert ((points >= 0) & (points < 1)).all()
    integer = _integer_points(points, m)
    assert len(integer) == m  # distinct
    previous = fibonacci_numbers()[fibonacci_numbers().index(m) - 1]
    assert torch.allclose(points[1], torch.tensor([1.0, previous], dtype=torch.float64) / m)
    # closed under addition mod 1: every pairwise sum is again a lattice point
    idx = torch.randint(0, m, (500, 2), generator=torch.Generator().manual_seed(0))
    sums = torch.remainder(points[idx[:, 0]] + points[idx[:, 1]], 1.0)
    assert _integer_points(sums, m) <= integer


def test_fibonacci_rejects_non_fibonacci_sizes_naming_neighbours():
    with pytest.raises(ValueError, match="89 or 144"):
        fibonacci(100)
    with pytest.raises(ValueError, match="6765 or 10946"):
        fibonacci(7000)


def _smooth_periodic(z: torch.Tensor) -> torch.Tensor:
    """prod_k exp(cos 2 pi z_k); its integral over the unit cube is I0(1)^d."""
    return torch.exp(torch.cos(2 * math.pi * z)).prod(-1)


@pytest.mark.parametrize("d,m", [(2, 610), (3, 1009)])
def test_randomized_lattice_integration_beats_monte_carlo_by_orders_of_magnitude(d, m):
    exact = i0(1.0) ** d
    torch.manual_seed(0)
    lattice = lattice_rule(m, d)
    lattice_err = torch.stack([_smooth_periodic(random_shift(lattice)).mean() - exact for _ in range(30)])
    mc_err = torch.stack([_smooth_periodic(monte_carlo(m, d)).mean() - exact for _ in range(30)])
    lattice_rmse, mc_rmse = lattice_err.pow(2).mean().sqrt(), mc_err.pow(2).mean().sqrt()
    assert mc_rmse > 1e-3  # MC error ~ sigma / sqrt(m)
    assert lattice_rmse < mc_rmse * 1e-3


def _min_distance_brute_force(points: torch.Tensor) -> float:
    diff = points[:, None, :] - points[None, :, :]
    diff = torch.minimum(diff.abs(), 1 - diff.abs())
    dist = diff.pow(2).sum(-1).sqrt()
    dist.fill_diagonal_(float("inf"))
    return dist.min().item()


@pytest.mark.parametrize("m,d", [(101, 3), (128, 3), (97, 2)])
def test_korobov_generator_maximises_min_toroidal_distance_over_all_multipliers(m, d):
    a = korobov_generator(m, d)
    chosen = _min_distance_brute_force(korobov(m, d, a))
    best = max(_min_distance_brute_force(korobov(m, d, b)) for b in range(2, m) if math.gcd(b, m) == 1)
    assert chosen == pytest.approx(best, rel=1e-12)
    assert korobov(m, d, a)[1].tolist() == pytest.approx([1 / m, a / m, pow(a, 2, m) / m][:d])


def test_korobov_matches_fibonacci_for_fibonacci_multiplier():
    assert torch.equal(korobov(233, 2, a=144), fibonacci(233))


def test_point_sets_for_the_fig_a7_ablation():
    fixed = PointSet(89, 2, "qmc")
    assert torch.equal(fixed.draw(), fixed.draw())
    shifted = PointSet(89, 2, "rqmc").draw()
    shift = torch.remainder(shifted - fibonacci(89), 1.0)
    assert torch.allclose(shift, shift[:1].expand_as(shift), atol=1e-12)  # one common shift
    mc = PointSet(89, 2, "mc")
    assert not torch.equal(mc.draw(), mc.draw())
    with pytest.raises(ValueError, match="rqmc"):
        PointSet(89, 2, "sobol")


def test_default_sizes_and_high_dimension_error():
    assert default_num_points(2) == 6765
    assert fibonacci(default_num_points(2)).shape == (6765, 2)
    with pytest.raises(ValueError, match="num_points"):
        default_num_points(8)
    assert np.unique(korobov(default_num_points(3), 3).numpy(), axis=0).shape[0] == default_num_points(3)
