"""The unit torus ``[0, 1)^d``: nearest images of displacements and circular means per coordinate."""

from __future__ import annotations

import math

import torch

__all__ = ["nearest_image", "circular_mean"]


def nearest_image(offset):
    """Displacements on the torus of side 1 reduced to their nearest image, in ``[-1/2, 1/2)`` (tensors or arrays)."""
    return offset - (offset + 0.5) // 1


def circular_mean(z: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The circular mean per coordinate, ``atan2(E sin 2 pi z, E cos 2 pi z) / 2 pi mod 1``: points straddling the seam
    at 0 = 1 average to ~0, not to 0.5. Without weights the mean over the first dimension of ``z: [n, ...]`` -> ``[...]``;
    with ``weights: [..., b, m]`` (rows summing to 1) over ``z: [..., m, d]`` -> ``[..., b, d]``."""
    angle = 2 * math.pi * z
    if weights is None:
        mean_sin, mean_cos = torch.sin(angle).mean(0), torch.cos(angle).mean(0)
    else:
        mean_sin, mean_cos = weights @ torch.sin(angle), weights @ torch.cos(angle)
    return torch.remainder(torch.atan2(mean_sin, mean_cos) / (2 * math.pi), 1.0)
