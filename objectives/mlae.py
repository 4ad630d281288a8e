"""MLAE: the maximum-likelihood autoencoder (``shared/papers/mlae-maximum-likelihood-autoencoders.txt``).

A deterministic encoder f and decoder g with a standard normal latent are trained by the
per-sample loss of eq. 8 / eq. 20,

    L(x) = -log p_Z(f(x)) - 1/K sum_k eps_k^T f'(x) sg(g'(z) eps_k) + beta |x_hat - x|^2,

z = f(x), x_hat = g(z): the negative log-likelihood of the generalised change of variables
(eq. 2) with the log-determinant replaced by its single-pass gradient surrogate (eq. 18, evaluated
off-manifold at x; :mod:`lvm.hutchinson`), plus the reconstruction term that keeps f and g a
pseudo-inverse pair. ``gradient_to="decoder"`` uses eq. 11 instead. The Hutchinson vectors are
orthogonalised and scaled to length sqrt(d) (appendix D.3). ``beta`` may ramp linearly over the
first epochs (appendix E.4 grows it from a tenth of its value to its value).

The loss *value* is not a likelihood (only its gradient is that of eq. 4); the held-out
``log_likelihood`` of every run is computed separately (:mod:`lvm.evaluation`).
"""

from __future__ import annotations

from lvm.hutchinson import GRADIENT_TARGETS, hutchinson_noise, log_det_surrogate

from .base import Objective

__all__ = ["MLAEObjective"]


class MLAEObjective(Objective):
    """Args:
        beta: reconstruction weight (10 for the image and tabular experiments of section 5.2).
        num_hutchinson: K Hutchinson vectors per example, 1 <= K <= d (K = 1 in the paper).
        gradient_to: ``"encoder"`` (eq. 18, default) or ``"decoder"`` (eq. 11).
        orthogonal_noise: orthogonalise the K vectors (D.3.5); ``False`` draws them independently.
        beta_start: the reconstruction weight at epoch 0 when ramping (``None``: no ramp).
        beta_ramp_epochs: epochs over which beta grows linearly from ``beta_start`` to ``beta``.
    """

    requires_encoder = True
    requires_gaussian_latent = True
    deterministic_encoder = True

    def __init__(self, beta: float = 10.0, num_hutchinson: int = 1, gradient_to: str = "encoder",
                 orthogonal_noise: bool = True, beta_start: float | None = None, beta_ramp_epochs: int = 0):
        super().__init__()
        if gradient_to not in GRADIENT_TARGETS:
            raise ValueError(f"gradient_to must be one of {GRADIENT_TARGETS}; got {gradient_to!r}.")
        if beta <= 0 or (beta_start is not None and beta_start <= 0):
            raise ValueError(f"The reconstruction weights must be positive; got beta={beta}, beta_start={beta_start}.")
        if beta_start is not None and beta_ramp_epochs < 1:
            raise ValueError("beta_start needs beta_ramp_epochs >= 1 (the length of the linear ramp).")
        self.beta, self.num_hutchinson, self.gradient_to = beta, num_hutchinson, gradient_to
        self.orthogonal_noise, self.beta_start, self.beta_ramp_epochs = orthogonal_noise, beta_start, beta_ramp_epochs

    def attach(self, model):
        super().attach(model)
        if not 1 <= self.num_hutchinson <= model.latent.dim:
            raise ValueError(
                f"num_hutchinson must lie between 1 and the latent dimension {model.latent.dim}; got {self.num_hutchinson}."
            )

    def beta_at(self, epoch: int) -> float:
        """The reconstruction weight at ``epoch``: linear from ``beta_start`` to ``beta``, then constant."""
        if self.beta_start is None:
            return self.beta
        progress = min(epoch / self.beta_ramp_epochs, 1.0)
        return self.beta_start + progress * (self.beta - self.beta_start)

    def forward(self, model, x):
        noise = hutchinson_noise(self.num_hutchinson, len(x), model.latent.dim, self.orthogonal_noise,
                                 dtype=x.dtype, device=x.device)  # [K, b, d]
        z, x_hat, log_det = log_det_surrogate(model.encoder, model.decoded_mean, x, noise, self.gradient_to)
        latent_nll = -model.latent.log_prior(z)  # [b]
        reconstruction = (x_hat - model.flatten(x)).pow(2).sum(-1)  # [b]
        beta = self.beta_at(model.current_epoch)
        loss = (latent_nll + log_det + beta * reconstruction).mean()
        return {"loss": loss, "latent_nll": latent_nll.mean(), "reconstruction": reconstruction.mean(),
                "beta": beta}
