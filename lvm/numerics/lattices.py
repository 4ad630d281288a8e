"""Rank-1 lattice rules on the unit torus [0, 1)^d (QLVM paper, appendix A.1).

A rank-1 lattice rule with generator ``b`` has the points ``u_j = j b / m mod 1``
for ``j = 0, ..., m - 1``. Korobov rules use ``b = (1, a, a^2 mod m, ..., a^{d-1} mod m)``;
the Fibonacci rule is the Korobov rule with ``d = 2``, ``m = F_k`` and ``a = F_{k-1}``.
Randomized QMC (RQMC) adds one uniform shift ``Delta`` to all points modulo 1:
``z_j = u_j + Delta - floor(u_j + Delta)``, so that every point is marginally uniform
(eq. 6 then holds as an equality in expectation) while the set keeps its even spacing.
"""

from __future__ import annotations

import bisect
import functools
import math

import numpy as np
import torch

__all__ = [
    "MAX_LATTICE_DIM",
    "fibonacci",
    "fibonacci_numbers",
    "korobov",
    "korobov_generator",
    "lattice_rule",
    "default_num_points",
    "random_shift",
    "monte_carlo",
    "PointSet",
]

MAX_LATTICE_DIM = 3  # dense lattices resolve a posterior (eq. 5) in practice up to this latent dimension

_DEFAULT_NUM_POINTS = {1: 1024, 2: 6765, 3: 10007}


def fibonacci_numbers(limit: int = 10**9) -> list[int]:
    """Fibonacci numbers ``F_3 = 2, F_4 = 3, 5, 8, ...`` up to ``limit`` (the usable sizes)."""
    numbers = [1, 2]
    while numbers[-1] + numbers[-2] <= limit:
        numbers.append(numbers[-1] + numbers[-2])
    return numbers[1:]


def _rank1_points(m: int, generator: list[int]) -> torch.Tensor:
    """Points ``j b / m mod 1`` computed exactly in integer arithmetic.  # [m, d] float64"""
    j = torch.arange(m, dtype=torch.int64)[:, None]  # [m, 1]
    b = torch.tensor(generator, dtype=torch.int64)[None, :]  # [1, d]
    return ((j * b) % m).double() / m


def fibonacci(m: int) -> torch.Tensor:
    """The 2-D Fibonacci lattice with ``m = F_k`` points and generator ``(1, F_{k-1})``.

    Returns a float64 tensor of shape ``[m, 2]`` in ``[0, 1)^2``. Any ``m`` that is not a
    Fibonacci number raises a ``ValueError`` naming the nearest valid sizes.
    """
    numbers = fibonacci_numbers(max(m, 3) * 2)
    if m not in numbers:
        i = bisect.bisect_left(numbers, m)
        nearby = [numbers[k] for k in (i - 1, i) if 0 <= k < len(numbers)]
        raise ValueError(
            f"A Fibonacci lattice needs m to be a Fibonacci number; got m={m}. "
            f"Nearest valid values: {' or '.join(map(str, nearby))} "
            f"(e.g. 144, 610, 2584, 6765, 10946)."
        )
    previous = numbers[numbers.index(m) - 1] if m > 2 else 1
    return _rank1_points(m, [1, previous])


def _min_toroidal_distance(m: int, generator: np.ndarray, max_j: int) -> float:
    """Shortest nonzero vector of the rank-1 lattice, searched over ``j <= max_j``.

    Because ``b_1 = 1`` the first coordinate of point ``j`` is ``j / m``, so a vector shorter
    than ``r`` needs ``min(j, m - j) < r m``: the search over ``j <= max_j`` is exact when
    ``max_j >= r m`` for an upper bound ``r`` on the minimum distance.
    """
    j = np.arange(1, max_j + 1)[:, None]  # [max_j, 1]
    frac = (j * generator[None, :] % m) / m  # [max_j, d]
    centered = np.minimum(frac, 1.0 - frac)
    return float(np.sqrt((centered**2).sum(axis=1)).min())


