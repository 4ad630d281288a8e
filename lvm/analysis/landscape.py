"""Posterior analyses of a trained low-dimensional model (QLVM paper, section 3.3, appendices A.2 and C):
plain functions to call on a loaded checkpoint; :class:`lvm.callbacks.PosteriorPlots` only schedules them.

* :func:`aggregated_posterior`: E_x[p(z_j | x)] over a lattice (Fig. 5B/F).
* :func:`jacobian_frobenius_norm`: |d f / d z|_F of the decoded mean (Fig. 5D/H).
* :func:`weighted_mean_shift`: mean-shift on the lattice points weighted by the aggregated posterior
  (eqs. 8-9; the flat neighbourhood of eq. 9), seeds merged within the bandwidth (Fig. 5C/G).
* :func:`density_geodesic`: Dijkstra on the lattice graph whose edge i -> j costs the density ratio
  p_i / p_j (appendix C, Fig. A5).

On the torus every displacement is the shortest one around it (``periodic=True``).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

from lvm.batches import batch_data, given_batch, reference_covariates
from lvm.numerics.jacobians import forward_jacobian
from lvm.numerics.torus import nearest_image

__all__ = ["aggregated_posterior", "jacobian_frobenius_norm", "displacements", "weighted_mean_shift", "is_flat",
           "density_at", "density_geodesic"]

FLAT_RTOL = 1e-4  # a density varying by less than this fraction of its maximum is flat: it has no modes


@torch.no_grad()
def aggregated_posterior(model, batches, num_points: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Lattice points ``[m, d]`` and the aggregated posterior E_x[p(z_j | x)] ``[m]`` (sums to 1) over
    the examples of ``batches`` (an iterable of ``x`` or ``(x, ...)``). A DataLoader whose data set the model's last
    test pass covered, unchanged since, is read from that pass (:meth:`LatentVariableModel.results_for`)."""
    dataset = getattr(batches, "dataset", None)
    results = model.results_for(dataset, num_points) if dataset is not None else None
    if results is not None and results.weight_sum is not None:
        points, density = results.aggregated_posterior()
        return points.to(model.device), density.to(model.device)
    total, count, points = 0.0, 0, None
    for batch in batches:
        x = batch_data(batch).to(model.device)
        with given_batch(model, batch):  # a conditional model's posteriors given each example's covariates
            points, weights = model.posterior_on_lattice(x, num_points)  # [m, d], [b, m]
        total, count = total + weights.double().sum(0), count + len(x)
    if points is None:
        raise ValueError("aggregated_posterior needs at least one batch.")
    return points, total / count


def jacobian_frobenius_norm(model, z: torch.Tensor, chunk_size: int = 1024,
                            covariates: torch.Tensor | None = None) -> torch.Tensor:
    """|J(z)|_F of the decoded mean E[x | z] with respect to the latent coordinates, ``[n]``. A conditional model's
    decoder is taken under the covariate codes ``covariates`` ``[1, C]`` (default: the reference,
    :func:`lvm.batches.reference_covariates`)."""
    if covariates is None:
        covariates = reference_covariates(model)
    norms = []
    with torch.no_grad(), model.given(covariates) if covariates is not None else contextlib.nullcontext():
        for chunk in z.split(chunk_size):
            _, jacobian = forward_jacobian(model.decoded_mean, chunk.to(model.device))  # [c, D, d]
            norms.append(jacobian.pow(2).sum((-1, -2)).sqrt())
    return torch.cat(norms)


def displacements(points: torch.Tensor, centres: torch.Tensor, periodic: bool) -> torch.Tensor:
    """``points - centre`` for every centre ``[c, m, d]``; on the torus the shortest way round."""
    delta = points[None] - centres[:, None]
    return nearest_image(delta) if periodic else delta


