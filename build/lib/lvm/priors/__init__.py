"""Priors p(z): the model's distribution over latent values, and the decoder's input features.

A :class:`Prior` is a module on the model (``model.prior``), so learned prior parameters (the R-VAE's
centre and time, a lattice code's scale and entropy model) are the model's parameters, saved in its
checkpoints, whatever objective trains them. Every prior has ``log_prob(z)`` (a density with respect to
Lebesgue measure on the latent space), ``sample(n)`` and ``features(z)`` (the decoder's first-layer
input). Priors that the inversion method reaches from the unit cube (:class:`InvertiblePrior`) also have
``from_unit_cube(c)``: for uniform ``c`` in ``[0, 1)^d`` it is distributed as the prior, so the same
randomized-QMC estimate of eq. 5 of Quasi-Monte Carlo latent variable models (QLVM paper, section 2.2)
evaluates ``log p(x)`` under each of them.

Priors whose density is defined through the decoder (the Brownian-motion prior lives on the manifold
the decoder immerses) are bound to the model by :meth:`Prior.bind`, which the model calls once.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lvm.numerics.geometry import brownian_motion, geodesic, image_and_log_volume, pullback_metric, straight_line_energy
from lvm.numerics.lattices import default_num_points, lattice_rule
from lvm.numerics.gaussian import half_log_det, standard_normal_icdf, standard_normal_log_prob
from lvm.numerics.logspace import log_mean_exp
from lvm.numerics.torus import circular_mean
from lvm.numerics.quantizers import E8Lattice, HexagonalLattice, IntegerLattice, ProductLattice, Quantizer
from lvm.numerics.logspace import effective_sample_size

MAX_NORMALISED_DIM = 3  # the Brownian-motion prior is normalised numerically up to this dimension

__all__ = [
    "Prior", "InvertiblePrior", "UnitCubePrior", "TorusPrior", "StandardNormalPrior", "BrownianMotionPrior",
    "log_heat_kernel", "LatticePrior", "LaplaceLatticePrior", "GaussianProxyLatticePrior", "LatticePMF",
    "laplace_representation_cost", "laplace_code_length",
]


class Prior(nn.Module):
    """Base class. ``dim`` is the latent dimension d, stated once per config (the CLI links it to every
    network that needs it); ``periodic`` says whether posterior means must be circular."""

    periodic = False

    def __init__(self, dim: int = 2):
        super().__init__()
        if dim < 1:
            raise ValueError(f"The latent dimension must be at least 1; got dim={dim}.")
        self.dim = dim

    def bind(self, model) -> None:
        """Called once by the model that holds this prior; a no-op unless the density needs the decoder."""

    def fit(self, codes: torch.Tensor) -> None:
        """Place the prior on the training codes ``[n, d]`` (called by :class:`lvm.callbacks.TwoPhaseTraining`
        when a prior starts to train); a no-op unless the prior has a learned location."""

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """``log p(z)`` for ``z: [..., d]`` -> ``[...]`` (density with respect to Lebesgue measure)."""
        raise NotImplementedError

    def sample(self, n: int, device=None) -> torch.Tensor:
        """``n`` draws from the prior, ``[n, d]``."""
        raise NotImplementedError

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's first-layer input for latent values ``z: [n, d]``."""
        return z

    def weighted_mean(self, z: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Posterior mean of points ``z: [m, d]`` under ``weights: [b, m]`` (rows sum to 1)."""
        return weights @ z  # [b, d]


class InvertiblePrior(Prior):
    """A prior reached from the unit cube by the inversion method: ``from_unit_cube`` maps uniform points on
    ``[0, 1)^d`` to prior draws, so lattices integrate against it (held-out QMC estimate, QLVM training)."""

    def from_unit_cube(self, cube_points: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, n, device=None):
        return self.from_unit_cube(torch.rand(n, self.dim, device=device))


class UnitCubePrior(InvertiblePrior):
    """Uniform prior on ``[0, 1)^d`` fed to the decoder as ``2z - 1`` without periodic boundaries: the
    non-periodic ablation of Fig. A8 (QLVM paper)."""

    def from_unit_cube(self, cube_points):
        return cube_points

    def features(self, z):
        return 2 * z - 1

    def log_prob(self, z):
        inside = ((z >= 0) & (z < 1)).all(-1)
        return torch.where(inside, 0.0, float("-inf")).to(z)


class TorusPrior(UnitCubePrior):
    """Uniform prior on the torus ``[0, 1)^d`` with the periodic first layer ``z -> (sin 2 pi z, cos 2 pi z)``
    (QLVM paper, section 2.2): the QLVM default.

    Posterior means are circular means per coordinate: ``atan2(E sin 2 pi z, E cos 2 pi z) / 2 pi mod 1``,
    so a posterior straddling the seam at 0 = 1 averages to ~0, not to 0.5.
    """

    periodic = True

    def features(self, z):
        angle = 2 * math.pi * z
        return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)  # [n, 2d]

    def log_prob(self, z):
        return torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)  # z is read modulo 1

    def weighted_mean(self, z, weights):
        return circular_mean(z, weights)  # [b, d]


class StandardNormalPrior(InvertiblePrior):
    """``N(0, I_d)``, reached from the unit cube by ``z = Phi^{-1}(c)`` (QLVM paper, section 2.2, Fig. A9):
    the prior of the VAE, IWAE, Taylor and MLAE models, whose decoders QMC scores by inversion."""

    eps = 1e-6

    def from_unit_cube(self, cube_points):
        c = cube_points.clamp(self.eps, 1 - self.eps)
        return standard_normal_icdf(c)

    def log_prob(self, z):
        return standard_normal_log_prob(z)

    def sample(self, n, device=None):
        return torch.randn(n, self.dim, device=device)


# ----- the Riemannian Brownian-motion prior ----------------------------------------------------------


def log_heat_kernel(z: torch.Tensor, time: torch.Tensor, squared_distance: torch.Tensor, log_volume_z: torch.Tensor,
                    log_volume_centre: torch.Tensor) -> torch.Tensor:
    """The zeroth-order parametrix (eq. 3.3 of Variational Autoencoders with Riemannian Brownian Motion
    Priors, Kalatzis, Eklund, Arvanitidis and Hauberg, 2020, arXiv:2002.05227): the log-density of Brownian
    motion from a centre for ``time`` at ``z`` ``[b, d]``, with respect to the volume measure,

        log p_t(z; c) = -d/2 log(2 pi t) + 1/2 (log det G(z) - log det G(c)) - l^2(z, c) / (2 t),

    from the squared geodesic distance ``l^2`` ``[b]`` and ``log_volume_* = 1/2 log det G`` at z and c."""
    d = z.shape[-1]
    return -0.5 * d * torch.log(2 * math.pi * time) + log_volume_z - log_volume_centre - squared_distance / (2 * time)


class BrownianMotionPrior(Prior):
    """The R-VAE prior (Kalatzis et al. 2020, arXiv:2002.05227): Brownian motion on the manifold that the
    decoder z -> (mu(z), sigma(z)) immerses (metric G of eq. 2.5, :mod:`lvm.numerics.geometry`), started at a learned
    centre mu_p and run for a learned time t_p, in the parametrix approximation (eq. 3.3, :func:`log_heat_kernel`).
    :meth:`log_prob` is its Lebesgue density, ``log p_t(z) + 1/2 log det G(z)``; :meth:`sample` runs the Euler
    walk of eq. 3.15. The squared distance to the centre is 2 x the energy of the straight line
    (``geodesic_steps=0``, an upper bound without inner optimisation) or of a cubic spline optimised for
    ``geodesic_steps`` L-BFGS iterations (appendix B). The centre is placed on the training codes by
    :meth:`fit` when the prior starts to train (appendix C.1), which :attr:`placed` records.

    Args:
        dim: d.
        time: initial t_p (learned).
        geodesic_steps: L-BFGS iterations per geodesic distance (0: straight lines).
        curve_points: points discretising each curve.
        walk_steps: Euler steps of the Brownian walk that samples the prior.
    """

    def __init__(self, dim: int = 2, time: float = 1.0, geodesic_steps: int = 0, curve_points: int = 6,
                 walk_steps: int = 50):
        super().__init__(dim)
        if time <= 0:
            raise ValueError(f"The prior's time must be positive; got time={time}.")
        self.geodesic_steps, self.curve_points, self.walk_steps = geodesic_steps, curve_points, walk_steps
        self.log_time = nn.Parameter(torch.tensor(math.log(time)))
        self.centre = nn.Parameter(torch.zeros(dim))
        self.register_buffer("placed", torch.tensor(False))
        self._model = None
        self._normaliser_cache: tuple | None = None  # (parameter versions, log Z)
        self.normalisation_error = math.nan

    def bind(self, model) -> None:
        from lvm.likelihoods import HeteroscedasticGaussianLikelihood

        if not isinstance(model.likelihood, HeteroscedasticGaussianLikelihood):
            raise ValueError(
                "The Brownian-motion prior's metric needs a decoded standard deviation: set model.likelihood to "
                "lvm.likelihoods.HeteroscedasticGaussianLikelihood and model.decoder to lvm.networks.MeanPrecisionDecoder "
                f"(got {type(model.likelihood).__name__})."
            )
        object.__setattr__(self, "_model", model)  # a reference, not a submodule: the model owns the prior

    @property
    def time(self) -> torch.Tensor:
        return self.log_time.exp()

    def image(self, params: torch.Tensor) -> torch.Tensor:
        """(mu, sigma) ``[n, 2D]`` from decoder parameters ``[n, 2D]``."""
        likelihood = self._model.likelihood
        return torch.cat([likelihood.mean(params), likelihood.std(params)], dim=-1)

    def immersion(self, z: torch.Tensor) -> torch.Tensor:
        """z -> (mu(z), sigma(z)) ``[n, 2D]`` from one decoder pass (eq. 2.4); its pull-back metric is eq. 2.5."""
        if self._model is None:
            raise RuntimeError("BrownianMotionPrior is defined through a decoder: use it as a LatentVariableModel's prior.")
        return self.image(self._model.decoder_params(z))

    @torch.no_grad()
    def fit(self, codes):
        """Centre the prior on the mean of the training codes (the authors' one-cluster k-means)."""
        self.centre.copy_(codes.mean(0))
        self.placed.fill_(True)

    def centre_image_and_log_volume(self) -> tuple[torch.Tensor, torch.Tensor]:
        """F(mu_p) ``[1, 2D]`` and 1/2 log det G(mu_p) ``[1]``."""
        return image_and_log_volume(self.immersion, self.centre[None])

    def energy_to_centre(self, z: torch.Tensor, image_z: torch.Tensor, image_centre: torch.Tensor) -> torch.Tensor:
        """Half the squared distance from ``z`` ``[b, d]`` (images ``F(z)`` ``[b, 2D]``) to the centre
        (image ``[1, 2D]``): the energy of the straight line, or of the optimised spline, ``[b]``."""
        centre = self.centre.expand_as(z)
        if self.geodesic_steps:
            return geodesic(self.immersion, z, centre, num_points=self.curve_points, steps=self.geodesic_steps).energy
        return straight_line_energy(self.immersion, z, centre, image_z, image_centre, self.curve_points)

    def log_density(self, z: torch.Tensor, image_z: torch.Tensor, log_volume_z: torch.Tensor) -> torch.Tensor:
        """log p(z) with respect to the volume measure (eq. 3.7), ``[b]``."""
        image_centre, log_volume_centre = self.centre_image_and_log_volume()
        squared_distance = 2 * self.energy_to_centre(z, image_z, image_centre)
        return log_heat_kernel(z, self.time, squared_distance, log_volume_z, log_volume_centre)

    def unnormalised_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """The parametrix's Lebesgue density, log p_t(z) + 1/2 log det G(z), ``[...]``: integrates to 1 only
        approximately (exactly for a flat metric)."""
        flat = z.reshape(-1, self.dim)  # [n, d]
        image, log_volume = image_and_log_volume(self.immersion, flat)
        return (self.log_density(flat, image, log_volume) + log_volume).view(z.shape[:-1])

    def log_prob(self, z):
        """The parametrix's Lebesgue density, normalised numerically for d <= 3 (:meth:`log_normaliser`); above 3-D
        it stays the unnormalised parametrix (no lattice integrates it), so held-out values are approximate there."""
        if self.dim > MAX_NORMALISED_DIM:
            return self.unnormalised_log_prob(z)
        return self.unnormalised_log_prob(z) - self.log_normaliser()

    @torch.no_grad()
    def log_normaliser(self, inflation: float = 4.0) -> torch.Tensor:
        """log Z, Z = integral of the parametrix's Lebesgue density, for d <= 3, by quasi-Monte Carlo importance
        sampling from g = N(mu_p, ``inflation`` t_p G(mu_p)^{-1}) (the heat kernel's local shape, widened): a dense
        lattice mapped through g's inverse CDF gives the points,
        and Z = mean_j p(z_j) / g(z_j). :attr:`normalisation_error` is the relative difference between the rule with
        every other point and with all points plus 1 / the effective sample size of the ratios (both small when g
        covers the density). Cached until a parameter or buffer of the decoder or the prior changes in place (an
        optimiser step, loading a checkpoint, placing RBF centres)."""
        tensors = [*self._model.decoder.parameters(), *self._model.decoder.buffers(), *self.parameters()]
        key = tuple((id(t), t._version) for t in tensors)  # what the density depends on
        if self._normaliser_cache is not None and self._normaliser_cache[0] == key:
            return self._normaliser_cache[1]
        metric = pullback_metric(self.immersion, self.centre[None])[0]  # G(mu_p): [d, d]
        metric = metric + 1e-6 * metric.diagonal().mean().clamp_min(1e-12) * torch.eye(self.dim).to(metric)
        mean, covariance = self.centre, inflation * self.time * torch.linalg.inv(metric)
        cholesky = torch.linalg.cholesky(covariance)
        cube = lattice_rule(default_num_points(self.dim), self.dim).to(mean).clamp(1e-6, 1 - 1e-6)  # [m, d]
        white = standard_normal_icdf(cube)  # standard normal QMC points
        z = mean + white @ cholesky.T
        log_g = standard_normal_log_prob(white) - half_log_det(cholesky)
        log_ratio = torch.cat([self.unnormalised_log_prob(chunk) for chunk in z.split(1024)]) - log_g  # [m]
        log_z, coarse = log_mean_exp(log_ratio), log_mean_exp(log_ratio[::2])  # all points, every other point
        ess = float(effective_sample_size(log_ratio))
        self.normalisation_error = abs(math.expm1(float(coarse - log_z))) + 1.0 / ess
        self._normaliser_cache = (key, log_z)
        return log_z

    @torch.no_grad()
    def sample(self, n, device=None):
        start = self.centre.detach().expand(n, -1)
        return brownian_motion(self.immersion, start, self.time.detach(), self.walk_steps)[-1]


# ----- dithered lattice codes: entropy models -----------------------------------------------------------


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

    def log_prob(self, z):
        """The density of S - U: log f_U - representation cost, with f_U = 1 / prod Delta_i."""
        return -self.log_delta.sum() - self.representation_cost(z)

    def sample(self, n, device=None):
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

    def log_prob(self, z):
        variance = self.log_var_u.exp() + self.log_var_s.exp()
        return -0.5 * (z.pow(2) / variance + torch.log(2 * math.pi * variance)).sum(-1)

    def sample(self, n, device=None):
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
