"""torchmetrics ``Metric``s for latent variable models (exact under DDP: states are sums)."""

from __future__ import annotations

import torch
from torchmetrics import Metric

from .variational import kl_to_standard_normal

__all__ = ["PosteriorCollapse"]


class PosteriorCollapse(Metric):
    """Fraction of latent dimensions that have (eps, delta)-collapsed (Lucas et al. 2019;
    sampling-free VAE paper eq. 22): dimension i has collapsed if

        P_x[ KL(q(z_i | x) || p(z_i)) < eps ] >= 1 - delta.

    ``update(mean, log_var)`` takes the encoder's diagonal Gaussian ``[b, d]``. Defaults follow
    the paper: eps = 0.05, delta = 0.01.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, latent_dim: int, eps: float = 0.05, delta: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        self.eps, self.delta = eps, delta
        self.add_state("below", default=torch.zeros(latent_dim, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, mean: torch.Tensor, log_var: torch.Tensor) -> None:
        kl = kl_to_standard_normal(mean, log_var)  # [b, d]
        self.below += (kl < self.eps).sum(0).to(self.below.dtype)
        self.total += kl.shape[0]

    def compute(self) -> torch.Tensor:
        collapsed = self.below / self.total >= 1 - self.delta  # [d]
        return collapsed.double().mean()
