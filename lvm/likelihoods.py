"""Observation models p(x | z) parameterised by the decoder output.

Every likelihood takes flattened data ``x: [b, D]`` and decoder outputs ``params: [m, D]``.
``pairwise_log_prob`` returns ``log p(x_i | z_j)`` for every pair as a ``[b, m]`` matrix
*without* materialising a ``[b, m, D]`` tensor: both families are exponential families whose
log-density is linear in ``x`` given the parameters, so the pairwise table is one matrix
product plus a row term and a column term. This is the inner loop of eq. 5.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lvm.numerics.gaussian import LOG_2PI, diagonal_gaussian_log_prob

__all__ = ["Likelihood", "BernoulliLikelihood", "GaussianLikelihood", "HeteroscedasticGaussianLikelihood"]


class Likelihood(nn.Module):
    """Base class: a conditionally independent distribution over the ``D`` data dimensions.

    ``params_per_dim`` is the number of decoder outputs per data dimension: 1 (the decoder outputs
    ``[n, *data_shape]``) or k > 1 (it outputs ``[n, k, *data_shape]``, flattened to ``[n, k D]``).
    Every method takes flattened parameters ``[..., k D]``.
    """

    params_per_dim = 1

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """``log p(x | params)`` summed over dimensions; ``x`` and ``params`` broadcast ``[..., D]``."""
        raise NotImplementedError

    def pairwise_log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """``log p(x_i | params_j)`` for ``x: [b, D]``, ``params: [m, D]`` -> ``[b, m]``."""
        raise NotImplementedError

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """``E[x | params]``, the decoded image f_theta(z)."""
        raise NotImplementedError

    def sample(self, params: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def mean_fisher_information(self, mean: torch.Tensor) -> torch.Tensor:
        """The Fisher information of each data dimension with respect to its mean, ``[..., D]``:
        ``J^T diag(F) J`` with the decoder Jacobian J is the Gauss-Newton curvature of
        ``-log p(x | z)`` in z (the Laplace proposal of :class:`lvm.posteriors.PointMassPosterior`)."""
        raise NotImplementedError


class BernoulliLikelihood(Likelihood):
    """Independent Bernoulli pixels with logits ``l``:

    ``log p(x | l) = sum_k x_k l_k - softplus(l_k)``, hence pairwise
    ``x @ l^T - sum_k softplus(l_jk)`` (a ``[b, m]`` matmul and a ``[m]`` column term).
    For grey-level ``x`` in [0, 1] (as in the paper's MNIST runs) this is the binary cross-entropy.
    """

    def log_prob(self, x, params):
        return (x * params - F.softplus(params)).sum(-1)

    def pairwise_log_prob(self, x, params):
        return x @ params.T - F.softplus(params).sum(-1)[None, :]  # [b, m]

    def mean(self, params):
        return torch.sigmoid(params)

    def sample(self, params):
        return torch.bernoulli(torch.sigmoid(params))

    def mean_fisher_information(self, mean):
        return 1.0 / (mean * (1 - mean)).clamp_min(1e-6)  # 1 / (mu (1 - mu))


class GaussianLikelihood(Likelihood):
    """Isotropic Gaussian with fixed variance ``s2`` (0.1 in the paper, appendix B):

    ``log p(x | mu) = -(|x|^2 - 2 x.mu + |mu|^2) / (2 s2) - D/2 log(2 pi s2)``, hence pairwise
    a ``[b, m]`` matmul plus the row term ``|x_i|^2`` and the column term ``|mu_j|^2``.

    Args:
        variance: the fixed observation variance ``s2``.
        mean_activation: ``"sigmoid"`` maps the decoder output into (0, 1) (images, as in the
            paper's decoders whose last layer is a sigmoid); ``"identity"`` for unbounded data.
    """

    def __init__(self, variance: float = 0.1, mean_activation: str = "sigmoid"):
        super().__init__()
        if variance <= 0:
            raise ValueError(f"GaussianLikelihood needs a positive variance; got {variance}.")
        if mean_activation not in ("sigmoid", "identity"):
            raise ValueError(f"mean_activation must be 'sigmoid' or 'identity'; got {mean_activation!r}.")
        self.variance = variance
        self.mean_activation = mean_activation

    def mean(self, params):
        return torch.sigmoid(params) if self.mean_activation == "sigmoid" else params

    def _normalizer(self, num_dims: int) -> float:
        return -0.5 * num_dims * math.log(2 * math.pi * self.variance)

    def log_prob(self, x, params):
        squared_error = (x - self.mean(params)).pow(2).sum(-1)
        return -0.5 * squared_error / self.variance + self._normalizer(x.shape[-1])

    def pairwise_log_prob(self, x, params):
        mu = self.mean(params)  # [m, D]
        squared_distance = (
            x.pow(2).sum(-1)[:, None] - 2 * x @ mu.T + mu.pow(2).sum(-1)[None, :]
        ).clamp_min(0.0)  # [b, m]; clamp float round-off of the expansion
        return -0.5 * squared_distance / self.variance + self._normalizer(x.shape[-1])

    def sample(self, params):
        mu = self.mean(params)
        return mu + math.sqrt(self.variance) * torch.randn_like(mu)

    def mean_fisher_information(self, mean):
        return torch.full_like(mean, 1.0 / self.variance)



class HeteroscedasticGaussianLikelihood(Likelihood):
    """Gaussian with a decoded mean and a decoded variance per dimension (R-VAE paper, eq. 2.3):
    the decoder outputs ``[n, 2, *data_shape]``, the mean parameter and the log-variance
    (e.g. :class:`lvm.networks.MeanPrecisionDecoder`); flattened ``[..., 2D] = [mean | log-variance]``.

    Pairwise, ``log p(x_i | mu_j, v_j) = -1/2 [x_i^2 . (1/v_j) - 2 x_i . (mu_j / v_j) + sum mu_j^2 / v_j
    + sum log 2 pi v_j]``: two ``[b, m]`` matrix products plus a column term.

    Args:
        mean_activation: ``"sigmoid"`` (images, as the R-VAE's decoder mean) or ``"identity"``.
    """

    params_per_dim = 2

    def __init__(self, mean_activation: str = "sigmoid"):
        super().__init__()
        if mean_activation not in ("sigmoid", "identity"):
            raise ValueError(f"mean_activation must be 'sigmoid' or 'identity'; got {mean_activation!r}.")
        self.mean_activation = mean_activation

    def split(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance ``[..., D]`` each from ``[..., 2D]``."""
        raw_mean, log_var = params.chunk(2, dim=-1)
        return (torch.sigmoid(raw_mean) if self.mean_activation == "sigmoid" else raw_mean), log_var

    def mean(self, params):
        return self.split(params)[0]

    def std(self, params: torch.Tensor) -> torch.Tensor:
        """The decoded standard deviation sigma(z), ``[..., D]``."""
        return torch.exp(0.5 * self.split(params)[1])

    def immersion(self, params: torch.Tensor) -> torch.Tensor:
        """``(mu, sigma)`` ``[..., 2D]``: the point of the ambient space whose Euclidean geometry the latent space
        inherits (R-VAE paper, eq. 2.4; the pull-back metric of z -> (mu(z), sigma(z)) is eq. 2.5)."""
        return torch.cat([self.mean(params), self.std(params)], dim=-1)

    def log_prob(self, x, params):
        mean, log_var = self.split(params)
        return diagonal_gaussian_log_prob(x, mean, log_var)

    def pairwise_log_prob(self, x, params):
        mean, log_var = self.split(params)  # [m, D] each
        precision = torch.exp(-log_var)
        column = (mean.pow(2) * precision + log_var).sum(-1) + x.shape[-1] * LOG_2PI  # [m]
        return -0.5 * (x.pow(2) @ precision.T - 2 * x @ (mean * precision).T + column[None, :])  # [b, m]

    def sample(self, params):
        mean, log_var = self.split(params)
        return mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)

    def mean_fisher_information(self, mean):
        raise NotImplementedError("The Fisher information of a heteroscedastic Gaussian depends on the variance.")
