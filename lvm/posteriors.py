"""Posterior families q(z | x) that read an encoder's output.

A :class:`Posterior` turns the encoder's output ``params: [b, output_size(d)]`` into a distribution over
latent values. It knows its output size (so an encoder config names no latent dimension or output kind:
the CLI links ``encoder.init_args.out_features`` to ``posterior.output_size(prior.dim)``) and gives
``code(params)`` (the point code: the mean, or the code of an autoencoder), ``rsample(params, k)``
(reparameterised draws ``[k, b, d]``), ``log_prob(z, params)`` and ``proposal(params)``, the
importance-sampling proposal of held-out evaluation (:mod:`lvm.estimators.heldout`). A family that draws on the
decoder's manifold (the Brownian step) receives the decoder's immersion as an argument, never the model.

Families: :class:`DiagonalGaussianPosterior` (VAE, IWAE, Taylor VAE), :class:`PointMassPosterior` (MLAE,
dithered lattice codes; its held-out proposal is the Laplace approximation around the code, :meth:`PointMassPosterior.laplace_proposal`) and
:class:`BrownianStepPosterior` (R-VAE: a centre and one time, drawn by one Brownian step on the decoder's
manifold).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.func import hessian, vmap

from lvm.numerics.gaussian import LOG_2PI, diagonal_gaussian_log_prob, half_log_det
from lvm.numerics.geometry import Immersion
from lvm.numerics.jacobians import forward_jacobian
from lvm.priors import BrownianMotionPrior

__all__ = ["Posterior", "DiagonalGaussianPosterior", "PointMassPosterior", "BrownianStepPosterior",
           "laplace_precision", "Proposal"]

Proposal = Callable[[int], tuple[torch.Tensor, torch.Tensor]]  # k -> (z [k, b, d], log q(z) [k, b])


class Posterior(nn.Module):
    """Base class of posterior families."""

    def output_size(self, dim: int) -> int:
        """How many features the encoder outputs for a ``dim``-dimensional latent."""
        raise NotImplementedError

    def check(self, prior) -> None:
        """Raise a ``ValueError`` saying what to change if this family cannot be used with ``prior``."""

    def code(self, params: torch.Tensor) -> torch.Tensor:
        """The point code ``[b, d]``: the mean of q(z | x), or an autoencoder's code."""
        raise NotImplementedError

    def rsample(self, params: torch.Tensor, num_samples: int, immersion: Immersion | None = None) -> torch.Tensor:
        """Reparameterised draws ``[k, b, d]`` (``immersion``: the decoder's, read by families on its manifold)."""
        raise NotImplementedError

    def log_prob(self, z: torch.Tensor, params: torch.Tensor, immersion: Immersion | None = None) -> torch.Tensor:
        """``log q(z | x)`` for ``z: [k, b, d]`` -> ``[k, b]`` (Lebesgue density)."""
        raise NotImplementedError

    def proposal(self, params: torch.Tensor, immersion: Immersion | None = None) -> Proposal:
        """The importance-sampling proposal of held-out evaluation: a function ``k -> (z, log q(z))``; q itself by
        default."""

        def draw(k: int) -> tuple[torch.Tensor, torch.Tensor]:
            z = self.rsample(params, k, immersion)
            return z, self.log_prob(z, params, immersion)

        return draw

    def spread_and_entropy(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The standard deviation of q(z | x) per coordinate ``[b, d]`` and its differential entropy ``[b]`` (nats),
        where the family has a closed form; NaN otherwise."""
        code = self.code(params)
        return torch.full_like(code, math.nan), torch.full(code.shape[:1], math.nan, dtype=code.dtype, device=code.device)

    def _check(self, params: torch.Tensor, dim: int) -> None:
        expected = self.output_size(dim)
        if params.shape[-1] != expected:
            raise ValueError(f"{type(self).__name__} reads {expected} encoder outputs for a {dim}-D latent; the encoder "
                             f"output {params.shape[-1]}. Set encoder.init_args.out_features: {expected} (the CLI sets it).")


class DiagonalGaussianPosterior(Posterior):
    """``q(z | x) = N(mu(x), diag sigma(x)^2)`` from ``params = (mu, log sigma^2)`` ``[b, 2d]``."""

    def output_size(self, dim):
        return 2 * dim

    def mean_and_log_var(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance ``[b, d]`` each."""
        mean, log_var = params.chunk(2, dim=-1)
        return mean, log_var

    def code(self, params):
        return self.mean_and_log_var(params)[0]

    def rsample(self, params, num_samples, immersion=None):
        mean, log_var = self.mean_and_log_var(params)
        eps = torch.randn(num_samples, *mean.shape, dtype=mean.dtype, device=mean.device)
        return mean + torch.exp(0.5 * log_var) * eps  # [k, b, d]

    def log_prob(self, z, params, immersion=None):
        mean, log_var = self.mean_and_log_var(params)
        return diagonal_gaussian_log_prob(z, mean, log_var)

    def spread_and_entropy(self, params):
        """``sigma(x)`` and ``sum_k 1/2 log(2 pi e sigma_k^2)``."""
        _, log_var = self.mean_and_log_var(params)
        return torch.exp(0.5 * log_var), 0.5 * (log_var + LOG_2PI + 1.0).sum(-1)


def precision_draw(cholesky: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """``L^{-T} eps`` for ``P = L L^T`` ``[b, d, d]`` and ``eps: [k, b, d]``: a draw from ``N(0, P^{-1})``."""
    return torch.linalg.solve_triangular(cholesky.mT, eps.unsqueeze(-1), upper=True).squeeze(-1)


def laplace_precision(decoded_mean: Callable[[torch.Tensor], torch.Tensor],
                      fisher_information: Callable[[torch.Tensor], torch.Tensor],
                      log_prior: Callable[[torch.Tensor], torch.Tensor], code: torch.Tensor) -> torch.Tensor:
    """``P = -d^2 log p(z) / dz^2 + J^T diag(F) J`` at the codes ``[b, d]`` -> ``[b, d, d]``: the Gauss-Newton
    curvature of ``-log p(x | z) p(z)``, with J = d mu / dz ``[b, D, d]`` (d JVPs of ``decoded_mean: z -> mu(z)``) and
    F = ``fisher_information(mu)`` ``[b, D]``, the likelihood's Fisher information about the mean (1/c for N(mu, c I));
    ``log_prior: z [d] -> []``. For the standard normal prior the first term is I."""
    mean, jacobian = forward_jacobian(decoded_mean, code)  # [b, D], [b, D, d]
    fisher = fisher_information(mean)  # [b, D]
    prior_curvature = -vmap(hessian(log_prior))(code)  # [b, d, d]
    return prior_curvature + jacobian.mT @ (fisher.unsqueeze(-1) * jacobian)


class PointMassPosterior(Posterior):
    """A deterministic code ``z = f(x)`` ``[b, d]`` (autoencoders: MLAE, dithered lattice codes). It has no density;
    its held-out proposal is the Laplace approximation around the code,

        q(z | x) = N(z0, P^{-1}),   P = :func:`laplace_precision`,

    exact for a linear decoder with Gaussian noise and z0 the posterior mean (every importance weight then
    equals p(x)). Draws: ``z = z0 + L^{-T} eps`` with ``P = L L^T``, so ``log q(z) = -d/2 log 2 pi + log det L
    - |eps|^2 / 2``."""

    def output_size(self, dim):
        return dim

    def code(self, params):
        return params

    def rsample(self, params, num_samples, immersion=None):
        return params.expand(num_samples, *params.shape)  # [k, b, d]

    def log_prob(self, z, params, immersion=None):
        raise ValueError("A point-mass posterior has no density; held-out evaluation uses its Laplace proposal "
                         "(laplace_proposal).")

    def laplace_proposal(self, params: torch.Tensor, precision: torch.Tensor) -> Proposal:
        """``N(z0, P^{-1})`` around the codes ``params`` ``[b, d]`` for the precisions ``P`` ``[b, d, d]``
        (:func:`laplace_precision`)."""
        code = params.detach()
        cholesky = torch.linalg.cholesky(precision)  # P = L L^T: [b, d, d]
        d = code.shape[1]
        log_normaliser = half_log_det(cholesky) - 0.5 * d * LOG_2PI

        def draw(k: int) -> tuple[torch.Tensor, torch.Tensor]:
            eps = torch.randn(k, *code.shape, dtype=code.dtype, device=code.device)  # [k, b, d]
            return code + precision_draw(cholesky, eps), log_normaliser - 0.5 * eps.pow(2).sum(-1)

        return draw


MIN_TIME, MAX_TIME = 1e-4, 5.0  # the posterior time's range in the R-VAE authors' code


class BrownianStepPosterior(Posterior):
    """The R-VAE posterior (Kalatzis et al. 2020, arXiv:2002.05227): a heat kernel with centre mu_q(x) and time
    t_q(x), read from ``params = (mu_q, log t_q)`` ``[b, d + 1]`` (an isotropic encoder), drawn by one Brownian
    step of duration t_q (eq. 3.14),

        z = mu_q + sqrt(t_q) L^{-T} eps,   G(mu_q) = L L^T,

    so that l^2(z, mu_q) ~ t_q |eps|^2 as for the heat kernel itself; its Lebesgue density is that of
    N(mu_q, t_q G(mu_q)^{-1}). G is the pull-back metric of the decoder's immersion, which every draw receives as an
    argument (``model.immersion()``; the prior is :class:`lvm.priors.BrownianMotionPrior`). A Euclidean draw z = mu_q + sqrt(t_q) eps, as in
    the authors' code, would let training shrink the KL without bound by inflating G at mu_q."""

    def output_size(self, dim):
        return dim + 1

    def check(self, prior) -> None:
        if not isinstance(prior, BrownianMotionPrior):
            raise ValueError("BrownianStepPosterior draws on the decoder's manifold: use it with "
                             f"lvm.priors.BrownianMotionPrior (got {type(prior).__name__}).")

    def centre_and_time(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The heat kernel's centre ``[b, d]`` and time ``[b]``."""
        return params[:, :-1], params[:, -1].exp().clamp(MIN_TIME, MAX_TIME)

    def code(self, params):
        return params[:, :-1]

    @staticmethod
    def _metric_at_centre(centre: torch.Tensor, immersion: Immersion | None) -> tuple[torch.Tensor, torch.Tensor]:
        """F(mu_q) ``[b, 2D]`` and the Cholesky factor of G(mu_q) = J^T J ``[b, d, d]``."""
        if immersion is None:
            raise ValueError("BrownianStepPosterior draws on the decoder's manifold: pass the decoder's immersion "
                             "(model.immersion()).")
        image, jacobian = forward_jacobian(immersion, centre)  # [b, 2D], [b, 2D, d]
        return image, torch.linalg.cholesky(jacobian.mT @ jacobian)

    def step(self, params: torch.Tensor, num_samples: int, immersion: Immersion):
        """``num_samples`` draws ``[k, b, d]`` by one Brownian step, with F(mu_q) ``[b, 2D]``, 1/2 log det G(mu_q)
        ``[b]`` and the draws' Lebesgue log-density ``[k, b]`` under N(mu_q, t_q G(mu_q)^{-1})."""
        centre, time = self.centre_and_time(params)
        image, cholesky = self._metric_at_centre(centre, immersion)
        log_volume_q = half_log_det(cholesky)
        eps = torch.randn(num_samples, *centre.shape, dtype=centre.dtype, device=centre.device)  # [k, b, d]
        z = centre + time.sqrt()[:, None] * precision_draw(cholesky, eps)
        d = centre.shape[1]
        log_density = log_volume_q - 0.5 * (eps.pow(2).sum(-1) + d * torch.log(2 * math.pi * time))
        return z, image, log_volume_q, log_density

    def rsample(self, params, num_samples, immersion=None):
        return self.step(params, num_samples, immersion)[0]

    def log_prob(self, z, params, immersion=None):
        centre, time = self.centre_and_time(params)
        cholesky = self._metric_at_centre(centre, immersion)[1]  # G(mu_q) = L L^T
        eps = (cholesky.mT @ (z - centre).unsqueeze(-1)).squeeze(-1) / time.sqrt()[:, None]  # [k, b, d]
        return half_log_det(cholesky) - 0.5 * (eps.pow(2).sum(-1) + centre.shape[1] * torch.log(2 * math.pi * time))

    def proposal(self, params, immersion=None):
        return lambda k: tuple(self.step(params, k, immersion)[i] for i in (0, 3))
