"""Sampling-free Taylor-linearised Gaussian VAE objective (closed form, no reparameterisation).

Paper: "A Sampling-Free Approximation of Gaussian Variational Auto-Encoders"
(anonymous ICLR 2022 submission), sections 3.2-3.3. With q(z | x) = N(g(x), h(x)),
the decoder mean f is linearised at the encoder mean (eq. 10),

    f(g(x) + e) ~= f(g(x)) + J e,      J = df/dz at g(x)   ([n, m], forward-mode JVPs),

which is exact inside the linear region of a ReLU decoder and a first-order Taylor expansion for
tanh/ELU decoders. Then f(z) + o ~ N(f(g(x)), Sigma_x) with Sigma_x = c I + J h(x) J^T (eq. 13), and

    ELBO ~= log N(x; f(g(x)), Sigma_x) - KL(q(z | x) || N(0, I))                      (eq. 20)

with the log-density evaluated through U = J diag(sqrt h(x)) on m x m matrices only (eq. 19;
:func:`lvm.numerics.gaussian.lowrank_gaussian_log_prob`) and Sigma_x^{-1} replaced by
gamma Sigma_x^{-1} + (1 - gamma) (c I)^{-1} (eq. 21; gamma = 0.5 as in the paper). The observation
variance c is the model's ``GaussianLikelihood`` variance (0.5 in the paper's configs).
"""

from __future__ import annotations

from lvm.divergences import kl_divergence
from lvm.numerics.jacobians import forward_jacobian
from lvm.likelihoods import GaussianLikelihood
from lvm.numerics.gaussian import lowrank_gaussian_log_prob
from lvm.objective import Objective
from lvm.posteriors import DiagonalGaussianPosterior
from lvm.priors import StandardNormalPrior

__all__ = ["TaylorELBO"]


class TaylorELBO(Objective):
    """Args:
        gamma: weight of the decoder-induced covariance in the quadratic term (section 3.3):
            1 is the plain linearised ELBO, smaller values regularise towards an autoencoder.
    """

    def __init__(self, gamma: float = 0.5):
        super().__init__()
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1] (section 3.3); got {gamma}.")
        self.gamma = gamma

    def validate(self, model):
        # the linearised Gaussian observation model N(f(z), c I)
        self.require(model, prior=StandardNormalPrior, posterior=DiagonalGaussianPosterior, likelihood=GaussianLikelihood)
        self.refuse_sessions(model, "its closed form is over every feature of the decoded mean, and a session's "
                                    "example has only its own")
        if model.likelihood.learned:
            raise ValueError("TaylorELBO derives from a Gaussian likelihood of fixed variance c; set "
                             "model.likelihood.init_args.learn_variance: none.")

    def forward(self, model, x):
        params = model.encode(x)
        mean, log_var = model.posterior.mean_and_log_var(params)  # g(x), log h(x): [b, m]
        decoded_mean, jacobian = forward_jacobian(model.decoded_mean, mean)  # f(g(x)): [b, n], J: [b, n, m]
        factor = jacobian * (0.5 * log_var).exp().unsqueeze(1)  # U = J diag(sqrt h): [b, n, m]
        residual = decoded_mean - model.flatten(x)
        reconstruction = lowrank_gaussian_log_prob(residual, factor, model.likelihood.variance, self.gamma)
        kl = kl_divergence(model.posterior, model.prior, params).sum(-1)
        elbo = reconstruction - kl
        return {"loss": -elbo.mean(), "taylor_elbo": elbo.mean(), "reconstruction": reconstruction.mean(),
                "kl": kl.mean()}