@functools.lru_cache(maxsize=64)
def korobov_generator(m: int, d: int) -> int:
    """The Korobov multiplier ``a`` that maximises the minimum toroidal distance between points.

    Figure of merit: the length of the shortest nonzero lattice vector on the torus (the packing
    radius times two), i.e. the rule whose points are most evenly spread. Ties go to the
    smallest ``a``. Only ``a <= m / 2`` is searched (``a`` and ``m - a`` give mirrored rules).
    The search is exact and costs ``O(m * J * d)`` with ``J = r_max * m`` from the sphere
    packing bound ``m * vol(ball(r/2)) <= 1``. Results are cached per ``(m, d)``.
    """
    if d == 1 or m <= 3:
        return 1
    ball_volume = math.pi ** (d / 2) / math.gamma(d / 2 + 1)
    r_max = 2.0 * (1.0 / (m * ball_volume)) ** (1.0 / d)
    max_j = min(m - 1, int(math.ceil(r_max * m)) + 1)
    best_a, best_distance = 1, -1.0
    for a in range(2, m // 2 + 1):
        if math.gcd(a, m) != 1:
            continue
        generator = np.array([pow(a, k, m) for k in range(d)], dtype=np.int64)
        distance = _min_toroidal_distance(m, generator, max_j)
        if distance > best_distance:
            best_a, best_distance = a, distance
    return best_a


def korobov(m: int, d: int, a: int | None = None) -> torch.Tensor:
    """Korobov lattice rule with ``m`` points in ``d`` dimensions (appendix A.1).

    Generator ``b = (1, a, a^2 mod m, ..., a^{d-1} mod m)``. When ``a`` is not given it is
    chosen by :func:`korobov_generator` (maximal minimum toroidal distance). Returns float64
    ``[m, d]`` points in ``[0, 1)^d``.
    """
    if m < 1 or d < 1:
        raise ValueError(f"korobov needs m >= 1 and d >= 1; got m={m}, d={d}.")
    if a is None:
        a = korobov_generator(m, d)
    elif not 1 <= a < max(m, 2):
        raise ValueError(f"The Korobov multiplier must satisfy 1 <= a < m={m}; got a={a}.")
    return _rank1_points(m, [pow(a, k, m) for k in range(d)])


def lattice_rule(m: int, d: int) -> torch.Tensor:
    """The rule the paper uses for a ``d``-dimensional latent space: Fibonacci in 2-D
    (``m`` must be a Fibonacci number), Korobov with an optimised multiplier otherwise."""
    return fibonacci(m) if d == 2 else korobov(m, d)


def default_num_points(d: int) -> int:
    """Dense evaluation sizes: ``m = 6765`` (Fibonacci) in 2-D, a Korobov rule in 1-D and 3-D."""
    if d not in _DEFAULT_NUM_POINTS:
        raise ValueError(
            f"QMC integration is only practical in low dimension; got a {d}-D latent space. "
            "Pass num_points explicitly (the number of points must grow exponentially with d)."
        )
    return _DEFAULT_NUM_POINTS[d]


def random_shift(points: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Randomly shifted copy ``u + Delta - floor(u + Delta)``, ``Delta ~ U[0,1)^d`` (A.1)."""
    shift = torch.rand(points.shape[-1], generator=generator, dtype=points.dtype, device="cpu")
    return torch.remainder(points + shift.to(points.device), 1.0)


def monte_carlo(m: int, d: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``m`` independent uniform points in ``[0, 1)^d`` (the plain MC baseline of Fig. A7)."""
    return torch.rand(m, d, generator=generator, dtype=torch.float64)


class PointSet:
    """Where the latent points of one batch come from (the three conditions of Fig. A7).

    ``"rqmc"``: the lattice rule with a fresh random shift per call (the paper's default);
    ``"qmc"``: the fixed, unshifted lattice; ``"mc"``: fresh independent uniform points.
    """

    kinds = ("rqmc", "qmc", "mc")

    def __init__(self, num_points: int, dim: int, kind: str = "rqmc"):
        if kind not in self.kinds:
            raise ValueError(f"Unknown point set kind {kind!r}; choose one of {self.kinds}.")
        self.num_points, self.dim, self.kind = num_points, dim, kind
        self.lattice = None if kind == "mc" else lattice_rule(num_points, dim)

    def draw(self) -> torch.Tensor:
        """Points in ``[0, 1)^d`` as float64 ``[m, d]`` on the CPU."""
        if self.kind == "mc":
            return monte_carlo(self.num_points, self.dim)
        if self.kind == "qmc":
            return self.lattice
        return random_shift(self.lattice)
