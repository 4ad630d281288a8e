"""Riemannian geometry of a decoder's latent space ("Variational
Autoencoders with Riemannian Brownian Motion Priors", Kalatzis, Eklund, Arvanitidis and Hauberg, 2020,
arXiv:2002.05227, sections 2.3 and 3, appendix B).

A decoder with mean mu(z) and, optionally, standard deviation sigma(z) is the immersion
z -> (mu(z), sigma(z)) (eq. 2.4); its pull-back metric is

    G(z) = J_mu(z)^T J_mu(z) + J_sigma(z)^T J_sigma(z)                                  (eq. 2.5)

Lengths and energies of latent curves are those of their images in the ambient space, so for a
discretised curve gamma(t_0) .. gamma(t_{T-1}) on a uniform grid of [0, 1] (step h)

    length = sum_i |F(gamma_{i+1}) - F(gamma_i)|,   energy = 1/2 sum_i |F(gamma_{i+1}) - F(gamma_i)|^2 / h,

F = (mu, sigma), which converge to the integrals of |gamma'|_G and 1/2 gamma'^T G gamma' (B.1)
without any Jacobian. Geodesics minimise the energy over cubic splines with fixed end points,
initialised as the straight line (appendix B); for a constant-speed geodesic length^2 = 2 energy.
A graph alternative for 2-D/3-D latents runs Dijkstra on a grid (:func:`graph_geodesic`).

Every function takes plain callables ``decoder: [n, d] -> [n, D]`` (and ``std_decoder``), batched
over leading examples.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.interpolate import CubicSpline
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from lvm.numerics.jacobians import forward_jacobian

__all__ = [
    "pullback_metric", "log_volume", "image_and_log_volume", "immersion", "Immersion", "curve_length", "curve_energy",
    "straight_line_energy", "spline_basis", "Geodesic",
    "geodesic", "graph_geodesic", "brownian_motion",
]

Map = Callable[[torch.Tensor], torch.Tensor]


def pullback_metric(decoder: Map, z: torch.Tensor, std_decoder: Map | None = None) -> torch.Tensor:
    """``G(z) = J_mu^T J_mu (+ J_sigma^T J_sigma)`` at ``z: [b, d]`` -> ``[b, d, d]`` (eq. 2.5), from
    d forward-mode Jacobian-vector products per network (``torch.func``); differentiable."""
    _, jacobian = forward_jacobian(decoder, z)  # [b, D, d]
    metric = jacobian.mT @ jacobian
    if std_decoder is not None:
        _, std_jacobian = forward_jacobian(std_decoder, z)
        metric = metric + std_jacobian.mT @ std_jacobian
    return metric


def log_volume(decoder: Map, z: torch.Tensor, std_decoder: Map | None = None) -> torch.Tensor:
    """The log Riemannian volume element ``1/2 log det G(z)``, ``[b]``."""
    return 0.5 * torch.linalg.slogdet(pullback_metric(decoder, z, std_decoder))[1]


def image_and_log_volume(immersion: Map, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The image ``F(z): [b, D]`` and ``1/2 log det(J_F^T J_F)``: ``[b]`` from one forward-mode pass."""
    image, jacobian = forward_jacobian(immersion, z)  # [b, D], [b, D, d]
    return image, 0.5 * torch.linalg.slogdet(jacobian.mT @ jacobian)[1]


def immersion(decoder: Map, std_decoder: Map | None = None) -> Map:
    """``z -> (mu(z), sigma(z))`` concatenated ``[n, D (+ D)]`` (eq. 2.4), whose Euclidean geometry the
    latent space inherits."""
    if std_decoder is None:
        return decoder
    return lambda z: torch.cat([decoder(z), std_decoder(z)], dim=-1)


@dataclass(frozen=True)
class Immersion:
    """A decoder's immersion ``z [n, d] -> F(z) [n, D']`` as a callable, with the tensors it depends on (the decoder's
    parameters and buffers): what a component defined through the decoder's geometry (the Brownian-motion prior, the
    Brownian-step posterior) receives from the model that holds them, instead of the model itself. A component that
    caches what it derives from the map keeps a :class:`lvm.numerics.snapshots.TensorSnapshot` of ``tensors`` beside it
    (an optimiser step or a loaded checkpoint changes them in place)."""

    map: Map
    tensors: tuple[torch.Tensor, ...] = ()

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return self.map(z)


