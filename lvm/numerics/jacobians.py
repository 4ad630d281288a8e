"""Jacobians of decoders by forward-mode autodiff (``torch.func``), never by n backward passes."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.func import jvp, vmap

__all__ = ["forward_jacobian"]


def forward_jacobian(f: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``f(z)`` and its per-example Jacobian for a batched map ``f: [b, m] -> [b, n]``.

    Computes ``m`` Jacobian-vector products ``J e_k`` (one per latent direction), vmapped, so the
    cost is about ``m`` forward passes however large ``n`` is; the primal ``f(z)`` is computed once.
    The result is differentiable with respect to ``f``'s parameters (it composes with autograd).
    ``f`` must treat examples independently (no batch statistics).

    Returns ``(f(z): [b, n], J: [b, n, m])``.
    """
    b, m = z.shape
    basis = torch.eye(m, dtype=z.dtype, device=z.device).unsqueeze(1).expand(m, b, m)  # [m, b, m]
    value, directional = vmap(lambda tangent: jvp(f, (z,), (tangent,)), out_dims=(None, 0))(basis)
    return value, directional.permute(1, 2, 0)  # [b, n], [b, n, m]
