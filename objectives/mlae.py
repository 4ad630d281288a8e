"""MLAE: the maximum-likelihood autoencoder ("Maximum Likelihood Training of Autoencoders", Sorrenson, Rousselot,
Zimmermann, Draxler, Hummerich et al., 2023).

A deterministic encoder f (a point-mass posterior) and decoder g with a standard normal prior are trained by the
per-sample loss of eq. 8 / eq. 20,

    L(x) = -log p_Z(f(x)) - 1/K sum_k eps_k^T f'(x) sg(g'(z) eps_k) + beta |x_hat - x|^2,

z = f(x), x_hat = g(z): the negative log-likelihood of the generalised change of variables
(eq. 2) with the log-determinant replaced by its single-pass gradient surrogate (eq. 18, evaluated
off-manifold at x; :mod:`lvm.numerics.hutchinson`), plus the reconstruction term that keeps f and g a
pseudo-inverse pair. ``gradient_to="decoder"`` uses eq. 11 instead. The Hutchinson vectors are
orthogonalised and scaled to length sqrt(d) (appendix D.3). ``beta`` may ramp linearly over the
first epochs (appendix E.4 grows it from a tenth of its value to its value).

beta and the model's Gaussian likelihood N(g(z), c I) are one quantity: beta |x - g(z)|^2 is the negative
log-density of that Gaussian up to a constant when c = 1 / (2 beta). So beta is read from the likelihood's
variance (state it once, as ``model.likelihood.init_args.variance``); a ``beta`` given here is checked against it.
The loss *value* is not a likelihood (only its gradient is that of eq. 4); the held-out ``log_likelihood`` of
every run is computed under N(g(z), c I) (:mod:`lvm.estimators.heldout`).
"""

from __future__ import annotations

import math

from lvm.numerics.hutchinson import GRADIENT_TARGETS, hutchinson_noise, log_det_surrogate
from lvm.likelihoods import GaussianLikelihood
from lvm.objective import Objective
from lvm.posteriors import PointMassPosterior
from lvm.priors import StandardNormalPrior

__all__ = ["MLAEObjective"]


class MLAEObjective(Objective):
    """Args:
        beta: reconstruction weight (10 for the image and tabular experiments of section 5.2); ``None`` (default):
            1 / (2c) from the Gaussian likelihood's variance c; a value is checked against it.
        num_hutchinson: K Hutchinson vectors per example, 1 <= K <= d (K = 1 in the paper).
        gradient_to: ``"encoder"`` (eq. 18, default) or ``"decoder"`` (eq. 11).
        orthogonal_noise: orthogonalise the K vectors (D.3.5); ``False`` draws them independently.
        beta_start: the reconstruction weight at epoch 0 when ramping (``None``: no ramp).
        beta_ramp_epochs: epochs over which beta grows linearly from ``beta_start`` to ``beta``.
    """

    def __init__(self, beta: float | None = None, num_hutchinson: int = 1, gradient_to: str = "encoder",
                 orthogonal_noise: bool = True, beta_start: float | None = None, beta_ramp_epochs: int = 0):
        super().__init__()
        if gradient_to not in GRADIENT_TARGETS:
            raise ValueError(f"gradient_to must be one of {GRADIENT_TARGETS}; got {gradient_to!r}.")
        if (beta is not None and beta <= 0) or (beta_start is not None and beta_start <= 0):
            raise ValueError(f"The reconstruction weights must be positive; got beta={beta}, beta_start={beta_start}.")
        if beta_start is not None and beta_ramp_epochs < 1:
            raise ValueError("beta_start needs beta_ramp_epochs >= 1 (the length of the linear ramp).")
        self.beta, self.num_hutchinson, self.gradient_to = beta, num_hutchinson, gradient_to
        self.orthogonal_noise, self.beta_start, self.beta_ramp_epochs = orthogonal_noise, beta_start, beta_ramp_epochs

    def validate(self, model):
        self.require(model, prior=StandardNormalPrior, posterior=PointMassPosterior, likelihood=GaussianLikelihood)
        self.refuse_sessions(model, "its reconstruction and log-determinant are over every feature of the decoded "
                                    "mean, and a session's example has only its own")
        if model.likelihood.learned:
            raise ValueError("MLAEObjective derives from a Gaussian likelihood of fixed variance c; set "
                             "model.likelihood.init_args.learn_variance: none.")
        if not 1 <= self.num_hutchinson <= model.prior.dim:
            raise ValueError(
                f"num_hutchinson must lie between 1 and the latent dimension {model.prior.dim}; got {self.num_hutchinson}."
            )
        derived = self.likelihood_beta(model)
        if self.beta is not None and not math.isclose(self.beta, derived, rel_tol=1e-6):
            raise ValueError(
                f"MLAEObjective(beta={self.beta}) needs the Gaussian likelihood N(g(z), c I) with c = 1 / (2 beta) = "
                f"{1 / (2 * self.beta):g}; the model's variance is {model.likelihood.variance:g} (beta = {derived:g}). "
                f"Set model.likelihood.init_args.variance: {1 / (2 * self.beta):g}, or leave beta out to read it from there."
            )

    @staticmethod
    def likelihood_beta(model) -> float:
        """beta = 1 / (2c) for the model's likelihood variance c."""
        return 1.0 / (2.0 * model.likelihood.variance)

    def beta_at(self, model, epoch: int) -> float:
        """The reconstruction weight at ``epoch``: linear from ``beta_start`` to beta, then constant."""
        beta = self.likelihood_beta(model)
        if self.beta_start is None:
            return beta
        progress = min(epoch / self.beta_ramp_epochs, 1.0)
        return self.beta_start + progress * (beta - self.beta_start)

    def forward(self, model, x):
        noise = hutchinson_noise(self.num_hutchinson, len(x), model.prior.dim, self.orthogonal_noise,
                                 dtype=x.dtype, device=x.device)  # [K, b, d]
        z, x_hat, log_det = log_det_surrogate(model.encoder, model.decoded_mean, x, noise, self.gradient_to)
        latent_nll = -model.prior.log_prob(z)  # [b]
        reconstruction = (x_hat - model.flatten(x)).pow(2).sum(-1)  # [b]
        beta = self.beta_at(model, model.current_epoch)
        loss = (latent_nll + log_det + beta * reconstruction).mean()
        return {"loss": loss, "latent_nll": latent_nll.mean(), "reconstruction": reconstruction.mean(),
                "beta": beta}