def _ambient_steps(embed: Map, points: torch.Tensor) -> torch.Tensor:
    """Differences of the curve's image between consecutive points: ``points [P, T, d]`` -> ``[P, T-1, D]``."""
    p, t, d = points.shape
    image = embed(points.reshape(p * t, d)).reshape(p, t, -1)  # [P, T, D]
    return image[:, 1:] - image[:, :-1]


def curve_length(decoder: Map, points: torch.Tensor, std_decoder: Map | None = None) -> torch.Tensor:
    """Riemannian length of discretised curves ``[P, T, d]`` -> ``[P]`` (the ambient polyline length)."""
    return _ambient_steps(immersion(decoder, std_decoder), points).norm(dim=-1).sum(-1)


def curve_energy(decoder: Map, points: torch.Tensor, std_decoder: Map | None = None) -> torch.Tensor:
    """Curve energy (B.1) of discretised curves ``[P, T, d]`` on a uniform grid of [0, 1] -> ``[P]``."""
    steps = _ambient_steps(immersion(decoder, std_decoder), points)
    return 0.5 * steps.pow(2).sum((-1, -2)) * (points.shape[1] - 1)


def straight_line_energy(immersion: Map, z0: torch.Tensor, z1: torch.Tensor, image0: torch.Tensor,
                         image1: torch.Tensor, num_points: int) -> torch.Tensor:
    """:func:`curve_energy` of the straight lines z0 -> z1 (``[P, d]``) at ``num_points`` uniform points
    when the images ``F(z0)``, ``F(z1)`` (``[P, D]``, broadcastable) are already known: only the
    ``num_points - 2`` interior points are mapped. ``[P]``."""
    p, d = z0.shape
    fractions = torch.linspace(0, 1, num_points, dtype=z0.dtype, device=z0.device)[1:-1, None, None]  # [T-2, 1, 1]
    interior = z0 + fractions * (z1 - z0)  # [T-2, P, d]: time-major, so each step below is a contiguous block
    image_interior = immersion(interior.reshape(-1, d)).reshape(num_points - 2, p, -1)  # [T-2, P, D]
    curve = torch.cat([image0.expand(p, -1)[None], image_interior, image1.expand(p, -1)[None]])  # [T, P, D]
    steps = torch.diff(curve, dim=0)  # [T-1, P, D]
    return 0.5 * torch.linalg.vecdot(steps, steps).sum(0) * (num_points - 1)


def spline_basis(num_nodes: int, num_points: int) -> torch.Tensor:
    """The linear map ``[num_points, num_nodes]`` from the values of a natural cubic spline at
    ``num_nodes`` uniform knots on [0, 1] to its values at ``num_points`` uniform points (a natural
    cubic spline interpolant is linear in the node values)."""
    if num_nodes < 2 or num_points < 2:
        raise ValueError(f"A curve needs at least 2 nodes and 2 points; got {num_nodes} and {num_points}.")
    knots, where = np.linspace(0, 1, num_nodes), np.linspace(0, 1, num_points)
    return torch.from_numpy(CubicSpline(knots, np.eye(num_nodes), bc_type="natural")(where))


@dataclass
class Geodesic:
    """Optimised curves between ``z0`` and ``z1``: ``points [P, T, d]`` (end points included),
    ``length [P]`` and ``energy [P]``. ``points``, ``length`` and ``energy`` depend differentiably on
    the end points and the decoder's parameters with the interior held at its optimum, so by the
    envelope theorem their gradients are those of the minimal energy."""

    points: torch.Tensor
    length: torch.Tensor
    energy: torch.Tensor


def geodesic(decoder: Map, z0: torch.Tensor, z1: torch.Tensor, std_decoder: Map | None = None, num_nodes: int = 6,
             num_points: int = 32, steps: int = 100) -> Geodesic:
    """Geodesics between ``z0`` and ``z1`` (``[P, d]`` each), batched over the P pairs: the interior
    nodes of a natural cubic spline start on the straight line and take at most ``steps`` L-BFGS
    iterations (strong Wolfe line search) on the summed curve energy (appendix B); the pairs are
    independent, so the sum's minimiser minimises each. ``steps=0`` returns the straight lines."""
    basis = spline_basis(num_nodes, num_points).to(z0)  # [T, N]
    fractions = torch.linspace(0, 1, num_nodes, dtype=z0.dtype, device=z0.device)[1:-1, None]  # [N-2, 1]
    start, end = z0.detach()[:, None], z1.detach()[:, None]
    interior = (start + fractions * (end - start)).requires_grad_()  # [P, N-2, d]
    embed = immersion(decoder, std_decoder)

    def curve(first, middle, last):
        return basis @ torch.cat([first, middle, last], dim=1)  # [P, T, d]

    def summed_energy():
        energy = 0.5 * _ambient_steps(embed, curve(start, interior, end)).pow(2).sum()
        interior.grad = torch.autograd.grad(energy, interior)[0].contiguous()  # the decoder's parameters get no gradient
        return energy

    if steps:
        with torch.enable_grad():  # the inner optimisation needs gradients even under no_grad (evaluation)
            torch.optim.LBFGS([interior], lr=1.0, max_iter=steps, tolerance_grad=1e-9, tolerance_change=1e-12,
                              line_search_fn="strong_wolfe").step(summed_energy)
    points = curve(z0[:, None], interior.detach(), z1[:, None])
    steps_ = _ambient_steps(embed, points)
    return Geodesic(points, steps_.norm(dim=-1).sum(-1), 0.5 * steps_.pow(2).sum((-1, -2)) * (num_points - 1))


