"""Lattice quantizers for discrete latent representations ("Lattice Representation
Learning", Lastras, 2020, sections 2, 3.4, 3.5 and 4.1).

A lattice is {i B : i in Z^m} for a full-rank basis B whose rows generate it; scaled by Delta it is
{i Delta B}. Each quantizer provides the nearest-point map K (Conway & Sloane's fast decoders), a
uniform sampler over the Voronoi cell P_0 (the dither U), the cell volume |det Delta B|, the normalised
second moment G = sigma^2 / V^(2/m) and the theta-series coefficients (the number of lattice vectors of
each squared norm, for the unscaled lattice), all batched over arbitrary leading dimensions.

* :class:`IntegerLattice` Z^n: rounding; G = 1/12.
* :class:`HexagonalLattice` A_2 with the basis [[0, 1], [sqrt(3/4), 1/2]]: the union of the rectangular
  lattice sqrt(3) Z x Z and its translate by (sqrt(3)/2, 1/2); round in both cosets and keep the closer
  point; G = 5 / (36 sqrt 3). Squared norms i^2 + ij + j^2 are integers.
* :class:`E8Lattice` with the basis of section 2: E_8 = D_8 u (D_8 + 1/2); D_8's decoder rounds every
  coordinate and, if the sum is odd, re-rounds the worst coordinate the other way; G = 929 / 12960.
* :class:`ProductLattice` diag(Delta_1 B, ..., Delta_k B) (section 4.1): k copies of a base lattice with
  a scale each, covering a (k m)-dimensional latent space.
"""

from __future__ import annotations

import math

import torch

__all__ = ["Quantizer", "IntegerLattice", "HexagonalLattice", "E8Lattice", "ProductLattice"]


def _scale(scale, x: torch.Tensor) -> torch.Tensor | float:
    return scale.to(x) if isinstance(scale, torch.Tensor) else scale


