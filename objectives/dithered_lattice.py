"""Dithered lattice representations (``shared/papers/lattice-representation-learning.txt``).

A deterministic encoder e(x) in R^t is dithered by U, uniform over the Voronoi cell of a lattice, and
quantized, Z = K(e(x) + U); the decoder sees Z - U. By the crypto-lemma (Lemma 1) Z - U is
distributed as e(x) - U, and by Theorem 1 the code length -log p(Z | U) equals in expectation
log f_U(U) / f_{S-U}(e(x) - U), so training needs no quantization (eq. 5):

    L(x) = E_U[log f_U(U) / f_{S-U}(e(x) - U)] - E_U[log p(x | e(x) - U)].

Two training algorithms (section 3.6), ``training``:

* ``"direct"`` (3.3, 3.6.1): the integer lattice (one learned scale Delta_i per latent dimension) with
  a Laplacian S (learned decay alpha_i), whose representation cost and code length are closed form.
* ``"gaussian_proxy"`` (3.5, 3.6.2): U and S replaced by Gaussians U_G, S_G with learned variances
  (a Gaussian VAE), the lattice scaled by eq. 8 so that its dither's second moment matches U_G's, and a
  learned pmf p(Z | U) over lattice points (3.4) trained alongside on the quantized codes with the
  stop-gradient composite loss of eq. 6.

The t-dimensional latent is covered by t/m copies of an m-dimensional lattice (section 4.1):
``lattice`` is ``"Z"`` (direct training), ``"Z2"``, ``"A2"`` or ``"E8"``. Inference (3.6.3): dither,
quantize, subtract, decode; the one-sample NLL is -log p(x | Z - U) + code length, and
:meth:`held_out_log_likelihood` averages K samples in the importance-weighted way (Table 2's 1 and 10K).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lvm.quantizers import E8Lattice, HexagonalLattice, IntegerLattice, ProductLattice, Quantizer
from lvm.variational import importance_sampled_log_likelihood

from .base import Objective

__all__ = ["DitheredLatticeObjective", "laplace_representation_cost", "laplace_code_length", "LatticePMF"]

BASE_LATTICES = {"Z": lambda: IntegerLattice(1), "Z2": lambda: IntegerLattice(2), "A2": HexagonalLattice,
                 "E8": E8Lattice}


def _log_sinh(y: torch.Tensor) -> torch.Tensor:
    return y + torch.log1p(-torch.exp(-2 * y)) - math.log(2.0)


def laplace_representation_cost(eta: torch.Tensor, delta: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """log f_U(u) / f_{S-U}(eta) per coordinate for U uniform on (-Delta/2, Delta/2) and S Laplacian
    with decay alpha (section 3.3), at eta = s - u."""
    half = alpha * delta / 2
    inside = eta.abs() < delta / 2
    inner_eta = torch.where(inside, eta, torch.zeros_like(eta))  # keep cosh finite on the other branch
    inner = -torch.log1p(-torch.exp(-half) * torch.cosh(alpha * inner_eta))
    outer = alpha * eta.abs() - _log_sinh(half)
    return torch.where(inside, inner, outer)


def laplace_code_length(z: torch.Tensor, u: torch.Tensor, delta: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """-log p_{Z|U}(z | u) in nats per coordinate for Z = K(S + U) on Delta Z (section 3.3); ``z`` are
    the lattice points (multiples of Delta)."""
    return laplace_representation_cost(z - u, delta, alpha)


class LatticePMF(nn.Module):
    """The pmf over the points of an m-dimensional lattice given the dither (section 3.4): points of
    squared norm >= ``threshold`` get ``logsoftmax(psi)_{|a|^2} - log theta_{|a|^2}`` (a law on norms,
    uniform within a norm shell); the few points of smaller norm get a U-dependent categorical from a
    small network, and a learned U-dependent flag chooses between the two. Norms are those of the
    unscaled lattice; norms above ``max_norm`` share the last logit."""

    def __init__(self, lattice: Quantizer, threshold: int = 3, max_norm: int = 128, hidden: int = 32):
        super().__init__()
        self.lattice, self.threshold, self.max_norm = lattice, threshold, max_norm
        theta = lattice.theta_coefficients(max_norm).double()
        self.register_buffer("log_theta", torch.log(theta.clamp_min(1)), persistent=False)
        self.register_buffer("valid", (theta > 0) & (torch.arange(max_norm + 1) >= threshold), persistent=False)
        self.register_buffer("small_points", self._small_points(lattice, threshold), persistent=False)  # [s, m]
        self.psi = nn.Parameter(torch.zeros(max_norm + 1))
        self.small = nn.Sequential(nn.Linear(lattice.dim, hidden), nn.ReLU(), nn.Linear(hidden, len(self.small_points) + 1))

    @staticmethod
    def _small_points(lattice: Quantizer, threshold: int) -> torch.Tensor:
        points = lattice.short_vectors(threshold)
        return points[points.pow(2).sum(-1) < threshold - 1e-9]

    def log_prob(self, points: torch.Tensor, dither: torch.Tensor) -> torch.Tensor:
        """log p(a | u) for unscaled lattice points and dithers ``[..., m]`` -> ``[...]``."""
        norms = points.pow(2).sum(-1).round().long()  # integers for these lattices
        out = self.small(dither.to(self.psi))  # [..., s + 1]
        flag, small_logits = out[..., 0], out[..., 1:]
        distance = (points[..., None, :] - self.small_points.to(points)).pow(2).sum(-1)  # [..., s]
        small_index = distance.argmin(-1)
        log_small = F.logsigmoid(flag) + torch.log_softmax(small_logits, -1).gather(-1, small_index[..., None])[..., 0]
        logits = self.psi.masked_fill(~self.valid, float("-inf"))
        log_shell = torch.log_softmax(logits, -1) - self.log_theta.to(logits)  # [max_norm + 1]
        log_large = F.logsigmoid(-flag) + log_shell[norms.clamp(max=self.max_norm)]
        return torch.where(norms < self.threshold, log_small, log_large)


class DitheredLatticeObjective(Objective):
    """Args:
        lattice: ``"Z"`` (with ``training="direct"``), ``"Z2"``, ``"A2"`` or ``"E8"``; the latent
            dimension must be a multiple of its dimension.
        training: ``"direct"`` (Z + Laplace) or ``"gaussian_proxy"``.
        pmf_threshold: squared norm below which the pmf depends on the dither (3.4).
        pmf_max_norm: the largest squared norm with a logit of its own.
    """

    requires_encoder = True
    deterministic_encoder = True
    own_prior = True

    def __init__(self, lattice: str = "E8", training: str = "gaussian_proxy", pmf_threshold: int = 3,
                 pmf_max_norm: int = 128):
        super().__init__()
        if lattice not in BASE_LATTICES:
            raise ValueError(f"lattice must be one of {sorted(BASE_LATTICES)}; got {lattice!r}.")
        if training not in ("direct", "gaussian_proxy"):
            raise ValueError(f"training must be 'direct' or 'gaussian_proxy'; got {training!r}.")
        if (training == "direct") != (lattice == "Z"):
            raise ValueError("Direct training has a closed form for the integer lattice 'Z' with a Laplacian S only "
                             "(section 3.3); train 'Z2', 'A2' and 'E8' with training: gaussian_proxy.")
        self.lattice_name, self.algorithm = lattice, training
        self.base = BASE_LATTICES[lattice]()
        self.pmf_threshold, self.pmf_max_norm = pmf_threshold, pmf_max_norm

    def attach(self, model):
        super().attach(model)
        t, m = model.latent.dim, self.base.dim
        if t % m:
            valid = ", ".join(str(m * k) for k in range(1, 6))
            raise ValueError(f"A {t}-D latent cannot be covered by copies of the {m}-D lattice {self.lattice_name}; "
                             f"use a latent dimension that is a multiple of {m} ({valid}, ...).")
        self.copies = t // m
        if self.algorithm == "direct":
            self.log_delta = nn.Parameter(torch.zeros(t))
            self.log_alpha = nn.Parameter(torch.zeros(t))
        else:
            self.log_var_u = nn.Parameter(torch.tensor(math.log(0.1)))
            self.log_var_s = nn.Parameter(torch.tensor(0.0))
            self.pmf = LatticePMF(self.base, self.pmf_threshold, self.pmf_max_norm)

    # ----- the lattice and its dither -----------------------------------------------------------

    def delta(self) -> torch.Tensor:
        """The lattice scale: learned per dimension (direct) or matched to U_G by eq. 8 (proxy)."""
        if self.algorithm == "direct":
            return self.log_delta.exp()
        log_delta = 0.5 * self.log_var_u - 0.5 * math.log(self.base.nsm) - math.log(self.base.volume) / self.base.dim
        return log_delta.exp().detach()

    def lattice(self) -> ProductLattice:
        """The t-dimensional product lattice at the current scale."""
        scale = self.delta()
        return ProductLattice(self.base, self.copies, scale if scale.dim() == 0 else scale.view(self.copies, -1)[:, 0])

    def _dither_and_quantize(self, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """U uniform over the cell of the scaled lattice and Z = K(e(x) + U), ``[b, t]`` each."""
        if self.algorithm == "direct":
            delta = self.delta()
            u = (torch.rand_like(code) - 0.5) * delta
            return u, torch.round((code.detach() + u) / delta) * delta
        lattice = self.lattice()
        u = lattice.sample_voronoi(len(code), dtype=code.dtype, device=code.device)
        return u, lattice.nearest_point(code.detach() + u)

    def code_length(self, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """-log p(Z | U) in nats per example ``[b]`` (closed form for direct training, eq. 3.3; the
        learned pmf of 3.4 per lattice copy for the Gaussian proxy)."""
        if self.algorithm == "direct":
            return laplace_code_length(z, u, self.delta(), self.log_alpha.exp()).sum(-1)
        scale = self.delta()
        blocks = (z / scale).unflatten(-1, (self.copies, self.base.dim)), (u / scale).unflatten(-1, (self.copies, self.base.dim))
        return -self.pmf.log_prob(*blocks).sum(-1)

    # ----- training and inference ---------------------------------------------------------------

    def forward(self, model, x):
        code = model.encoder(x)  # e(x): [b, t]
        x_flat = model.flatten(x)
        if self.algorithm == "direct":  # eq. 5 with the closed-form Laplacian representation cost
            delta, alpha = self.delta(), self.log_alpha.exp()
            u = (torch.rand_like(code) - 0.5) * delta
            reconstruction = model.likelihood.log_prob(x_flat, model.decoder_params(code - u))
            representation = laplace_representation_cost(code - u, delta, alpha).sum(-1)
            outputs = {"representation": representation.mean()}
            loss = representation - reconstruction
        else:  # 3.6.2: a Gaussian VAE plus the code length of the quantized code (eq. 6)
            var_u, var_s = self.log_var_u.exp(), self.log_var_s.exp()
            u_g = var_u.sqrt() * torch.randn_like(code)
            reconstruction = model.likelihood.log_prob(x_flat, model.decoder_params(code - u_g))
            kl = 0.5 * ((code - u_g).pow(2).sum(-1) / (var_u + var_s) - u_g.pow(2).sum(-1) / var_u
                        - code.shape[1] * torch.log(var_u / (var_u + var_s)))
            u, z = self._dither_and_quantize(code)
            code_length = self.code_length(z, u)  # trains the pmf only: z carries no gradient
            outputs = {"kl": kl.mean(), "code_length_bits": code_length.mean() / math.log(2)}
            loss = kl - reconstruction + code_length
        outputs.update(loss=loss.mean(), reconstruction=reconstruction.mean())
        if not model.training:  # the inference path of 3.6.3, one sample
            nll = -self.quantized_log_likelihood(model, x, code)
            outputs.update(nll_1sample=nll.mean())
        return outputs

    def quantized_log_likelihood(self, model, x: torch.Tensor, code: torch.Tensor | None = None) -> torch.Tensor:
        """One-sample estimate of log p(x) by the inference path (3.6.3): log p(x | K(e(x) + U) - U)
        minus the code length, ``[b]``."""
        code = model.encoder(x) if code is None else code
        u, z = self._dither_and_quantize(code)
        return model.likelihood.log_prob(model.flatten(x), model.decoder_params(z - u)) - self.code_length(z, u)

    @torch.no_grad()
    def encode_discrete(self, model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The discrete code of each example: integer lattice coordinates ``[b, t]`` (int64) and the
        dither ``[b, t]`` used (share the dither's random seed with the receiver to decode)."""
        u, z = self._dither_and_quantize(model.encoder(x))
        return self.lattice().coordinates(z), u

    @torch.no_grad()
    def decode_discrete(self, model, coordinates: torch.Tensor, dither: torch.Tensor) -> torch.Tensor:
        """Decoded means ``[b, *data_shape]`` of integer codes and their dithers."""
        z = self.lattice().from_coordinates(coordinates, dither.dtype)
        return model.decode(z - dither)

    def held_out_log_likelihood(self, model, x, num_samples, chunk_size=None):
        """log (1/K) sum_k p(x | Z_k - U_k) p(Z_k | U_k): the importance-weighted estimate of 3.6.3
        (q(Z | x, U) is a point mass, so each weight is the joint probability)."""
        code = model.encoder(x)

        def draw(k):  # the decoder's input Z - U, and log p(Z | U) (q is a point mass given U)
            u, z = self._dither_and_quantize(code.repeat(k, 1))  # [k b, t]
            return (z - u).view(k, *code.shape), -self.code_length(z, u).view(k, len(code))

        return importance_sampled_log_likelihood(model, x, draw, num_samples, chunk_size)

    def sample_latent(self, model, n):
        """Draws of Z - U, distributed as S - U by the crypto-lemma: the model's prior in the
        continuous view (Laplacian S for direct training, the Gaussian S_G - U_G for the proxy)."""
        t = model.latent.dim
        if self.algorithm == "direct":
            s = torch.distributions.Laplace(0.0, 1.0 / self.log_alpha.exp().detach()).sample((n,))
            u = (torch.rand(n, t) - 0.5) * self.delta().detach()
            return (s - u).to(model.device)
        std = (self.log_var_u.exp() + self.log_var_s.exp()).sqrt().detach()
        return (std * torch.randn(n, t)).to(model.device)
