"""The decoder of "Variational Autoencoders with Riemannian Brownian Motion Priors", Kalatzis, Eklund,
Arvanitidis and Hauberg, 2020 (R-VAE paper, section 4): a mean network beside a radial-basis-function precision
network after "Latent Space Oddity: on the Curvature of Deep Generative Models", Arvanitidis, Hansen and
Hauberg, 2018.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lvm.numerics.derived import derived_weight


class RBFPrecision(nn.Module):
    """A radial-basis-function network for the decoder's precision (R-VAE paper, section 4 and Table 5;
    Arvanitidis et al. 2018):

        beta(z) = softplus(W) v(z) + floor,   v_k(z) = exp(-lambda_k |z - c_k|^2),

    with positive output weights, so the precision falls to ``floor`` (the variance grows to 1/floor)
    away from the centres c_k, and the pull-back metric grows off the data. The centres are k-means
    centres of the training codes (:meth:`fit_centres`; 350 in the paper). ``bandwidth`` fixes every
    lambda_k (0.01 in the paper, appendix C, whose codes are spread widely); ``bandwidth=None`` adapts
    them to the code scale as Arvanitidis et al.: lambda_k = 1/2 (a s_k)^-2, s_k the mean distance of
    cluster k's codes to its centre and a = ``bandwidth_scale``.

    Args:
        latent_dim: d.
        out_features: D, one precision per data dimension.
        num_centers: K.
        bandwidth: the factor on squared distances in the kernel, or ``None`` (per-centre, adaptive).
        bandwidth_scale: a, the kernel width in cluster radii when adaptive.
        floor: the precision far from the data.
    """

    def __init__(self, latent_dim: int, out_features: int, num_centers: int = 350, bandwidth: float | None = 0.01,
                 bandwidth_scale: float = 1.0, floor: float = 0.1):
        super().__init__()
        if (bandwidth is not None and bandwidth <= 0) or floor <= 0 or bandwidth_scale <= 0:
            raise ValueError(f"bandwidth, bandwidth_scale and floor must be positive; got {bandwidth}, "
                             f"{bandwidth_scale} and {floor}.")
        self.bandwidth, self.bandwidth_scale, self.floor, self.num_centers = bandwidth, bandwidth_scale, floor, num_centers
        self.register_buffer("centres", torch.randn(num_centers, latent_dim))
        self.register_buffer("inverse_widths", torch.full((num_centers,), bandwidth or 1.0))  # lambda_k
        self.raw_weight = nn.Parameter(torch.randn(out_features, num_centers) * 0.1 - 2.0)

    def _kernel_precision(self, z: torch.Tensor) -> torch.Tensor:
        """``softplus(W) v(z)``, the precision above the floor, ``[n, D]``."""
        centres = self.centres.to(z)
        squared = (z.pow(2).sum(-1, keepdim=True) - 2 * z @ centres.T + centres.pow(2).sum(-1)).clamp_min(0)  # [n, K]
        weight = derived_weight(self.raw_weight, nn.functional.softplus)  # [D, K], once per loss evaluation
        return torch.exp(-self.inverse_widths.to(z) * squared) @ weight.T

    @torch.no_grad()
    def fit_centres(self, codes: torch.Tensor, target: torch.Tensor | None = None, seed: int = 0) -> None:
        """Place the centres at the k-means centres of the codes ``[n, d]`` (scikit-learn) and, when
        adaptive, set each lambda_k from its cluster's spread. The output weights are then rescaled so
        that the mean precision over the codes is ``target`` ``[D]`` (e.g. the inverse residual
        variance of the reconstructions), or, without one, what it was before."""
        from sklearn.cluster import KMeans

        if len(codes) < self.num_centers:
            raise ValueError(f"k-means with {self.num_centers} centres needs at least as many codes; got {len(codes)}.")
        codes = codes.detach().to(self.centres)
        before = self._kernel_precision(codes).mean(0)  # [D]
        points = codes.cpu().double().numpy()
        kmeans = KMeans(self.num_centers, n_init=1, random_state=seed).fit(points)
        self.centres.copy_(torch.from_numpy(kmeans.cluster_centers_))
        if self.bandwidth is None:
            distances = np.linalg.norm(points - kmeans.cluster_centers_[kmeans.labels_], axis=1)
            counts = np.bincount(kmeans.labels_, minlength=self.num_centers)
            spread = np.bincount(kmeans.labels_, distances, minlength=self.num_centers) / np.maximum(counts, 1)
            spread = np.maximum(spread, spread[spread > 0].min() if (spread > 0).any() else 1.0)  # singletons
            self.inverse_widths.copy_(torch.from_numpy(0.5 / (self.bandwidth_scale * spread) ** 2))
        wanted = before if target is None else (target.to(before) - self.floor).clamp_min(1e-6)
        scale = wanted / self._kernel_precision(codes).mean(0).clamp_min(1e-12)  # [D]
        weight = (nn.functional.softplus(self.raw_weight) * scale[:, None]).clamp_min(1e-6)
        self.raw_weight.copy_(weight + torch.log(-torch.expm1(-weight)))  # softplus^-1

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self._kernel_precision(z) + self.floor  # [n, D]


class MeanPrecisionDecoder(nn.Module):
    """A decoder of a mean network and a precision network for
    :class:`lvm.likelihoods.HeteroscedasticGaussianLikelihood`: outputs ``[n, 2, *data_shape]``, the
    mean network's output and the log-variance ``-log beta(z)``."""

    def __init__(self, mean: nn.Module, precision: RBFPrecision):
        super().__init__()
        self.mean, self.precision = mean, precision

    def forward(self, features):
        mean = self.mean(features)  # [n, *data_shape]
        log_var = -torch.log(self.precision(features)).view_as(mean)
        return torch.stack([mean, log_var], dim=1)