@torch.no_grad()
def graph_geodesic(decoder: Map, z0: torch.Tensor, z1: torch.Tensor, low: float | list[float] = -3.0,
                   high: float | list[float] = 3.0, per_side: int = 64,
                   std_decoder: Map | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Shortest paths on a regular grid graph over the box ``[low, high]^d`` (d = 2 or 3), each node
    linked to its 3^d - 1 neighbours with the ambient distance between their images as the weight,
    by Dijkstra (scipy.sparse.csgraph). ``z0``/``z1``: ``[d]``. Returns the path's latent points
    ``[L, d]`` (grid nodes nearest to the end points, inclusive) and its length (a scalar)."""
    d = z0.shape[-1]
    if d not in (2, 3):
        raise ValueError(f"graph_geodesic works on 2-D and 3-D latent spaces; got d={d}. Use geodesic() instead.")
    low_, high_ = np.broadcast_to(low, d).astype(float), np.broadcast_to(high, d).astype(float)
    axes = [np.linspace(a, b, per_side) for a, b in zip(low_, high_)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, d)  # [per_side^d, d]
    index = np.arange(len(grid)).reshape((per_side,) * d)
    image = immersion(decoder, std_decoder)(torch.as_tensor(grid, dtype=z0.dtype, device=z0.device)).cpu().numpy()
    rows, cols = [], []
    for offset in itertools.product((-1, 0, 1), repeat=d):
        if offset <= (0,) * d:  # each undirected edge once
            continue
        source = index[tuple(slice(max(0, -o), per_side - max(0, o)) for o in offset)]
        target = index[tuple(slice(max(0, o), per_side - max(0, -o)) for o in offset)]
        rows.append(source.ravel()), cols.append(target.ravel())
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    weights = np.linalg.norm(image[rows] - image[cols], axis=1) + 1e-12
    graph = coo_matrix((weights, (rows, cols)), shape=(len(grid), len(grid))).tocsr()
    start = int(np.argmin(((grid - z0.cpu().numpy()) ** 2).sum(1)))
    stop = int(np.argmin(((grid - z1.cpu().numpy()) ** 2).sum(1)))
    distances, predecessors = dijkstra(graph, directed=False, indices=start, return_predecessors=True)
    path = [stop]
    while path[-1] != start:
        path.append(predecessors[path[-1]])
    points = torch.as_tensor(grid[path[::-1]], dtype=z0.dtype, device=z0.device)
    return points, torch.tensor(distances[stop], dtype=z0.dtype)


@torch.no_grad()
def brownian_motion(decoder: Map, z0: torch.Tensor, t: float | torch.Tensor, steps: int,
                    std_decoder: Map | None = None) -> torch.Tensor:
    """Brownian motion on the latent manifold for time ``t`` by ``steps`` Euler steps (eq. 3.15),

        z_k ~ N(z_{k-1}, t / steps * G(z_{k-1})^{-1}),

    from ``z0: [n, d]`` (n independent walks). Returns the paths ``[steps + 1, n, d]``."""
    path = [z0]
    for _ in range(steps):
        metric = pullback_metric(decoder, path[-1], std_decoder)  # [n, d, d]
        cholesky = torch.linalg.cholesky(metric)  # G = L L^T, so L^{-T} eps ~ N(0, G^{-1})
        eps = torch.randn_like(z0).unsqueeze(-1)
        step = torch.linalg.solve_triangular(cholesky.mT, eps, upper=True).squeeze(-1)
        path.append(path[-1] + (torch.as_tensor(t) / steps).sqrt() * step)
    return torch.stack(path)
