"""Trust diagnostics of a low-dimensional embedding: is it the same across seeds, does it carry the labels,
does it fall into clusters? Plain functions on arrays (and one on a model); :class:`lvm.callbacks.TrustDiagnostics`
runs them at the end of testing.

**Seed-to-seed consistency** (:func:`aligned_r2`, :func:`consistency`). Embeddings of the same held-out
examples by two runs can only agree up to the symmetries of the latent space, so one is aligned onto the other
by the best symmetry and the R^2 of the aligned fit is reported, as CEBRA's consistency score does with a linear
fit (Schneider, Lee and Mathis, "Learnable latent embeddings for joint behavioural and neural analysis", 2023,
arXiv:2204.00673). Aligning ``other`` (A) onto ``reference`` (B), both ``[n, d]``:

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

**Label decodability** (:func:`knn_decodability`): cross-validated k-nearest-neighbour balanced accuracy (the
mean of the per-class recalls; Brodersen, Ong, Stephan and Buhmann, "The balanced accuracy and its posterior
distribution", 2010) of a label from the embedding, beside its chance level 1/C and the accuracy of always
guessing the majority class; real-valued labels with many distinct values get the cross-validated R^2 of
k-nearest-neighbour regression instead (0: no better than the mean). On the torus the neighbours are found by
the Euclidean (chordal) distance between the features (cos 2 pi z, sin 2 pi z) ``[n, 2d]`` (:func:`decoding_features`):
per coordinate the chord 2 sin(pi |dz|) grows with the geodesic distance |dz| around the circle, so the seam at
0 = 1 separates nothing, and scikit-learn's trees keep it fast for 100k points. Euclidean embeddings are used
as they are (no standardisation: the latent geometry is what is judged).

**Cluster structure** (:func:`lattice_modes`, :func:`nearest_mode`, :func:`cluster_structure`): the modes are
those of the weighted mean-shift on the aggregated posterior (QLVM paper, section 3.3; :mod:`lvm.analysis.landscape`);
each example goes to its nearest mode (shortest way round on the torus) and the silhouette of that assignment
(Rousseeuw, "Silhouettes: a graphical aid to the interpretation and validation of cluster analysis", 1987) is
computed from the geodesic distances of a seeded subsample: near 1 for tight, well-separated clusters, near 0
for a continuum. Fewer than two modes (or clusters) have no silhouette: NaN, with the reason.
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pandas as pd
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import silhouette_score
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

from lvm.analysis.landscape import aggregated_posterior, weighted_mean_shift
from lvm.numerics.torus import circular_mean, nearest_image
from lvm.priors import InvertiblePrior

__all__ = ["aligned_r2", "consistency", "consistency_summary", "decoding_features", "knn_decodability",
           "lattice_modes", "nearest_mode", "cluster_structure"]

MAX_FLOAT_CLASSES = 20  # a float label with more distinct values than this is real-valued (regression)
MAX_LATTICE_DIM = 3  # lattice posteriors (and their modes) are practical up to 3-D
SHIFT_TOL, SHIFT_MAX_STEPS = 1e-12, 100  # refinement of the circular mean to the wrapped least-squares shift
ROWS_PER_CHUNK = 512  # rows of a distance matrix computed at once


# ----- seed-to-seed consistency ------------------------------------------------------------------------------


def _embedding(values, name: str) -> np.ndarray:
    """``values`` as a finite float64 array ``[n, d]`` (a 1-D array is one coordinate)."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]  # [n, 1]
    if array.ndim != 2:
        raise ValueError(f"{name} must be an array [n, d]; got shape {array.shape}.")
    bad = int((~np.isfinite(array)).sum())
    if bad:
        raise ValueError(f"{name}: {bad} of its {array.size} values are not finite (NaN or infinite).")
    return array


def _torus_shift(x: np.ndarray) -> np.ndarray:
    """The shift t minimising sum_n wrap(x_n - t)^2 along axis 0 (any trailing shape), from the circular mean."""
    shift = circular_mean(torch.as_tensor(x)).numpy()
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
    target, source = _embedding(reference, "reference"), _embedding(other, "other")
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


# ----- label decodability --------------------------------------------------------------------------------------


def decoding_features(embedding, periodic: bool) -> np.ndarray:
    """The features whose Euclidean distance decides the neighbours: ``(cos 2 pi z, sin 2 pi z)`` ``[n, 2d]`` on
    the torus (chordal distance), the embedding ``[n, d]`` itself in R^d."""
    z = _embedding(embedding, "embedding")
    if not periodic:
        return z
    angle = 2 * np.pi * z
    return np.concatenate([np.cos(angle), np.sin(angle)], axis=1)  # [n, 2d]


def _is_real_valued(labels: np.ndarray, max_classes: int) -> bool:
    return labels.dtype.kind == "f" and len(np.unique(labels)) > max_classes


