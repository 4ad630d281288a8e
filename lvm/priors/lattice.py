"""Priors of dithered lattice codes ("Lattice Representation Learning", Lastras, 2020): a lattice, its dither, the
quantizer and the entropy model of the quantized code."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lvm.numerics.quantizers import E8Lattice, HexagonalLattice, IntegerLattice, ProductLattice, Quantizer
from lvm.priors.base import Prior

__all__ = ["LatticePrior", "LaplaceLatticePrior", "GaussianProxyLatticePrior", "LatticePMF",
           "laplace_representation_cost", "laplace_code_length"]


def _log_sinh(y: torch.Tensor) -> torch.Tensor:
    return y + torch.log1p(-torch.exp(-2 * y)) - math.log(2.0)


def laplace_representation_cost(eta: torch.Tensor, delta: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """log f_U(u) / f_{S-U}(eta) per coordinate for U uniform on (-Delta/2, Delta/2) and S Laplacian with decay
    alpha (Lattice Representation Learning, section 3.3), at eta = s - u."""
    half = alpha * delta / 2
    inside = eta.abs() < delta / 2
    inner_eta = torch.where(inside, eta, torch.zeros_like(eta))  # keep cosh finite on the other branch
    inner = -torch.log1p(-torch.exp(-half) * torch.cosh(alpha * inner_eta))
    outer = alpha * eta.abs() - _log_sinh(half)
    return torch.where(inside, inner, outer)


def laplace_code_length(z: torch.Tensor, u: torch.Tensor, delta: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """-log p_{Z|U}(z | u) in nats per coordinate for Z = K(S + U) on Delta Z (section 3.3); ``z`` are the lattice
    points (multiples of Delta)."""
    return laplace_representation_cost(z - u, delta, alpha)


class LatticePrior(Prior):
    """The prior of a dithered lattice code ("Lattice Representation Learning", Lastras, 2020):
    a code e(x) is dithered by U, uniform over the Voronoi cell of a lattice, and quantized, Z = K(e(x) + U);
    the decoder sees Z - U, distributed as S - U by the crypto-lemma (Lemma 1). In this continuous view the
    prior is the law of S - U (:meth:`log_prob`, :meth:`sample`); the entropy model is ``code_length``,
    -log p(Z | U), whose mean is the representation cost of Theorem 1."""

    def dither(self, n: int, dtype=torch.float32, device=None) -> torch.Tensor:
        """U, uniform over the Voronoi cell of the scaled lattice, ``[n, d]``."""
        raise NotImplementedError

    def quantize(self, values: torch.Tensor) -> torch.Tensor:
        """The nearest lattice points K(values) ``[b, d]``."""
        raise NotImplementedError

    def code_length(self, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """-log p(Z | U) in nats per example ``[b]`` for lattice points ``z`` and dithers ``u`` ``[b, d]``."""
        raise NotImplementedError

    def lattice(self) -> ProductLattice:
        """The d-dimensional (product) lattice at the current scale."""
        raise NotImplementedError

    def dither_and_quantize(self, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """U and Z = K(e(x) + U) for codes ``[b, d]`` (no gradient flows through Z)."""
        u = self.dither(len(code), dtype=code.dtype, device=code.device)
        return u, self.quantize(code.detach() + u)

    @torch.no_grad()
    def encode(self, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The discrete code of codes e(x) ``[b, d]``: integer lattice coordinates ``[b, d]`` (int64) and the
        dither used (share the dither's random seed with the receiver to decode)."""
        u, z = self.dither_and_quantize(code)
        return self.lattice().coordinates(z), u

    @torch.no_grad()
    def decoder_input(self, coordinates: torch.Tensor, dither: torch.Tensor) -> torch.Tensor:
        """Z - U ``[b, d]`` from integer coordinates and dithers: ``model.decode`` of it reconstructs the examples."""
        return self.lattice().from_coordinates(coordinates, dither.dtype) - dither


class LaplaceLatticePrior(LatticePrior):
    """The integer lattice with one learned scale Delta_i per dimension and a Laplacian S with learned decay
    alpha_i (section 3.3): the representation cost and the code length are closed form, so the code trains
    directly (section 3.6.1, :class:`lvm.objectives.DirectLatticeObjective`)."""

    def __init__(self, dim: int = 2):
        super().__init__(dim)
        self.log_delta = nn.Parameter(torch.zeros(dim))
        self.log_alpha = nn.Parameter(torch.zeros(dim))

    @property
    def delta(self) -> torch.Tensor:
        return self.log_delta.exp()

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp()

    def representation_cost(self, eta: torch.Tensor) -> torch.Tensor:
        """log f_U(u) / f_{S-U}(eta) summed over dimensions, ``[b]`` (the first term of eq. 5)."""
        return laplace_representation_cost(eta, self.delta, self.alpha).sum(-1)

    def log_prob(self, z, immersion=None):
        """The density of S - U: log f_U - representation cost, with f_U = 1 / prod Delta_i."""
        return -self.log_delta.sum() - self.representation_cost(z)

    def sample(self, n, device=None, immersion=None):
        s = torch.distributions.Laplace(0.0, 1.0 / self.alpha.detach()).sample((n,))
        return (s - self.dither(n).detach()).to(device)

    def dither(self, n, dtype=torch.float32, device=None):
        return (torch.rand(n, self.dim, dtype=dtype, device=device) - 0.5) * self.delta.to(dtype)  # Delta learns through U

    def quantize(self, values):
        return torch.round(values / self.delta) * self.delta

    def code_length(self, z, u):
        return laplace_code_length(z, u, self.delta, self.alpha).sum(-1)

    def lattice(self):
        return ProductLattice(IntegerLattice(1), self.dim, self.delta.detach())


