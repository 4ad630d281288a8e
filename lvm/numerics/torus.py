"""The unit torus ``[0, 1)^d``: nearest images of displacements, circular means per coordinate,
``atan2(E sin 2 pi z, E cos 2 pi z) / 2 pi mod 1`` (points straddling the seam at 0 = 1 average to ~0, not to 0.5), and
the translations that put the seam where there are no points.

A translation ``z -> (z + t) mod 1`` is an isometry of the flat torus: a view of the model shifted by ``-c`` (each
coordinate by its own ``c_k``, :func:`seam_offsets`) is the same model, with the square's edges, where a cluster looks
cut in two, moved to ``c``."""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["nearest_image", "circular_mean", "weighted_circular_mean", "translate", "seam_offsets"]


def nearest_image(offset):
    """Displacements on the torus of side 1 reduced to their nearest image, in ``[-1/2, 1/2)`` (tensors or arrays)."""
    if isinstance(offset, torch.Tensor):
        return torch.remainder(offset + 0.5, 1.0) - 0.5
    return offset - np.floor(offset + 0.5)


def _position(mean_sin: torch.Tensor, mean_cos: torch.Tensor) -> torch.Tensor:
    return torch.remainder(torch.atan2(mean_sin, mean_cos) / (2 * math.pi), 1.0)


def circular_mean(z: torch.Tensor, weights: torch.Tensor | None = None, dim: int = 0) -> torch.Tensor:
    """The circular mean of ``z`` over dimension ``dim``: plain, or with ``weights`` that broadcast against ``z`` and
    sum to 1 over ``dim`` (e.g. ``z [n, b, d]``, ``weights [n, b, 1]`` -> ``[b, d]``)."""
    angle = 2 * math.pi * z
    if weights is None:
        return _position(torch.sin(angle).mean(dim), torch.cos(angle).mean(dim))
    return _position((weights * torch.sin(angle)).sum(dim), (weights * torch.cos(angle)).sum(dim))


def weighted_circular_mean(z: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The circular means ``[b, d]`` of the points ``z [m, d]`` under each row of ``weights [b, m]`` (a posterior on the
    points per example): one matrix product per moment."""
    angle = 2 * math.pi * z
    return _position(weights @ torch.sin(angle), weights @ torch.cos(angle))


def translate(z, shift):
    """``(z + shift) mod 1``: the points ``z [..., d]`` moved by ``shift`` (``[d]`` or a number) on the torus, in
    ``[0, 1)`` (tensors or arrays)."""
    if isinstance(z, torch.Tensor):
        return torch.remainder(z + torch.as_tensor(shift, dtype=z.dtype, device=z.device), 1.0)
    return np.remainder(z + np.asarray(shift), 1.0)


def seam_offsets(points, weights=None, bins: int = 100, window: int = 10):
    """Where the seam of each coordinate is best placed: ``c [d]`` (a tensor for tensors, else an array), the centre
    of the emptiest part of each coordinate's marginal, so that the view ``(z - c) mod 1`` (:func:`translate`) cuts
    through as few points as any.

    Per coordinate ``k`` the points ``[n, d]`` in ``[0, 1)`` fall into ``bins`` equal bins of the circle; each
    candidate seam ``c = j / bins`` counts the points within ``window / 2`` bins of it on either side (a circular
    moving window, ``window`` even, weighted by a triangle: :func:`_window_mass`), and ``c_k`` is the candidate of the
    least count. With ``weights [n]`` the points carry a density (e.g. the aggregated posterior on a lattice that
    covers the torus evenly): a window holds the mean weight of its points, and a window without points is never
    chosen. Ties: ``c = 0`` if it is among the least (a view already cut where it is empty stays as it is), else the
    middle of the longest run of tied candidates, the one nearest 0 among equally long runs. Deterministic; moving
    the points by ``t`` moves ``c`` by ``t`` (to within a bin) where the least window is unique."""
    if window % 2 or not 0 < window <= bins:
        raise ValueError(f"window must be an even number of bins in (0, {bins}], got {window}.")
    values = points.detach().cpu().double().numpy() if isinstance(points, torch.Tensor) else np.asarray(points, float)
    if weights is not None:
        weights = (weights.detach().cpu().double().numpy() if isinstance(weights, torch.Tensor)
                   else np.asarray(weights, float))
    cells = np.floor(np.remainder(values, 1.0) * bins).astype(np.int64) % bins  # [n, d] bin of each coordinate
    offsets = np.array([_emptiest(_window_mass(cells[:, k], weights, bins, window)) / bins
                        for k in range(values.shape[1])])  # [d]
    if isinstance(points, torch.Tensor):
        return torch.as_tensor(offsets, dtype=points.dtype if points.is_floating_point() else torch.float64)
    return offsets


def _window_mass(cells: np.ndarray, weights: np.ndarray | None, bins: int, window: int) -> np.ndarray:
    """The mass ``[bins]`` within ``window / 2`` bins of each bin edge ``j``, i.e. in bins ``j - window/2 .. j +
    window/2 - 1`` (circularly), each bin counted by a triangle ``1, 2, ..., window/2, window/2, ..., 2, 1`` so that of
    the windows that hold a gap narrower than they are, the one centred on it holds least: the number of points, or
    with ``weights`` their mean weight (inf where none)."""
    half = window // 2
    members = (np.arange(bins)[:, None] + np.arange(-half, half)[None, :]) % bins  # [bins, window]
    triangle = np.concatenate([np.arange(1, half + 1), np.arange(half, 0, -1)])  # [window]
    counts = np.bincount(cells, minlength=bins)[members] @ triangle  # [bins]
    if weights is None:
        return counts.astype(float)
    total = np.bincount(cells, weights=weights, minlength=bins)[members] @ triangle
    return np.where(counts > 0, total / np.maximum(counts, 1), np.inf)


def _emptiest(mass: np.ndarray) -> int:
    """The index of the least ``mass [bins]``: 0 when it is among the least (to a relative 1e-9), else the middle
    of the longest run of least values, the run nearest 0 among equally long ones."""
    finite = mass[np.isfinite(mass)]
    least = mass <= mass.min() + 1e-9 * (np.abs(finite).max() if len(finite) else 0.0)  # [bins]
    if least[0]:
        return 0
    edges = np.flatnonzero(np.diff(least.astype(np.int8), prepend=0, append=0))  # starts and ends of the runs
    runs = edges.reshape(-1, 2)  # [r, 2]: first index, one past the last (least[0] is False: no run wraps)
    middles = (runs[:, 0] + runs[:, 1] - 1) // 2
    nearness = np.minimum(middles, len(mass) - middles)
    return int(middles[np.lexsort((middles, nearness, -(runs[:, 1] - runs[:, 0])))[0]])