def weighted_mean_shift(points: torch.Tensor, weights: torch.Tensor, bandwidth: float, periodic: bool = False,
                        seeds: torch.Tensor | None = None, max_seeds: int = 256, max_iter: int = 200,
                        tol: float = 1e-7) -> tuple[torch.Tensor, torch.Tensor]:
    """Modes ``[k, d]`` of the density ``weights`` on ``points`` (eq. 9) and their weights ``[k]``, the
    densest first. Each seed (default: up to ``max_seeds`` evenly chosen points of weight above the
    mean) moves to the weighted mean of the points within ``bandwidth`` until it stops; modes closer
    than ``bandwidth`` merge into the one of highest density. A flat density (:func:`is_flat`, e.g. the
    aggregated posterior of a decoder that ignores z) has no modes: ``[0, d]`` and ``[0]``."""
    points, weights = points.double(), weights.double()
    _require_finite(weights, "weighted_mean_shift", "weights")
    if is_flat(weights):
        seeds = points[:0]
    elif seeds is None:
        seeds = points[weights > weights.mean()]
        seeds = seeds[torch.linspace(0, len(seeds) - 1, min(max_seeds, len(seeds))).round().long()]
    if len(seeds) == 0:
        return points.new_zeros(0, points.shape[1]), weights.new_zeros(0)
    z = seeds.double().clone()
    for _ in range(max_iter):
        delta = displacements(points, z, periodic)  # [s, m, d]
        inside = (delta.pow(2).sum(-1) <= bandwidth**2) * weights[None]  # [s, m]
        step = (inside[..., None] * delta).sum(1) / inside.sum(1, keepdim=True).clamp_min(1e-300)
        z = z + step
        if periodic:
            z = torch.remainder(z, 1.0)
        if step.abs().max() < tol:
            break
    density = density_at(points, weights, z, periodic)
    order = density.argsort(descending=True)
    kept: list[int] = []
    for i in order.tolist():
        if all(displacements(z[i:i + 1], z[j:j + 1], periodic).norm() > bandwidth for j in kept):
            kept.append(i)
    return z[kept].to(points.dtype), density[kept]


def is_flat(density: torch.Tensor, rtol: float = FLAT_RTOL) -> bool:
    """Whether all values of ``density`` agree to within ``rtol`` of the largest: constant up to the rounding
    of its computation (a constant density in float32 comes out of averaging softmaxes a few ulps apart, and
    its values "above the mean" are rounding noise, not modes)."""
    if density.numel() == 0:
        return True
    top = density.abs().max()
    return bool(density.max() - density.min() <= rtol * top)


def density_at(points: torch.Tensor, density: torch.Tensor, queries: torch.Tensor, periodic: bool = False) -> torch.Tensor:
    """The density of the lattice point nearest each query ``[q, d]`` -> ``[q]``."""
    return density[displacements(points.double(), queries.double(), periodic).pow(2).sum(-1).argmin(1)]


def density_geodesic(points: torch.Tensor, density: torch.Tensor, start: torch.Tensor, end: torch.Tensor,
                     radius: float, periodic: bool = False) -> torch.Tensor:
    """The Dijkstra path ``[L, d]`` between the lattice points nearest ``start`` and ``end`` on the
    graph linking points closer than ``radius``, the step i -> j costing p_i / p_j (appendix C): leaving
    dense regions for sparse ones is expensive."""
    _require_finite(density, "density_geodesic", "density values")
    p = points.double()
    tree = cKDTree(p.numpy(), boxsize=1.0 if periodic else None)  # the torus wraps at 1
    pairs = tree.query_pairs(radius, output_type="ndarray")  # [e, 2], i < j
    if len(pairs) == 0:
        raise ValueError(f"No two lattice points lie within radius={radius}; use a radius above the lattice spacing.")
    rows, cols = np.concatenate([pairs[:, 0], pairs[:, 1]]), np.concatenate([pairs[:, 1], pairs[:, 0]])
    mass = density.double().clamp_min(1e-300).numpy()
    graph = coo_matrix((mass[rows] / mass[cols], (rows, cols)), shape=(len(p), len(p))).tocsr()
    first = int(displacements(p, start.double()[None], periodic).pow(2).sum(-1).argmin())
    last = int(displacements(p, end.double()[None], periodic).pow(2).sum(-1).argmin())
    _, predecessors = dijkstra(graph, directed=True, indices=first, return_predecessors=True)
    if predecessors[last] < 0 and last != first:
        raise ValueError("The end point is not reachable from the start on this graph; increase the radius.")
    path = [last]
    while path[-1] != first:
        path.append(int(predecessors[path[-1]]))
    return points[path[::-1]]


def _require_finite(values: torch.Tensor, caller: str, name: str) -> None:
    """Raise a ``ValueError`` naming ``caller`` if ``values`` holds NaN or infinity (e.g. a NaN decoder's density):
    no mode or path of such a density is meaningful."""
    bad = int((~torch.isfinite(values)).sum())
    if bad:
        raise ValueError(f"{caller}: {bad} of the {values.numel()} {name} are not finite (NaN or infinite).")
