"""The unit torus ``[0, 1)^d``: nearest images of displacements and circular means per coordinate,
``atan2(E sin 2 pi z, E cos 2 pi z) / 2 pi mod 1`` (points straddling the seam at 0 = 1 average to ~0, not to 0.5)."""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["nearest_image", "circular_mean", "weighted_circular_mean"]


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
