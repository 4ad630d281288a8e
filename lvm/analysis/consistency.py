"""Seed-to-seed consistency of a low-dimensional embedding: is it the same across seeds? A trust diagnostic;
``python -m lvm.tools.trust`` runs it across the checkpoints of several runs.

Embeddings of the same held-out examples by two runs can only agree up to the symmetries of the latent space, so
:func:`aligned_r2` aligns one onto the other by the best symmetry and reports the R^2 of the aligned fit, as CEBRA's
consistency score does with a linear fit (Schneider, Lee and Mathis, "Learnable latent embeddings for joint
behavioural and neural analysis", 2023, arXiv:2204.00673). Aligning ``other`` (A) onto ``reference`` (B), both
``[n, d]``:

* Euclidean R^d (``periodic=False``): orthogonal maps, translations and one common scale factor (posterior means
  of different runs shrink towards the prior's centre by different amounts): Procrustes analysis (Schoenemann,
  "A generalized solution of the orthogonal Procrustes problem", 1966; Gower, "Generalized Procrustes analysis",
  1975), R = U V^T from the SVD U S V^T = A_c^T B_c of the centred embeddings, scale s = tr S / |A_c|^2, and
  R^2 = 1 - |B_c - s A_c R|^2 / |B_c|^2 = (tr S)^2 / (|A_c|^2 |B_c|^2), in [0, 1] and the same both ways: 1 for a
  rotated, reflected, translated and rescaled copy, about 0 for unrelated embeddings. (Without the scale,
  unrelated embeddings of equal spread would score about -1: the residual would hold the spread of both.)
* The torus [0, 1)^d (``periodic=True``, period 1): translations, reflections z -> -z and permutations of the
  coordinates. With wrap(x) = x - floor(x + 1/2) in [-1/2, 1/2),
  R^2 = 1 - sum wrap(B - s * A[:, pi] - t)^2 / sum wrap(B - mean_circ(B))^2 over examples and coordinates.
  The residual is a sum over coordinates, and coordinate j of B only meets coordinate pi(j) of A with sign
  s_j and shift t_j, so the search over all d! permutations x 2^d signs is exact as an assignment problem:
  the 2 d^2 one-dimensional fits (B_j against +-A_i) fill a cost matrix whose best permutation
  ``scipy.optimize.linear_sum_assignment`` finds. Each shift starts at the circular mean of the wrapped
  differences and is refined to the nearest minimiser of the wrapped squared residual by t <- t + mean wrap(x - t)
  (each step re-chooses the nearest image of every point, so the residual never grows); the mean of B in the
  denominator is found the same way. Unrelated uniform embeddings score about 0.

:func:`consistency` reports each unordered pair of runs once, with the symmetric average of the two directions
(the residual is the same both ways; the denominators are each run's own spread).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
import torch
from scipy.optimize import linear_sum_assignment

from lvm.analysis.arrays import embedding_array
from lvm.numerics.torus import circular_mean, nearest_image

__all__ = ["aligned_r2", "consistency", "consistency_summary"]

SHIFT_TOL, SHIFT_MAX_STEPS = 1e-12, 100  # refinement of the circular mean to the wrapped least-squares shift


def _torus_shift(x: np.ndarray) -> np.ndarray:
    """The shift t minimising sum_n wrap(x_n - t)^2 along axis 0 (any trailing shape), from the circular mean."""
    shift = circular_mean(torch.tensor(np.asarray(x, dtype=np.float64))).numpy()
    for _ in range(SHIFT_MAX_STEPS):
        step = nearest_image(x - shift).mean(0)
        shift = shift + step
        if np.abs(step).max() < SHIFT_TOL:
            break
    return shift


def _torus_residual(x: np.ndarray) -> np.ndarray:
    """sum_n wrap(x_n - t)^2 along axis 0 at the best shift t."""
    return (nearest_image(x - _torus_shift(x)) ** 2).sum(0)


def aligned_r2(reference, other, periodic: bool) -> float:
    """R^2 of ``reference`` ``[n, d]`` explained by ``other`` (the same examples, another run) aligned onto it by
    the best symmetry of the latent space: translations, reflections and axis permutations on the torus
    [0, 1)^d (``periodic``), orthogonal maps, translations and a scale in R^d. NaN if ``reference`` has no spread."""
    target, source = embedding_array(reference, "reference"), embedding_array(other, "other")
    if target.shape != source.shape:
        raise ValueError(f"reference {target.shape} and other {source.shape} must embed the same examples in the "
                         "same dimension.")
    if periodic:
        signs = np.array([1.0, -1.0])
        differences = nearest_image(target[:, :, None, None] - signs * source[:, None, :, None])  # [n, d_target, d_source, 2]
        cost = _torus_residual(differences).min(-1)  # [d_target, d_source]: the better sign for each pairing
        rows, columns = linear_sum_assignment(cost)
        residual = cost[rows, columns].sum()
        spread = _torus_residual(target).sum()
    else:
        centred_target, centred_source = target - target.mean(0), source - source.mean(0)
        singular_values = np.linalg.svd(centred_source.T @ centred_target, compute_uv=False)  # of the [d, d] product
        source_spread, spread = (centred_source**2).sum(), (centred_target**2).sum()
        explained = singular_values.sum() ** 2 / source_spread if source_spread > 0 else 0.0
        residual = spread - explained  # at the best rotation and scale
    return float(1.0 - residual / spread) if spread > 0 else float("nan")


def consistency(embeddings: list[np.ndarray], periodic: bool, names: list[str] | None = None) -> pd.DataFrame:
    """One row per unordered pair of runs (``run_a``, ``run_b``, ``r2``), ``r2`` the mean of
    ``aligned_r2(a, b)`` and ``aligned_r2(b, a)``; the embeddings ``[n, d]`` are of the same examples in the same
    order. ``names`` label the runs (default ``"0"``, ``"1"``, ...)."""
    names = [str(i) for i in range(len(embeddings))] if names is None else list(names)
    if len(names) != len(embeddings):
        raise ValueError(f"{len(names)} names for {len(embeddings)} embeddings; give one name per run.")
    if len(embeddings) < 2:
        raise ValueError(f"consistency compares runs: it needs at least 2 embeddings; got {len(embeddings)}.")
    rows = [(names[i], names[j], 0.5 * (aligned_r2(embeddings[i], embeddings[j], periodic)
                                        + aligned_r2(embeddings[j], embeddings[i], periodic)))
            for i, j in combinations(range(len(embeddings)), 2)]
    return pd.DataFrame(rows, columns=["run_a", "run_b", "r2"])


def consistency_summary(table: pd.DataFrame) -> dict:
    """Mean, standard deviation and minimum of the ``r2`` column of :func:`consistency`, and the number of pairs."""
    r2 = table["r2"]
    return {"mean_r2": float(r2.mean()), "std_r2": float(r2.std(ddof=0)), "min_r2": float(r2.min()),
            "pairs": int(len(r2))}
