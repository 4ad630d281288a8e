"""Training a dithered lattice code through a Gaussian proxy ("Lattice Representation Learning", Lastras, 2020,
sections 3.4-3.6.2).

For the lattices without a closed-form representation cost (Z2, A2, E8 copies covering the t-dimensional latent,
section 4.1) the dither U and the source S are replaced by Gaussians U_G, S_G with learned variances, so eq. 5
becomes a Gaussian VAE with a point code e(x):

    L(x) = KL - E[log p(x | e(x) - U_G)] + (-log p(Z | U)),
    KL   = 1/2 (|e(x) - U_G|^2 / (s_u + s_s) - |U_G|^2 / s_u - t log(s_u / (s_u + s_s))),

with the lattice scaled by eq. 8 so its dither's second moment matches U_G's, and the pmf p(Z | U) of 3.4 trained
alongside on the quantized codes Z = K(e(x) + U) (the stop-gradient composite loss of eq. 6: Z carries no gradient
to the encoder). The prior :class:`lvm.priors.GaussianProxyLatticePrior` holds s_u, s_s and the pmf. Held-out
batches also report ``nll_1sample`` and ``code_length_bits`` of the quantized inference path (3.6.3).
"""

from __future__ import annotations

import math

import torch

from lvm.objective import Objective
from lvm.posteriors import PointMassPosterior
from lvm.priors import GaussianProxyLatticePrior
from lvm.estimators.variational import dithered_log_likelihood

__all__ = ["GaussianProxyLatticeObjective"]


class GaussianProxyLatticeObjective(Objective):
    """The Gaussian proxy of 3.5 plus the learned code length of the quantized code (eq. 6)."""

    def validate(self, model):
        self.require(model, prior=GaussianProxyLatticePrior, posterior=PointMassPosterior)

    def forward(self, model, x):
        prior, code = model.prior, model.latent_code(x)  # e(x): [b, t]
        var_u, var_s = prior.log_var_u.exp(), prior.log_var_s.exp()
        u_g = var_u.sqrt() * torch.randn_like(code)
        reconstruction = model.log_prob(x, (code - u_g)[None])[0]  # [b]
        kl = 0.5 * ((code - u_g).pow(2).sum(-1) / (var_u + var_s) - u_g.pow(2).sum(-1) / var_u
                    - code.shape[1] * torch.log(var_u / (var_u + var_s)))
        u, z = prior.dither_and_quantize(code)
        code_length = prior.code_length(z, u)  # trains the pmf only: z carries no gradient
        outputs = {"loss": (kl - reconstruction + code_length).mean(), "kl": kl.mean(),
                   "code_length_bits": code_length.mean() / math.log(2), "reconstruction": reconstruction.mean()}
        if not model.training:
            outputs["nll_1sample"] = -dithered_log_likelihood(lambda z: model.log_prob(x, z), prior, code, 1).mean()
        return outputs
