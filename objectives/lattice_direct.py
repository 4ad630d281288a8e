"""Direct training of a dithered integer-lattice code ("Lattice Representation Learning", Lastras, 2020,
sections 3.3 and 3.6.1).

A deterministic code e(x) in R^t (a point-mass posterior) is dithered by U, uniform on the cell of the integer
lattice with learned scales Delta_i, and quantized, Z = K(e(x) + U); the decoder sees Z - U. By the crypto-lemma
(Lemma 1) Z - U is distributed as e(x) - U, and by Theorem 1 the code length -log p(Z | U) equals in expectation
log f_U(U) / f_{S-U}(e(x) - U), so training needs no quantization (eq. 5):

    L(x) = E_U[log f_U(U) / f_{S-U}(e(x) - U)] - E_U[log p(x | e(x) - U)],

with the representation cost in closed form for a Laplacian S with learned decay alpha_i (section 3.3). The prior
:class:`lvm.priors.LaplaceLatticePrior` holds Delta and alpha. Held-out batches also report ``nll_1sample``, the
one-sample NLL of the inference path (3.6.3: dither, quantize, subtract, decode, plus the code length).
"""

from __future__ import annotations

from lvm.objective import Objective
from lvm.posteriors import PointMassPosterior
from lvm.priors import LaplaceLatticePrior
from lvm.estimators.variational import dithered_log_likelihood

__all__ = ["DirectLatticeObjective"]


class DirectLatticeObjective(Objective):
    """Eq. 5 with the closed-form Laplacian representation cost."""

    def validate(self, model):
        self.require(model, prior=LaplaceLatticePrior, posterior=PointMassPosterior)

    def forward(self, model, x):
        code = model.latent_code(x)  # e(x): [b, t]
        u = model.prior.dither(len(code), dtype=code.dtype, device=code.device)  # Delta learns through U
        reconstruction = model.log_prob(x, (code - u)[None])[0]  # [b]
        representation = model.prior.representation_cost(code - u)  # [b]
        outputs = {"loss": (representation - reconstruction).mean(), "representation": representation.mean(),
                   "reconstruction": reconstruction.mean()}
        if not model.training:
            outputs["nll_1sample"] = -dithered_log_likelihood(lambda z: model.log_prob(x, z), model.prior, code, 1).mean()
        return outputs
