"""torchmetrics ``Metric``s for latent variable models (exact under DDP: states are sums)."""

from __future__ import annotations

import torch
from torchmetrics import Metric

__all__ = ["PosteriorCollapse", "GaussianFrechetDistance"]


class PosteriorCollapse(Metric):
    """Fraction of latent dimensions that have (eps, delta)-collapsed (Lucas et al. 2019;
    sampling-free VAE paper eq. 22): dimension i has collapsed if

        P_x[ KL(q(z_i | x) || p(z_i)) < eps ] >= 1 - delta.

    ``update(kl)`` takes the per-dimension KLs ``[b, d]`` of a diagonal Gaussian posterior to the standard normal
    prior (:func:`lvm.divergences.kl_divergence`). Defaults follow
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

    def update(self, kl: torch.Tensor) -> None:
        self.below += (kl < self.eps).sum(0).to(self.below.dtype)
        self.total += kl.shape[0]

    def compute(self) -> torch.Tensor:
        collapsed = self.below / self.total >= 1 - self.delta  # [d]
        return collapsed.double().mean()


class GaussianFrechetDistance(Metric):
    """The "FID-like" score of the MLAE paper, Table 1 (after Caterini et al. 2021): the squared
    Wasserstein-2 (Frechet) distance between the Gaussians fitted to real and generated data,

        |mu_r - mu_g|^2 + tr(S_r + S_g - 2 (S_r^{1/2} S_g S_r^{1/2})^{1/2}),

    the FID formula applied to the data themselves (no Inception features). Lower is better; 0 when
    both sets have the same mean and covariance. The states are sums of x and x x^T in float64, so the
    score is exact under DDP. ``update(samples [n, D], real)`` as torchmetrics' FID; the trace of the
    matrix square root is the sum of the square roots of the eigenvalues of S_r S_g.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, num_features: int, **kwargs):
        super().__init__(**kwargs)
        for kind in ("real", "fake"):
            self.add_state(f"{kind}_count", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{kind}_sum", default=torch.zeros(num_features, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{kind}_outer", default=torch.zeros(num_features, num_features, dtype=torch.float64),
                           dist_reduce_fx="sum")

    def update(self, samples: torch.Tensor, real: bool) -> None:
        kind = "real" if real else "fake"
        flat = samples.flatten(start_dim=1).double()  # [n, D]
        setattr(self, f"{kind}_count", getattr(self, f"{kind}_count") + len(flat))
        setattr(self, f"{kind}_sum", getattr(self, f"{kind}_sum") + flat.sum(0))
        setattr(self, f"{kind}_outer", getattr(self, f"{kind}_outer") + flat.T @ flat)

    def _moments(self, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``[D]`` and unbiased covariance ``[D, D]``."""
        n = getattr(self, f"{kind}_count")
        if n < 2:
            raise ValueError(f"GaussianFrechetDistance needs at least 2 {kind} samples; got {int(n)}.")
        mean = getattr(self, f"{kind}_sum") / n
        covariance = (getattr(self, f"{kind}_outer") - n * torch.outer(mean, mean)) / (n - 1)
        return mean, covariance

    def compute(self) -> torch.Tensor:
        mean_r, cov_r = self._moments("real")
        mean_g, cov_g = self._moments("fake")
        sqrt_trace = torch.linalg.eigvals(cov_r @ cov_g).real.clamp_min(0).sqrt().sum()
        return (mean_r - mean_g).pow(2).sum() + torch.trace(cov_r) + torch.trace(cov_g) - 2 * sqrt_trace