def knn_decodability(embedding, labels, periodic: bool, k: int = 10, folds: int = 5, seed: int = 0,
                     task: str = "auto", max_classes: int = MAX_FLOAT_CLASSES) -> dict:
    """How well k nearest neighbours in the embedding ``[n, d]`` predict ``labels`` ``[n]`` (strings, integers or
    floats; NaN and missing labels are dropped), cross-validated over ``folds`` shuffled folds drawn by ``seed``.

    ``task``: ``"classification"``, ``"regression"``, or ``"auto"``: regression for float labels with more than
    ``max_classes`` distinct values, classification otherwise.

    Classification (stratified folds) returns ``balanced_accuracy`` (mean over folds) and its ``_std``,
    ``chance_balanced_accuracy`` (1 / number of classes: any constant guess), ``majority_accuracy`` (the
    accuracy of always guessing the most frequent class) and ``num_classes``. Classes with a single example can
    be neither trained nor tested on and are dropped (``dropped_rare``); the folds are reduced to the smallest
    class's size (at least 2) and ``k`` to the size of a training fold. Regression returns ``r2`` and its ``_std``.
    Both return ``task``, ``n`` (examples used), ``k``, ``folds`` and ``dropped_missing``.
    """
    features = decoding_features(embedding, periodic)
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(features):
        raise ValueError(f"labels must be one per example, [{len(features)}]; got shape {labels.shape}.")
    if task not in ("auto", "classification", "regression"):
        raise ValueError(f"task must be 'auto', 'classification' or 'regression'; got {task!r}.")
    present = ~pd.isna(labels)
    features, labels = features[present], labels[present]
    if labels.dtype == object:
        labels = labels.astype(str)  # mixed or byte strings: compare as text
    if task == "auto":
        task = "regression" if _is_real_valued(labels, max_classes) else "classification"
    common = {"task": task, "dropped_missing": int((~present).sum())}
    if task == "regression":
        return common | _knn_regression(features, labels.astype(np.float64), k, folds, seed)
    return common | _knn_classification(features, labels, k, folds, seed)


def _knn_classification(features: np.ndarray, labels: np.ndarray, k: int, folds: int, seed: int) -> dict:
    _, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    frequent = counts[codes] >= 2
    features = features[frequent]
    _, codes, counts = np.unique(codes[frequent], return_inverse=True, return_counts=True)
    if len(counts) < 2:
        raise ValueError(f"knn_decodability needs at least 2 classes with 2 or more examples each; got {len(counts)} "
                         "(is the label an example index, or constant?).")
    n = len(codes)
    folds = max(2, min(folds, int(counts.min())))
    k = max(1, min(k, n - math.ceil(n / folds)))  # no more neighbours than a training fold holds
    scores = cross_val_score(KNeighborsClassifier(n_neighbors=k), features, codes, scoring="balanced_accuracy",
                             cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    return {"balanced_accuracy": float(scores.mean()), "balanced_accuracy_std": float(scores.std()),
            "chance_balanced_accuracy": 1.0 / len(counts), "majority_accuracy": float(counts.max() / n),
            "num_classes": int(len(counts)), "n": n, "k": k, "folds": folds, "dropped_rare": int((~frequent).sum())}


def _knn_regression(features: np.ndarray, values: np.ndarray, k: int, folds: int, seed: int) -> dict:
    n = len(values)
    if n < 4:
        raise ValueError(f"knn_decodability needs at least 4 labelled examples for a cross-validated R^2; got {n}.")
    folds = max(2, min(folds, n // 2))
    k = max(1, min(k, n - math.ceil(n / folds)))
    scores = cross_val_score(KNeighborsRegressor(n_neighbors=k), features, values, scoring="r2",
                             cv=KFold(folds, shuffle=True, random_state=seed))
    return {"r2": float(scores.mean()), "r2_std": float(scores.std()), "n": n, "k": k, "folds": folds}


# ----- cluster structure ---------------------------------------------------------------------------------------


def lattice_modes(model, batches, bandwidth: float = 0.1, num_points: int | None = None) -> np.ndarray:
    """The mean-shift modes ``[k, d]`` (latent values, densest first) of the aggregated posterior of ``model`` over
    ``batches`` (an iterable of ``x`` or ``(x, ...)``), as :class:`lvm.callbacks.PosteriorPlots` finds them: mean-shift
    runs on the unit-cube lattice (equal volume per point; the torus wraps) and the modes are mapped back by
    ``prior.from_unit_cube``. For priors reached from the unit cube (:class:`lvm.priors.InvertiblePrior`) in up to
    3-D; a flat aggregated posterior has no modes (``[0, d]``)."""
    prior = model.prior
    if not isinstance(prior, InvertiblePrior) or prior.dim > MAX_LATTICE_DIM:
        raise ValueError(f"Lattice modes need a prior reached from the unit cube (lvm.priors.InvertiblePrior) in at "
                         f"most {MAX_LATTICE_DIM}-D; this model has a {prior.dim}-D {type(prior).__name__}.")
    _, density = aggregated_posterior(model, batches, num_points)  # [m]
    cube = model.lattice_points(num_points)  # [m, d]
    modes_cube, _ = weighted_mean_shift(cube, density.cpu(), bandwidth, prior.periodic)
    return prior.from_unit_cube(modes_cube).cpu().numpy()


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
    z, centres = _embedding(embedding, "embedding"), _embedding(modes, "modes")
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
    z, centres = _embedding(embedding, "embedding"), _embedding(modes, "modes")
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


def json_ready(value):
    """``value`` (dicts, lists, numbers) with NumPy scalars as Python numbers and non-finite floats as ``None``
    (JSON has no NaN)."""
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value
