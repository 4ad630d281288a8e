"""Observation models p(x | z) parameterised by the decoder output.

Every likelihood takes flattened data ``x: [b, D]`` and decoder outputs ``params: [m, D]``.
``pairwise_log_prob`` returns ``log p(x_i | z_j)`` for every pair as a ``[b, m]`` matrix
*without* materialising a ``[b, m, D]`` tensor: every family here is an exponential family (given its
per-feature scale or dispersion) whose log-density is linear in ``x``, or in ``x`` and ``x^2``, given the
parameters, so the pairwise table is one or two matrix products plus a row term (``x`` only) and a column term
(parameters only). This is the inner loop of eq. 5 of "Quasi-Monte Carlo latent variable models" (the QLVM paper).

Which to choose: binary or [0, 1] images -> :class:`BernoulliLikelihood`; real values -> :class:`GaussianLikelihood`
(``learn_variance`` when the noise level is unknown); counts (spikes, reads) -> :class:`PoissonLikelihood`, or
:class:`NegativeBinomialLikelihood` when they are over-dispersed (variance above the mean, as single-cell counts).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lvm.numerics.gaussian import LOG_2PI, diagonal_gaussian_log_prob

__all__ = ["Likelihood", "BernoulliLikelihood", "GaussianLikelihood", "HeteroscedasticGaussianLikelihood",
           "PoissonLikelihood", "NegativeBinomialLikelihood", "SUPPORTS"]

# What values of x a likelihood has a density for (datamodules check their data against it before a run starts).
SUPPORTS = ("real", "unit_interval", "counts")


class Likelihood(nn.Module):
    """Base class: a conditionally independent distribution over the ``D`` data dimensions.

    ``params_per_dim`` is the number of decoder outputs per data dimension: 1 (the decoder outputs
    ``[n, *data_shape]``) or k > 1 (it outputs ``[n, k, *data_shape]``, flattened to ``[n, k D]``).
    Every method takes flattened parameters ``[..., k D]``.
    """

    params_per_dim = 1
    support = "real"
    # log_prob is a density in x (per unit of x), not a probability mass: bits/dim of quantised data then add the
    # log-volume of a quantisation bin (lvm.estimators.heldout.bits_per_dim).
    density = True

    def attach(self, num_features: int) -> None:
        """Called by the model once the data size ``D`` is known (from the decoder's output): likelihoods with a
        learned scale per feature create their parameters here."""

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """``log p(x | params)`` summed over dimensions; ``x`` and ``params`` broadcast ``[..., D]``."""
        raise NotImplementedError

    def pairwise_log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """``log p(x_i | params_j)`` for ``x: [b, D]``, ``params: [m, D]`` -> ``[b, m]``."""
        raise NotImplementedError

    def modulated_pairwise_log_prob(self, x: torch.Tensor, outputs: torch.Tensor, gain: torch.Tensor,
                                    offset: torch.Tensor) -> torch.Tensor | None:
        """``log p(x_i | params_ij)`` ``[b, m]`` for parameters modulated per example, ``params_ij = outputs_j * (1 +
        gain_i) + offset_i`` (a conditional decoder, :mod:`lvm.covariates`; ``outputs: [m, D]``, ``gain, offset: [b,
        D]``), where a family can do it in matrix products; ``None`` otherwise (the caller then groups the examples
        by covariate row and calls :meth:`pairwise_log_prob` per group)."""
        return None

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

    support = "unit_interval"
    density = False  # a probability mass on binary x (a cross-entropy on grey levels)

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
    """Gaussian with a decoded mean and a variance ``s2`` that is fixed (0.1 in the QLVM paper, appendix B) or
    learned, one for all features or one per feature:

    ``log p(x | mu) = -sum_k (x_k^2 - 2 x_k mu_k + mu_k^2) / (2 s2_k) - 1/2 sum_k log(2 pi s2_k)``, hence pairwise
    one ``[b, m]`` matmul ``(x / s2) @ mu^T`` plus the row term ``sum x^2 / s2`` and the column term
    ``sum mu^2 / s2``. The maximum-likelihood variance given the means is the mean squared residual (per feature, or
    over all of them), which a learned variance approaches.

    Args:
        variance: the fixed observation variance ``s2``, or the starting value of a learned one.
        mean_activation: ``"sigmoid"`` maps the decoder output into (0, 1) (images, as in the
            paper's decoders whose last layer is a sigmoid); ``"identity"`` for unbounded data.
        learn_variance: ``"none"`` (fixed), ``"shared"`` (one learned variance) or ``"per_feature"``.
        min_variance: a floor of a learned variance, ``s2 = min_variance + exp(parameter)``, so that a feature the
            decoder predicts exactly (a constant pixel) cannot send the likelihood to infinity.
        variance_lr_scale: the learned log-variance is ``variance_lr_scale * parameter``: Adam moves a parameter by
            about the learning rate per step, so this multiplies the speed at which the variance can fall from its
            starting value. Starting broad (a variance above the data's) and sharpening is what keeps lattice (QMC)
            training out of folded embeddings on informative data; a faster fall lets it reach the noise level
            within the run.
    """

    LEARN = ("none", "shared", "per_feature")

    def __init__(self, variance: float = 0.1, mean_activation: str = "sigmoid", learn_variance: str = "none",
                 min_variance: float = 1e-4, variance_lr_scale: float = 1.0):
        super().__init__()
        if variance <= 0:
            raise ValueError(f"GaussianLikelihood needs a positive variance; got {variance}.")
        if mean_activation not in ("sigmoid", "identity"):
            raise ValueError(f"mean_activation must be 'sigmoid' or 'identity'; got {mean_activation!r}.")
        if learn_variance not in self.LEARN:
            raise ValueError(f"learn_variance must be one of {list(self.LEARN)}; got {learn_variance!r}.")
        if learn_variance != "none" and not 0 <= min_variance < variance:
            raise ValueError(f"min_variance ({min_variance}) must be >= 0 and below the starting variance ({variance}).")
        if variance_lr_scale <= 0:
            raise ValueError(f"variance_lr_scale must be positive; got {variance_lr_scale}.")
        self.mean_activation, self.learn_variance, self.min_variance = mean_activation, learn_variance, min_variance
        self.initial_variance, self.variance_lr_scale = variance, variance_lr_scale
        if learn_variance == "shared":
            self.log_excess_variance = nn.Parameter(torch.tensor([self._start()]))
        else:
            self.register_parameter("log_excess_variance", None)  # per feature: created by attach

    def _start(self) -> float:
        return math.log(self.initial_variance - self.min_variance) / self.variance_lr_scale

    def attach(self, num_features: int) -> None:
        if self.learn_variance == "per_feature" and self.log_excess_variance is None:
            self.log_excess_variance = nn.Parameter(torch.full((num_features,), self._start()))

    @property
    def learned(self) -> bool:
        return self.learn_variance != "none"

    @property
    def variance(self) -> float | torch.Tensor:
        """``s2``: the fixed float, or the learned variance (a ``[1]`` or ``[D]`` tensor)."""
        if not self.learned:
            return self.initial_variance
        if self.log_excess_variance is None:
            raise RuntimeError("A per-feature variance is created when the model attaches the likelihood to its data "
                               "size (Likelihood.attach).")
        return self.min_variance + (self.variance_lr_scale * self.log_excess_variance).exp()

    def mean(self, params):
        return torch.sigmoid(params) if self.mean_activation == "sigmoid" else params

    def _log_normalizer(self, num_dims: int) -> float | torch.Tensor:
        """``-1/2 sum_k log(2 pi s2_k)`` over the ``num_dims`` features."""
        if not self.learned:
            return -0.5 * num_dims * math.log(2 * math.pi * self.initial_variance)
        log_var = self.variance.log().expand(num_dims)  # [D]
        return -0.5 * (num_dims * LOG_2PI + log_var.sum())

    def log_prob(self, x, params):
        squared_error = ((x - self.mean(params)).pow(2) / self.variance).sum(-1)
        return -0.5 * squared_error + self._log_normalizer(x.shape[-1])

    def pairwise_log_prob(self, x, params):
        mu = self.mean(params)  # [m, D]
        precision = 1.0 / self.variance  # float, [1] or [D]
        weighted = x * precision  # [b, D]
        column = mu.pow(2) @ precision.expand(mu.shape[-1]) if torch.is_tensor(precision) else mu.pow(2).sum(-1) * precision
        squared_distance = (
            (weighted * x).sum(-1)[:, None] - 2 * weighted @ mu.T + column[None, :]
        ).clamp_min(0.0)  # [b, m]; clamp float round-off of the expansion
        return -0.5 * squared_distance + self._log_normalizer(x.shape[-1])

    def modulated_pairwise_log_prob(self, x, outputs, gain, offset):
        """With the identity mean, ``mu_ij = a_i o_j + c_i`` (``a = 1 + gain``, ``c = offset``) is linear in the
        outputs, so ``sum_k (x_ik - mu_ijk)^2 / s2_k = sum_k (x_ik - c_ik)^2 / s2_k - 2 ((x_i - c_i) a_i / s2) . o_j +
        (a_i^2 / s2) . o_j^2``: two ``[b, m]`` matmuls whatever the number of distinct covariate values."""
        if self.mean_activation != "identity":
            return None
        precision = 1.0 / torch.as_tensor(self.variance, dtype=x.dtype, device=x.device)  # [], [1] or [D]
        scale, residual = 1 + gain, x - offset  # [b, D]
        weighted = residual * precision
        squared_distance = ((weighted * residual).sum(-1)[:, None] - 2 * (weighted * scale) @ outputs.T
                            + (scale.pow(2) * precision) @ outputs.pow(2).T).clamp_min(0.0)  # [b, m]
        return -0.5 * squared_distance + self._log_normalizer(x.shape[-1])

    def sample(self, params):
        mu = self.mean(params)
        return mu + torch.as_tensor(self.variance, dtype=mu.dtype, device=mu.device).sqrt() * torch.randn_like(mu)

    def mean_fisher_information(self, mean):
        return (1.0 / torch.as_tensor(self.variance, dtype=mean.dtype, device=mean.device)).expand_as(mean).clone()


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


class PoissonLikelihood(Likelihood):
    """Independent Poisson counts with a decoded log-rate ``eta`` (spike counts, reads):

    ``log p(x | eta) = sum_k x_k eta_k - exp(eta_k) - log Gamma(x_k + 1)``, hence pairwise one ``[b, m]`` matmul
    ``x @ eta^T`` plus the row term ``-sum log x!`` and the column term ``-sum exp(eta)``. The decoded mean is
    ``exp(eta)``; its Fisher information is ``1 / mean``.
    """

    support = "counts"
    density = False  # a probability mass on the integers

    def log_prob(self, x, params):
        return (x * params - params.exp() - torch.lgamma(x + 1)).sum(-1)

    def pairwise_log_prob(self, x, params):
        row = torch.lgamma(x + 1).sum(-1)  # [b]
        return x @ params.T - params.exp().sum(-1)[None, :] - row[:, None]  # [b, m]

    def mean(self, params):
        return params.exp()

    def sample(self, params):
        return torch.poisson(params.exp())

    def mean_fisher_information(self, mean):
        return 1.0 / mean.clamp_min(1e-6)


class NegativeBinomialLikelihood(Likelihood):
    """Over-dispersed counts (single-cell expression, overdispersed spike counts): a negative binomial with a decoded
    log-mean ``eta`` and a learned dispersion ``r_k`` per feature (or one shared), variance ``mu + mu^2 / r``
    (the parameterisation of "Deep generative modeling for single-cell transcriptomics", Lopez et al. 2018):

    ``log p(x | eta) = sum_k log Gamma(x_k + r_k) - log Gamma(r_k) - log Gamma(x_k + 1)
    + x_k log(mu_k / (mu_k + r_k)) + r_k log(r_k / (mu_k + r_k))`` with ``mu = exp(eta)``.

    Since ``r`` depends on the feature only, the Gamma terms are a row term, and pairwise the table is one ``[b, m]``
    matmul ``(x + r) @ log(mu / (mu + r))^T`` (the ``r`` folds in the column term ``sum r log(r / (mu + r))`` but for
    ``r . (log r - eta)``, a matrix-vector product) plus the row term. The Fisher information of
    the mean is ``r / (mu (mu + r))``.

    Args:
        dispersion: the starting value of ``r`` (large ``r``: close to Poisson).
        learn_dispersion: ``"per_feature"`` (default), ``"shared"`` or ``"none"`` (``r`` fixed).
    """

    support = "counts"
    density = False  # a probability mass on the integers
    LEARN = ("none", "shared", "per_feature")

    def __init__(self, dispersion: float = 1.0, learn_dispersion: str = "per_feature"):
        super().__init__()
        if dispersion <= 0:
            raise ValueError(f"NegativeBinomialLikelihood needs a positive dispersion; got {dispersion}.")
        if learn_dispersion not in self.LEARN:
            raise ValueError(f"learn_dispersion must be one of {list(self.LEARN)}; got {learn_dispersion!r}.")
        self.initial_dispersion, self.learn_dispersion = dispersion, learn_dispersion
        start = torch.tensor([math.log(dispersion)])
        if learn_dispersion == "shared":
            self.log_dispersion = nn.Parameter(start)
        elif learn_dispersion == "none":
            self.register_buffer("log_dispersion", start)
        else:
            self.register_parameter("log_dispersion", None)  # per feature: created by attach

    def attach(self, num_features: int) -> None:
        if self.learn_dispersion == "per_feature" and self.log_dispersion is None:
            self.log_dispersion = nn.Parameter(torch.full((num_features,), math.log(self.initial_dispersion)))

    @property
    def dispersion(self) -> torch.Tensor:
        """``r``, a ``[1]`` or ``[D]`` tensor."""
        if self.log_dispersion is None:
            raise RuntimeError("A per-feature dispersion is created when the model attaches the likelihood to its data "
                               "size (Likelihood.attach).")
        return self.log_dispersion.exp()

    def _row(self, x: torch.Tensor) -> torch.Tensor:
        """The terms of ``x`` and ``r`` only, summed over features: ``[..., D] -> [...]``."""
        r = self.dispersion
        return (torch.lgamma(x + r) - torch.lgamma(r) - torch.lgamma(x + 1)).sum(-1)

    def log_prob(self, x, params):
        logit = params - self.log_dispersion  # log(mu / r)
        log_p = F.logsigmoid(logit)  # log(mu / (mu + r)); log(r / (mu + r)) = log_p - logit, neither overflows
        return self._row(x) + (x * log_p + self.dispersion * (log_p - logit)).sum(-1)

    def pairwise_log_prob(self, x, params):
        r = self.dispersion.expand(params.shape[-1])  # [D]
        log_p = F.logsigmoid(params - self.log_dispersion)  # [m, D]
        # x_i . log_p_j + sum_k r_k log(r_k / (mu_jk + r_k)), with log(r / (mu + r)) = log_p - eta + log r:
        # (x_i + r) . log_p_j - r . eta_j + r . log r, one matmul and one matrix-vector product
        column = (r * r.log()).sum() - params @ r  # [m]
        return (x + r) @ log_p.T + column[None, :] + self._row(x)[:, None]  # [b, m]

    def mean(self, params):
        return params.exp()

    def sample(self, params):
        r = self.dispersion.expand_as(params)
        return torch.distributions.NegativeBinomial(total_count=r, logits=params - self.log_dispersion).sample()

    def mean_fisher_information(self, mean):
        r = self.dispersion
        return r / (mean.clamp_min(1e-6) * (mean + r))
