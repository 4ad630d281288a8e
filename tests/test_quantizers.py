"""Lattice quantizers against brute force and known constants (lattice paper, sections 2-3.5)."""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

from lvm.numerics.quantizers import E8Lattice, HexagonalLattice, IntegerLattice, ProductLattice

pytestmark = pytest.mark.usefixtures("float64")


def _short_vectors(lattice, max_norm):
    """Every vector of the unscaled lattice with squared norm <= max_norm, by enumeration."""
    if isinstance(lattice, E8Lattice):  # D8 u (D8 + 1/2): integer or half-integer coordinates, even sum
        grids = [itertools.product(range(-2, 3), repeat=8), itertools.product((-1.5, -0.5, 0.5, 1.5), repeat=8)]
        points = torch.tensor([p for grid in grids for p in grid if sum(p) % 2 == 0], dtype=torch.float64)
    else:
        bound = 4
        coefficients = torch.tensor(list(itertools.product(range(-bound, bound + 1), repeat=lattice.dim)),
                                    dtype=torch.float64)
        points = coefficients @ lattice.basis
    return points[points.pow(2).sum(-1) <= max_norm + 1e-9]


def _brute_force_nearest(lattice, x, max_norm):
    candidates = _short_vectors(lattice, max_norm)  # [c, m]
    return candidates[torch.cdist(x, candidates).argmin(dim=1)]


LATTICES = {
    "Z": (IntegerLattice(1), 3.0),
    "Z3": (IntegerLattice(3), 6.0),
    "A2": (HexagonalLattice(), 3.0),
    "E8": (E8Lattice(), 6.0),
}


@pytest.mark.parametrize("name", list(LATTICES))
def test_nearest_point_agrees_with_brute_force_and_is_a_lattice_member(name):
    lattice, max_norm = LATTICES[name]
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2000, lattice.dim, generator=generator, dtype=torch.float64) - 0.5
    expected = _brute_force_nearest(lattice, x, max_norm)
    assert torch.allclose(lattice.nearest_point(x), expected, atol=1e-9)
    # far from the origin: K(x + v) = K(x) + v for lattice vectors v
    shift = torch.randint(-50, 50, (2000, lattice.dim), generator=generator).double() @ lattice.basis
    assert torch.allclose(lattice.nearest_point(x + shift), expected + shift, atol=1e-9)
    coordinates = lattice.coordinates(lattice.nearest_point(x + shift))
    assert torch.allclose(lattice.from_coordinates(coordinates, torch.float64), expected + shift, atol=1e-9)
    # scaled lattices: K_{Delta L}(x) = Delta K_L(x / Delta)
    scaled = type(lattice)(lattice.dim, scale=0.3) if isinstance(lattice, IntegerLattice) else type(lattice)(scale=0.3)
    assert torch.allclose(scaled.nearest_point(0.3 * x), 0.3 * expected, atol=1e-9)


def test_product_lattice_quantizes_each_block_with_its_own_scale():
    scales = torch.tensor([0.5, 1.0, 2.0])
    product = ProductLattice(HexagonalLattice(), copies=3, scale=scales)
    near = 0.4 * (torch.rand(500, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64) - 0.5)
    brute = torch.cat([s * _brute_force_nearest(HexagonalLattice(), near[:, 2 * k:2 * k + 2] / s, 3.0)
                       for k, s in enumerate(scales)], dim=1)
    assert torch.allclose(product.nearest_point(near), brute, atol=1e-9)
    shift = torch.cat([s * torch.randint(-20, 20, (500, 2)).double() @ HexagonalLattice().basis for s in scales], dim=1)
    assert torch.allclose(product.nearest_point(near + shift), brute + shift, atol=1e-9)
    assert product.dim == 6 and float(product.volume) == pytest.approx(HexagonalLattice().volume ** 3 * (0.5 * 1.0 * 2.0) ** 2)


