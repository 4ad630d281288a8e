"""Label decodability of a low-dimensional embedding: does it carry the labels? A trust diagnostic;
:class:`lvm.callbacks.TrustDiagnostics` runs it at the end of testing, ``python -m lvm.tools.trust`` on checkpoints.

:func:`knn_decodability` is the cross-validated k-nearest-neighbour balanced accuracy (the
mean of the per-class recalls; Brodersen, Ong, Stephan and Buhmann, "The balanced accuracy and its posterior
distribution", 2010) of a label from the embedding, beside its chance level 1/C and the accuracy of always
guessing the majority class; real-valued labels with many distinct values get the cross-validated R^2 of
k-nearest-neighbour regression instead (0: no better than the mean). On the torus the neighbours are found by
the Euclidean (chordal) distance between the features (cos 2 pi z, sin 2 pi z) ``[n, 2d]`` (:func:`decoding_features`):
per coordinate the chord 2 sin(pi |dz|) grows with the geodesic distance |dz| around the circle, so the seam at
0 = 1 separates nothing, and scikit-learn's trees keep it fast for 100k points. Euclidean embeddings are used
as they are (no standardisation: the latent geometry is what is judged).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

from lvm.analysis.arrays import embedding_array

__all__ = ["decoding_features", "knn_decodability"]

MAX_FLOAT_CLASSES = 20  # a float label with more distinct values than this is real-valued (regression)


def decoding_features(embedding, periodic: bool) -> np.ndarray:
    """The features whose Euclidean distance decides the neighbours: ``(cos 2 pi z, sin 2 pi z)`` ``[n, 2d]`` on
    the torus (chordal distance), the embedding ``[n, d]`` itself in R^d."""
    z = embedding_array(embedding, "embedding")
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