BASE_LATTICES = {"Z2": lambda: IntegerLattice(2), "A2": HexagonalLattice, "E8": E8Lattice}


class LatticePMF(nn.Module):
    """The pmf over the points of an m-dimensional lattice given the dither (section 3.4): points of squared
    norm >= ``threshold`` get ``logsoftmax(psi)_{|a|^2} - log theta_{|a|^2}`` (a law on norms, uniform within a
    norm shell); the few points of smaller norm get a U-dependent categorical from a small network, and a
    learned U-dependent flag chooses between the two. Norms are those of the unscaled lattice; norms above
    ``max_norm`` share the last logit."""

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


class GaussianProxyLatticePrior(LatticePrior):
    """Copies of an m-dimensional lattice (``"Z2"``, ``"A2"`` or ``"E8"``) covering the d-dimensional latent
    (section 4.1), trained through a Gaussian proxy (sections 3.5, 3.6.2, :class:`lvm.objectives.GaussianProxyLatticeObjective`):
    U and S are replaced by Gaussians U_G, S_G with learned variances, the lattice is scaled by eq. 8 so that
    its dither's second moment matches U_G's, and a learned pmf p(Z | U) (:class:`LatticePMF`, section 3.4)
    per lattice copy is the entropy model. The continuous prior is the proxy's S_G - U_G = N(0, var_u + var_s).

    Args:
        dim: d, a multiple of the lattice's dimension.
        lattice: ``"Z2"``, ``"A2"`` or ``"E8"``.
        pmf_threshold: squared norm below which the pmf depends on the dither (3.4).
        pmf_max_norm: the largest squared norm with a logit of its own.
    """

    def __init__(self, dim: int = 8, lattice: str = "E8", pmf_threshold: int = 3, pmf_max_norm: int = 128):
        super().__init__(dim)
        if lattice not in BASE_LATTICES:
            raise ValueError(f"lattice must be one of {sorted(BASE_LATTICES)}; got {lattice!r} (the integer lattice "
                             "with a Laplacian S trains directly: lvm.priors.LaplaceLatticePrior).")
        self.lattice_name, self.base = lattice, BASE_LATTICES[lattice]()
        m = self.base.dim
        if dim % m:
            valid = ", ".join(str(m * k) for k in range(1, 6))
            raise ValueError(f"A {dim}-D latent cannot be covered by copies of the {m}-D lattice {lattice}; "
                             f"use a latent dimension that is a multiple of {m} ({valid}, ...).")
        self.copies = dim // m
        self.log_var_u = nn.Parameter(torch.tensor(math.log(0.1)))
        self.log_var_s = nn.Parameter(torch.tensor(0.0))
        self.pmf = LatticePMF(self.base, pmf_threshold, pmf_max_norm)

    @property
    def delta(self) -> torch.Tensor:
        """The lattice scale matched to U_G by eq. 8 (no gradient: the scale follows var_u)."""
        log_delta = 0.5 * self.log_var_u - 0.5 * math.log(self.base.nsm) - math.log(self.base.volume) / self.base.dim
        return log_delta.exp().detach()

    def log_prob(self, z, immersion=None):
        variance = self.log_var_u.exp() + self.log_var_s.exp()
        return -0.5 * (z.pow(2) / variance + torch.log(2 * math.pi * variance)).sum(-1)

    def sample(self, n, device=None, immersion=None):
        std = (self.log_var_u.exp() + self.log_var_s.exp()).sqrt().detach()
        return (std * torch.randn(n, self.dim)).to(device)

    def lattice(self):
        return ProductLattice(self.base, self.copies, self.delta)

    def dither(self, n, dtype=torch.float32, device=None):
        return self.lattice().sample_voronoi(n, dtype=dtype, device=device)

    def quantize(self, values):
        return self.lattice().nearest_point(values)

    def code_length(self, z, u):
        scale, shape = self.delta, (self.copies, self.base.dim)
        return -self.pmf.log_prob((z / scale).unflatten(-1, shape), (u / scale).unflatten(-1, shape)).sum(-1)
