"""Cluster structure of a low-dimensional embedding: does it fall into clusters? A trust diagnostic;
:class:`lvm.callbacks.TrustDiagnostics` runs it at the end of testing, ``python -m lvm.tools.trust`` on checkpoints.

:func:`lattice_modes` (:func:`aggregated_modes`, with the density) finds the modes of the weighted mean-shift on the
aggregated posterior (QLVM paper, section 3.3; :mod:`lvm.analysis.landscape`); :func:`nearest_mode` sends each
example to its nearest mode (shortest way round on the torus), and :func:`cluster_structure` scores that assignment
by its silhouette (Rousseeuw,
"Silhouettes: a graphical aid to the interpretation and validation of cluster analysis", 1987), computed from the
geodesic distances of a seeded subsample: near 1 for tight, well-separated clusters, near 0 for a continuum. Fewer
than two modes (or clusters) have no silhouette: NaN, with the reason.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import silhouette_score

from lvm.analysis.arrays import embedding_array
from lvm.analysis.landscape import aggregated_posterior, weighted_mean_shift
from lvm.numerics.lattices import MAX_LATTICE_DIM
from lvm.numerics.torus import nearest_image
from lvm.priors import InvertiblePrior

__all__ = ["aggregated_modes", "lattice_modes", "nearest_mode", "cluster_structure"]

ROWS_PER_CHUNK = 512  # rows of a distance matrix computed at once


def aggregated_modes(model, batches, bandwidth: float = 0.1,
                     num_points: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The lattice's latent points ``[m, d]``, the aggregated posterior on them ``[m]`` (sums to 1) and its mean-shift
    modes ``[k, d]`` (latent values, densest first) over ``batches`` (an iterable of ``x`` or ``(x, ...)``), as
    :class:`lvm.callbacks.PosteriorPlots` finds them: mean-shift runs on the unit-cube lattice (equal volume per point;
    the torus wraps) and the modes are mapped back by ``prior.from_unit_cube``. For priors reached from the unit cube
    (:class:`lvm.priors.InvertiblePrior`) in up to 3-D; a flat aggregated posterior has no modes (``[0, d]``)."""
    prior = model.prior
    if not isinstance(prior, InvertiblePrior) or prior.dim > MAX_LATTICE_DIM:
        raise ValueError(f"Lattice modes need a prior reached from the unit cube (lvm.priors.InvertiblePrior) in at "
                         f"most {MAX_LATTICE_DIM}-D; this model has a {prior.dim}-D {type(prior).__name__}.")
    points, density = aggregated_posterior(model, batches, num_points)  # [m, d], [m]
    cube = model.lattice_points(num_points)  # [m, d]
    modes_cube, _ = weighted_mean_shift(cube, density.cpu(), bandwidth, prior.periodic)
    return (points.cpu().double().numpy(), density.cpu().double().numpy(),
            prior.from_unit_cube(modes_cube).cpu().numpy())


def lattice_modes(model, batches, bandwidth: float = 0.1, num_points: int | None = None) -> np.ndarray:
    """The mean-shift modes ``[k, d]`` of the aggregated posterior of ``model`` over ``batches``
    (:func:`aggregated_modes`)."""
    return aggregated_modes(model, batches, bandwidth, num_points)[2]


def _squared_distances(points: np.ndarray, centres: np.ndarray, periodic: bool) -> np.ndarray:
    """Squared distances ``[n, c]`` between ``points`` ``[n, d]`` and ``centres`` ``[c, d]``; geodesic (the shortest
    way round) on the torus."""
    out = np.empty((len(points), len(centres)))
    for start in range(0, len(points), ROWS_PER_CHUNK):
        delta = points[start:start + ROWS_PER_CHUNK, None] - centres[None]  # [r, c, d]
        out[start:start + ROWS_PER_CHUNK] = ((nearest_image(delta) if periodic else delta) ** 2).sum(-1)
    return out


def nearest_mode(embedding, modes, periodic: bool) -> np.ndarray:
    """The index of the mode ``[k, d]`` nearest each embedded example ``[n, d]`` (geodesic on the torus), ``[n]``."""
    z, centres = embedding_array(embedding, "embedding"), embedding_array(modes, "modes")
    if len(centres) == 0:
        raise ValueError("nearest_mode needs at least one mode.")
    if centres.shape[1] != z.shape[1]:
        raise ValueError(f"modes are {centres.shape[1]}-D and the embedding {z.shape[1]}-D; they must match.")
    return _squared_distances(z, centres, periodic).argmin(1)


def cluster_structure(embedding, modes, periodic: bool, max_points: int = 5000, seed: int = 0) -> dict:
    """Assign each example of ``embedding`` ``[n, d]`` to its nearest mode ``[k, d]`` and score the assignment by
    its silhouette, from geodesic distances on the torus (Euclidean in R^d) between at most ``max_points``
    examples drawn by ``seed``.

    Returns ``num_modes``, ``cluster_sizes`` (examples per mode), ``silhouette`` (NaN when fewer than two modes
    or clusters), ``reason`` (why it is NaN, else ``None``) and ``silhouette_points`` (examples scored)."""
    z, centres = embedding_array(embedding, "embedding"), embedding_array(modes, "modes")
    result = {"num_modes": len(centres), "cluster_sizes": [0] * len(centres), "silhouette": float("nan"),
              "reason": None, "silhouette_points": 0}
    if len(centres) < 2:
        result["reason"] = (f"{len(centres)} mode{'s' * (len(centres) != 1)}: a silhouette compares at least two "
                            "clusters")
        if len(centres) == 1:
            result["cluster_sizes"] = [len(z)]
        return result
    assignment = nearest_mode(z, centres, periodic)  # [n]
    result["cluster_sizes"] = np.bincount(assignment, minlength=len(centres)).tolist()
    scored = np.random.default_rng(seed).choice(len(z), max_points, replace=False) if len(z) > max_points else \
        np.arange(len(z))
    clusters = len(np.unique(assignment[scored]))
    if not 2 <= clusters <= len(scored) - 1:
        result["reason"] = (f"the {len(scored)} scored examples fall into {clusters} cluster"
                            f"{'s' * (clusters != 1)}; a silhouette needs between 2 and n - 1")
        return result
    distances = np.sqrt(_squared_distances(z[scored], z[scored], periodic))  # [m, m]
    result["silhouette"] = float(silhouette_score(distances, assignment[scored], metric="precomputed"))
    result["silhouette_points"] = len(scored)
    return result