class Quantizer:
    """Base class. Subclasses set ``dim``, ``basis`` ([m, m] rows, unscaled), ``nsm`` and implement
    :meth:`_nearest_unscaled` and :meth:`_theta_unscaled`.

    Args:
        scale: Delta, a float or a tensor broadcastable to the last dimension (per-coordinate scales).
    """

    dim: int
    basis: torch.Tensor
    nsm: float

    def __init__(self, scale: float | torch.Tensor = 1.0):
        self.scale = scale

    def _nearest_unscaled(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _theta_unscaled(self, max_norm: int) -> torch.Tensor:
        raise NotImplementedError

    def nearest_point(self, x: torch.Tensor) -> torch.Tensor:
        """K(x): the nearest lattice point (in the L2 norm) to each ``x: [..., m]``."""
        if x.shape[-1] != self.dim:
            raise ValueError(f"{type(self).__name__} quantizes {self.dim}-dimensional vectors; got shape {list(x.shape)}.")
        scale = _scale(self.scale, x)
        return scale * self._nearest_unscaled(x / scale)

    def coordinates(self, points: torch.Tensor) -> torch.Tensor:
        """Integer coordinates ``i`` (int64) of lattice points ``points = i Delta B`` — the discrete code."""
        unscaled = points / _scale(self.scale, points)
        return torch.round(unscaled @ torch.linalg.inv(self.basis.to(points))).long()  # i = p B^-1

    def from_coordinates(self, coordinates: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        """The lattice points ``i Delta B`` of integer coordinates ``[..., m]``."""
        basis = self.basis.to(dtype=dtype, device=coordinates.device)
        return coordinates.to(dtype) @ basis * _scale(self.scale, basis)

    def sample_voronoi(self, n: int, generator: torch.Generator | None = None, dtype=torch.float32,
                       device=None) -> torch.Tensor:
        """``n`` points ``[n, m]`` uniform over the Voronoi cell P_0 (the dither U): a uniform point of
        the fundamental parallelepiped minus its nearest lattice point (a measure-preserving map onto
        P_0, appendix 8.1)."""
        r = torch.rand(n, self.dim, generator=generator, dtype=torch.float64)
        u = r @ self.basis.double()
        cell = u - self._nearest_unscaled(u)
        return (cell.to(dtype=dtype, device=device) * _scale(self.scale, cell.to(dtype=dtype, device=device)))

    @property
    def volume(self) -> float | torch.Tensor:
        """|det(Delta B)|, the volume of a cell."""
        unscaled = abs(torch.linalg.det(self.basis.double()).item())
        scale = self.scale
        if isinstance(scale, torch.Tensor):
            return unscaled * torch.broadcast_to(scale, (self.dim,)).prod()
        return unscaled * scale**self.dim

    def theta_coefficients(self, max_norm: int) -> torch.Tensor:
        """Number of vectors of the unscaled lattice of each squared norm 0..max_norm, int64 ``[max_norm + 1]``."""
        return self._theta_unscaled(max_norm)

    def short_vectors(self, max_norm: int) -> torch.Tensor:
        """Every vector of the unscaled lattice with squared norm <= ``max_norm``, float64 ``[n, m]``
        (small integer coefficients of the basis; E_8 overrides it with its two cosets)."""
        bound = math.isqrt(4 * max_norm) + 1
        grid = torch.cartesian_prod(*[torch.arange(-bound, bound + 1)] * self.dim).reshape(-1, self.dim)
        points = grid.double() @ self.basis.double()
        return points[points.pow(2).sum(-1) <= max_norm + 1e-9]

    def squared_norm(self, points: torch.Tensor) -> torch.Tensor:
        """The unscaled squared norms ``[...]`` of lattice points (integers for these lattices), the
        index into the theta series (section 3.4, "with proper de-scaling")."""
        return torch.round((points / _scale(self.scale, points)).pow(2).sum(-1)).long()


def _sum_of_squares_counts(n: int, max_norm: int) -> torch.Tensor:
    """r_n(k): representations of k as an ordered sum of n squares of integers, k = 0..max_norm."""
    one = torch.zeros(max_norm + 1, dtype=torch.int64)
    for a in range(-math.isqrt(max_norm), math.isqrt(max_norm) + 1):
        one[a * a] += 1
    counts = torch.zeros(max_norm + 1, dtype=torch.int64)
    counts[0] = 1
    for _ in range(n):
        counts = _convolve(counts, one, max_norm)
    return counts


def _convolve(a: torch.Tensor, b: torch.Tensor, max_norm: int) -> torch.Tensor:
    out = torch.zeros(max_norm + 1, dtype=torch.int64)
    for k in range(max_norm + 1):
        out[k] = (a[: k + 1] * b[: k + 1].flip(0)).sum()
    return out


class IntegerLattice(Quantizer):
    """Z^n scaled by Delta: K rounds every coordinate."""

    nsm = 1 / 12

    def __init__(self, n: int = 1, scale: float | torch.Tensor = 1.0):
        super().__init__(scale)
        if n < 1:
            raise ValueError(f"IntegerLattice needs n >= 1; got {n}.")
        self.dim, self.basis = n, torch.eye(n, dtype=torch.float64)

    def _nearest_unscaled(self, x):
        return torch.round(x)

    def _theta_unscaled(self, max_norm):
        return _sum_of_squares_counts(self.dim, max_norm)


class HexagonalLattice(Quantizer):
    """A_2 with the basis [[0, 1], [sqrt(3/4), 1/2]] (minimum norm 1, squared norms i^2 + ij + j^2)."""

    dim = 2
    nsm = 5 / (36 * math.sqrt(3))

    def __init__(self, scale: float | torch.Tensor = 1.0):
        super().__init__(scale)
        self.basis = torch.tensor([[0.0, 1.0], [math.sqrt(0.75), 0.5]], dtype=torch.float64)

    def _nearest_unscaled(self, x):
        step = torch.tensor([math.sqrt(3.0), 1.0], dtype=x.dtype, device=x.device)  # the rectangular sublattice
        shift = torch.tensor([math.sqrt(3.0) / 2, 0.5], dtype=x.dtype, device=x.device)
        first = torch.round(x / step) * step
        second = torch.round((x - shift) / step) * step + shift
        closer = ((x - first).pow(2).sum(-1) <= (x - second).pow(2).sum(-1)).unsqueeze(-1)
        return torch.where(closer, first, second)

    def _theta_unscaled(self, max_norm):
        counts = torch.zeros(max_norm + 1, dtype=torch.int64)
        bound = math.isqrt(4 * max_norm // 3 + 1) + 1  # i^2 + ij + j^2 >= 3/4 max(i, j)^2
        for i in range(-bound, bound + 1):
            for j in range(-bound, bound + 1):
                norm = i * i + i * j + j * j
                if norm <= max_norm:
                    counts[norm] += 1
        return counts


def _nearest_d(x: torch.Tensor) -> torch.Tensor:
    """Nearest point of D_n = {v in Z^n : sum v even} (Conway & Sloane, ch. 20): round; if the sum is
    odd, round the coordinate farthest from an integer the other way."""
    rounded = torch.round(x)
    error = x - rounded
    worst = error.abs().argmax(dim=-1, keepdim=True)
    away = torch.where(error.gather(-1, worst) >= 0, 1.0, -1.0).to(x)  # the other way from rounding
    flipped = rounded.scatter_add(-1, worst, away)
    odd = (rounded.sum(-1, keepdim=True).remainder(2) != 0)
    return torch.where(odd, flipped, rounded)


class E8Lattice(Quantizer):
    """E_8 with the basis of section 2 (det 1, minimum norm 2 with 240 vectors): the closer of the
    nearest points in D_8 and in D_8 + (1/2, ..., 1/2)."""

    dim = 8
    nsm = 929 / 12960

    def __init__(self, scale: float | torch.Tensor = 1.0):
        super().__init__(scale)
        basis = torch.zeros(8, 8, dtype=torch.float64)
        basis[0, 0] = 2.0
        for row in range(1, 7):
            basis[row, row - 1], basis[row, row] = -1.0, 1.0
        basis[7] = 0.5
        self.basis = basis

    def _nearest_unscaled(self, x):
        first = _nearest_d(x)
        second = _nearest_d(x - 0.5) + 0.5
        closer = ((x - first).pow(2).sum(-1) <= (x - second).pow(2).sum(-1)).unsqueeze(-1)
        return torch.where(closer, first, second)

    def short_vectors(self, max_norm):
        """D_8 u (D_8 + 1/2) vectors of squared norm <= max_norm (coordinates bounded by sqrt(max_norm))."""
        bound = math.isqrt(max_norm)
        integer = torch.arange(-bound, bound + 1, dtype=torch.float64)
        half = torch.arange(-bound, bound, dtype=torch.float64) + 0.5
        points = torch.cat([torch.cartesian_prod(*[values] * 8) for values in (integer, half)])
        even = points.sum(-1).remainder(2) == 0
        return points[even & (points.pow(2).sum(-1) <= max_norm + 1e-9)]

    def _theta_unscaled(self, max_norm):
        """1 + 240 sum_k sigma_3(k) q^(2k): the E_8 theta series (norms are even)."""
        counts = torch.zeros(max_norm + 1, dtype=torch.int64)
        counts[0] = 1
        for k in range(1, max_norm // 2 + 1):
            counts[2 * k] = 240 * sum(divisor**3 for divisor in range(1, k + 1) if k % divisor == 0)
        return counts


class ProductLattice(Quantizer):
    """diag(Delta_1 B, ..., Delta_k B): ``copies`` copies of ``base`` (section 4.1), with one scale per
    copy (``scale``: a float or a tensor ``[copies]``) on top of the base's own. Vectors are
    ``[..., copies * m]``; each block of m coordinates is quantized by the base lattice."""

    def __init__(self, base: Quantizer, copies: int, scale: float | torch.Tensor = 1.0):
        if copies < 1:
            raise ValueError(f"ProductLattice needs copies >= 1; got {copies}.")
        self.base, self.copies = base, copies
        self.dim, self.nsm = copies * base.dim, base.nsm
        self.basis = torch.block_diag(*[base.basis] * copies)
        per_copy = torch.as_tensor(scale, dtype=torch.float64).expand(copies)
        base_scale = torch.as_tensor(base.scale, dtype=torch.float64).expand(base.dim)
        super().__init__((per_copy[:, None] * base_scale[None, :]).reshape(-1))  # one scale per coordinate

    def _nearest_unscaled(self, x):
        blocks = x.unflatten(-1, (self.copies, self.base.dim))  # [..., copies, m]
        return self.base._nearest_unscaled(blocks).flatten(-2)

    def _theta_unscaled(self, max_norm):
        one, counts = self.base._theta_unscaled(max_norm), torch.zeros(max_norm + 1, dtype=torch.int64)
        counts[0] = 1
        for _ in range(self.copies):
            counts = _convolve(counts, one, max_norm)
        return counts