@pytest.mark.parametrize("lattice,known", [
    (IntegerLattice(1), 1 / 12), (IntegerLattice(2), 1 / 12), (HexagonalLattice(), 0.0802), (E8Lattice(), 0.0717),
    (ProductLattice(E8Lattice(), 2, scale=0.7), 0.0717),
])
def test_voronoi_samples_are_in_the_cell_and_their_nsm_matches_the_known_constant(lattice, known):
    u = lattice.sample_voronoi(200_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert u.shape == (200_000, lattice.dim)
    assert torch.equal(lattice.nearest_point(u), torch.zeros_like(u))  # U lies in P_0: K(U) = 0
    second_moment = u.pow(2).sum(-1).mean() / lattice.dim
    volume = float(lattice.volume)
    assert (second_moment / volume ** (2 / lattice.dim)).item() == pytest.approx(known, rel=0.01)
    assert lattice.nsm == pytest.approx(known, rel=0.002)


def test_crypto_lemma_quantized_dither_minus_dither_is_distributed_as_y_minus_dither():
    """Lemma 1: K(y + U) - U ~ y - U for U uniform on P_0 (two-sample KS tests, fixed seed)."""
    lattice = HexagonalLattice(scale=0.8)
    y = torch.tensor([0.37, -1.21], dtype=torch.float64)
    u1 = lattice.sample_voronoi(20_000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    u2 = lattice.sample_voronoi(20_000, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    quantized, continuous = lattice.nearest_point(y + u1) - u1, y - u2
    for direction in (torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), torch.tensor([0.6, 0.8])):
        a, b = (quantized @ direction.double()).numpy(), (continuous @ direction.double()).numpy()
        assert ks_2samp(a, b).pvalue > 0.01
    # the quantized point itself is not y - U: it only takes lattice values
    assert len(torch.unique(lattice.nearest_point(y + u1), dim=0)) <= 7


def test_theta_coefficients_match_known_series_and_enumeration():
    assert IntegerLattice(1).theta_coefficients(5).tolist() == [1, 2, 0, 0, 2, 0]
    assert IntegerLattice(2).theta_coefficients(5).tolist() == [1, 4, 4, 0, 4, 8]
    assert HexagonalLattice().theta_coefficients(9).tolist() == [1, 6, 0, 6, 6, 0, 0, 12, 0, 6]
    assert E8Lattice().theta_coefficients(6).tolist() == [1, 0, 240, 0, 2160, 0, 6720]
    assert ProductLattice(IntegerLattice(1), 2).theta_coefficients(5).tolist() == [1, 4, 4, 0, 4, 8]
    e8 = E8Lattice()
    enumerated = _short_vectors(e8, 6.0)
    assert torch.bincount(enumerated.pow(2).sum(-1).round().long(), minlength=7).tolist() == e8.theta_coefficients(6).tolist()
    # the basis generates E8: its rows are E8 vectors and it has E8's volume 1
    assert e8.volume == pytest.approx(1.0)
    assert all(torch.allclose(e8.nearest_point(row[None]), row[None]) for row in e8.basis)
    points = e8.nearest_point(3 * torch.randn(100, 8, dtype=torch.float64))
    assert torch.allclose(e8.squared_norm(points).double(), points.pow(2).sum(-1).round())
    assert math.isclose(HexagonalLattice().volume, math.sqrt(3) / 2)


def test_wrong_dimension_is_a_clear_error():
    with pytest.raises(ValueError, match="quantizes 8-dimensional vectors"):
        E8Lattice().nearest_point(torch.zeros(3, 2))
    assert np.isclose(IntegerLattice(2, scale=0.5).volume, 0.25)


@pytest.mark.parametrize("lattice", [IntegerLattice(2), HexagonalLattice(), E8Lattice()])
def test_short_vectors_are_counted_by_the_theta_series(lattice):
    vectors = lattice.short_vectors(6)
    norms = vectors.pow(2).sum(-1).round().long()
    assert torch.bincount(norms, minlength=7).tolist() == lattice.theta_coefficients(6).tolist()
    assert torch.allclose(lattice.nearest_point(vectors), vectors)
