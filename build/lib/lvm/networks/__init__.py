"""Decoder and encoder networks of the QLVM paper (Fig. A2, appendix B.2).

Decoders map latent features ``[n, F]`` (``F = 2d`` on the torus) to likelihood parameters of
shape ``[n, *data_shape]``; their first layer is lazy, so the same decoder config works for
any latent space (the model runs one dry forward pass at construction to fix the size).
Every linear/conv layer before the output is followed by a ReLU. Encoders mirror the decoders
with tanh in place of ReLU (B.2). An encoder outputs ``out_features`` numbers per example, which the model's
posterior family reads (:mod:`lvm.posteriors`: mean and log-variances ``[n, 2d]``, a code ``[n, d]``, ...); the CLI
sets ``out_features`` from the posterior and the prior's dimension, so configs name neither.

MLAE's networks (MLAE paper, appendix E): :class:`ResidualMLPEncoder`/:class:`ResidualMLPDecoder`
(toy and tabular data, E.1/E.3) and the Pythae-style convolutional :class:`PythaeConvEncoder`/
:class:`PythaeConvDecoder` ("ConvNet", Table 7; with ``residual_blocks=4`` and the MNIST channels
of Table 9, "ConvNet+").
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from lvm.numerics.derived import derived_weight

__all__ = [
    "MLPDecoder", "ConvDecoder", "MLPEncoder", "ConvEncoder", "HigginsEncoder", "HigginsDecoder",
    "ResidualMLP", "ResidualMLPEncoder", "ResidualMLPDecoder", "PythaeConvEncoder", "PythaeConvDecoder",
    "RBFPrecision", "MeanPrecisionDecoder", "GatedEncoder", "GatedDecoder", "GatedLayer",
]


ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "silu": nn.SiLU}


def _activation(name: str) -> type[nn.Module]:
    if name not in ACTIVATIONS:
        raise ValueError(f"Unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}.")
    return ACTIVATIONS[name]


def _mlp(widths: list[int], activation: type[nn.Module]) -> list[nn.Module]:
    """``LazyLinear(widths[0]) act Linear(widths[1]) act ...`` (activation after every layer)."""
    layers: list[nn.Module] = []
    for i, width in enumerate(widths):
        layers += [nn.LazyLinear(width) if i == 0 else nn.Linear(widths[i - 1], width), activation()]
    return layers


def _num_stages(image_size: int, channels: list[int]) -> int:
    """How many stride-2 stages link ``image_size`` to a base grid of side <= 7
    (28 -> 7: 2 stages, 64 -> 4: 4 stages, 80 -> 5: 4 stages); ``channels`` needs one entry each."""
    stages, side = 0, image_size
    while side % 2 == 0 and side > 7:
        side //= 2
        stages += 1
    if len(channels) != stages:
        raise ValueError(
            f"image_size={image_size} needs {stages} stride-2 stages, so channels must have "
            f"{stages} entries; got {list(channels)}."
        )
    return stages


class MLPDecoder(nn.Module):
    """Fully connected decoder for vectors or small images (digits, MNIST MLP of Fig. A2).
    ``activation``: ``"relu"`` (default), ``"tanh"`` or ``"elu"``."""

    def __init__(self, data_shape: list[int], hidden: list[int] = (256, 512), activation: str = "relu"):
        super().__init__()
        self.data_shape = tuple(data_shape)
        self.net = nn.Sequential(*_mlp(list(hidden), _activation(activation)),
                                 nn.Linear(hidden[-1], math.prod(data_shape)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).view(-1, *self.data_shape)


class ConvDecoder(nn.Module):
    """Convolutional decoder for square images (28x28 MNIST, 64x64, 80x80 Celeb-A): a linear
    layer to a ``[channels[0], s, s]`` grid followed by stride-2 transposed convolutions
    doubling the side up to ``image_size``, then a 3x3 convolution to the output channels."""

    def __init__(self, image_size: int = 28, out_channels: int = 1, hidden: int = 256,
                 channels: list[int] = (64, 32)):
        super().__init__()
        stages = _num_stages(image_size, channels)
        self.base = image_size // 2**stages
        self.image_size, self.out_channels = image_size, out_channels
        self.channels = list(channels)
        self.project = nn.Sequential(
            *_mlp([hidden, channels[0] * self.base**2], nn.ReLU)
        )
        ups: list[nn.Module] = []
        widths = list(channels) + [channels[-1]]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            ups += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU()]
        self.upsample = nn.Sequential(*ups, nn.Conv2d(widths[-1], out_channels, 3, padding=1))

    @property
    def data_shape(self) -> tuple[int, int, int]:
        return (self.out_channels, self.image_size, self.image_size)

    def forward(self, features):
        grid = self.project(features).view(-1, self.channels[0], self.base, self.base)
        return self.upsample(grid)  # [n, out_channels, image_size, image_size]


class MLPEncoder(nn.Module):
    """Fully connected encoder: flattened input -> MLP -> ``out_features``.
    ``activation`` defaults to tanh (QLVM appendix B.2); the Taylor-VAE MNIST setting uses ReLU."""

    def __init__(self, out_features: int, hidden: list[int] = (512, 256), activation: str = "tanh"):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), *_mlp(list(hidden), _activation(activation)),
                                 nn.Linear(hidden[-1], out_features))

    def forward(self, x):
        return self.net(x)  # [n, out_features]


class ConvEncoder(nn.Module):
    """Convolutional encoder mirroring :class:`ConvDecoder` with tanh activations."""

    def __init__(self, out_features: int, image_size: int = 28, in_channels: int = 1, hidden: int = 256,
                 channels: list[int] = (32, 64)):
        super().__init__()
        _num_stages(image_size, channels)
        convs: list[nn.Module] = []
        widths = [in_channels] + list(channels)
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            convs += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.Tanh()]
        self.net = nn.Sequential(
            *convs, nn.Flatten(), nn.LazyLinear(hidden), nn.Tanh(), nn.Linear(hidden, out_features)
        )

    def forward(self, x):
        return self.net(x)  # [n, out_features]


class HigginsEncoder(nn.Module):
    """The 64x64 convolutional encoder of Higgins et al. (beta-VAE), as specified in the
    sampling-free VAE paper, appendix B.1: Conv 32, 32, 64, 64 (4x4, stride 2), Conv 256 (4x4,
    stride 1), each followed by ReLU, then FC 256 -> ``out_features`` (2d: mean and log-variance)."""

    def __init__(self, out_features: int, in_channels: int = 3):
        super().__init__()
        widths = [in_channels, 32, 32, 64, 64]
        convs: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            convs += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU()]  # 64 -> 32 -> 16 -> 8 -> 4
        self.net = nn.Sequential(*convs, nn.Conv2d(64, 256, 4), nn.ReLU(), nn.Flatten(),  # [n, 256]
                                 nn.Linear(256, out_features))

    def forward(self, x):
        return self.net(x)  # [n, out_features]


class HigginsDecoder(nn.Module):
    """The deconvolutional reverse of :class:`HigginsEncoder`: FC -> 256, ConvT 64 (4x4, stride 1)
    to a 4x4 grid, then ConvT 64, 32, 32 and ``out_channels`` (4x4, stride 2) up to 64x64."""

    def __init__(self, out_channels: int = 3):
        super().__init__()
        widths = [64, 64, 32, 32]
        ups: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            ups += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU()]  # 4 -> 8 -> 16 -> 32
        self.net = nn.Sequential(
            nn.LazyLinear(256), nn.ReLU(), nn.Unflatten(1, (256, 1, 1)),
            nn.ConvTranspose2d(256, 64, 4), nn.ReLU(),  # [n, 64, 4, 4]
            *ups, nn.ConvTranspose2d(32, out_channels, 4, stride=2, padding=1),  # [n, C, 64, 64]
        )

    def forward(self, features):
        return self.net(features)


class ResidualMLP(nn.Module):
    """``num_blocks`` residual blocks ``v -> v + MLP(v)`` on ``dim``-dimensional vectors, each MLP
    ``Linear(dim, h_1) act ... Linear(h_k, dim)`` (MLAE paper, Table 9 footnote with SiLU; E.3 with ReLU)."""

    def __init__(self, dim: int, hidden: list[int] = (256, 256), num_blocks: int = 2, activation: str = "relu"):
        super().__init__()
        act = _activation(activation)
        widths = [dim, *hidden]
        self.blocks = nn.ModuleList(
            nn.Sequential(*[layer for a, b in zip(widths[:-1], widths[1:]) for layer in (nn.Linear(a, b), act())],
                          nn.Linear(widths[-1], dim))
            for _ in range(num_blocks)
        )

    def forward(self, v):
        for block in self.blocks:
            v = v + block(v)
        return v


class ResidualMLPEncoder(nn.Module):
    """MLAE's encoder for vectors (appendix E.3): an MLP (``hidden``, ReLU) from the data to the
    latent space (``out_features`` wide), then :class:`ResidualMLP` blocks there."""

    def __init__(self, out_features: int, hidden: list[int] = (256, 256), num_blocks: int = 2,
                 block_hidden: list[int] = (256, 256), activation: str = "relu"):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), *_mlp(list(hidden), _activation(activation)),
                                 nn.Linear(hidden[-1], out_features),
                                 ResidualMLP(out_features, block_hidden, num_blocks, activation))

    def forward(self, x):
        return self.net(x)  # [n, out_features]


class ResidualMLPDecoder(nn.Module):
    """The inverse of :class:`ResidualMLPEncoder`: residual blocks in the ``latent_dim``-dimensional
    latent space, then an MLP (``hidden``, ReLU) to the data."""

    def __init__(self, data_shape: list[int], latent_dim: int, hidden: list[int] = (256, 256), num_blocks: int = 2,
                 block_hidden: list[int] = (256, 256), activation: str = "relu"):
        super().__init__()
        self.data_shape = tuple(data_shape)
        self.net = nn.Sequential(ResidualMLP(latent_dim, block_hidden, num_blocks, activation),
                                 *_mlp(list(hidden), _activation(activation)),
                                 nn.Linear(hidden[-1], math.prod(data_shape)))

    def forward(self, features):
        return self.net(features).view(-1, *self.data_shape)


def _conv_block(conv: nn.Module, channels: int, batch_norm: bool) -> list[nn.Module]:
    return [conv, *([nn.BatchNorm2d(channels)] if batch_norm else []), nn.ReLU()]


def _halving_sides(image_size: int, stages: int) -> list[int]:
    """Grid sides from the base grid up to ``image_size``, each the ceiling of half the next
    (28: 4, 7, 14, 28; 64: 8, 16, 32, 64)."""
    sides = [image_size]
    for _ in range(stages):
        sides.insert(0, math.ceil(sides[0] / 2))
    return sides


class PythaeConvEncoder(nn.Module):
    """The Pythae benchmark's convolutional encoder (MLAE paper, Table 7): ``Conv(c, 4, 2)`` + ReLU for
    each entry of ``channels``, then one linear layer to the latent space, optionally followed by
    ``residual_blocks`` :class:`ResidualMLP` blocks (SiLU, width ``residual_hidden``) as in
    "ConvNet+" (Table 9). ``batch_norm`` follows Pythae; leave it off for MLAE, whose per-example
    Jacobian products assume that examples do not interact (appendix E.4, d3).

    Table 7: ``channels=[128, 256, 512, 1024]`` (MNIST, d = 16; CelebA 64x64, d = 64).
    Table 9, MNIST: ``channels=[32, 64, 128, 256], residual_blocks=4, residual_hidden=512``.
    """

    def __init__(self, out_features: int, in_channels: int = 1, channels: list[int] = (128, 256, 512, 1024),
                 residual_blocks: int = 0, residual_hidden: int = 512, batch_norm: bool = False):
        super().__init__()
        widths = [in_channels, *channels]
        convs = [layer for a, b in zip(widths[:-1], widths[1:])
                 for layer in _conv_block(nn.Conv2d(a, b, 4, stride=2, padding=1), b, batch_norm)]
        self.net = nn.Sequential(*convs, nn.Flatten(), nn.LazyLinear(out_features),
                                 ResidualMLP(out_features, [residual_hidden] * 2, residual_blocks, "silu"))

    def forward(self, x):
        return self.net(x)  # [n, out_features]


class PythaeConvDecoder(nn.Module):
    """The Pythae benchmark's convolutional decoder (MLAE paper, Tables 7 and 9): optional residual
    blocks in the latent space (``residual_blocks`` > 0 needs ``latent_dim``), a linear layer to a
    ``[base_channels, s, s]`` grid, transposed convolutions (kernel ``kernel_size``, stride 2, + ReLU)
    with the widths ``channels`` up the grid sides 4, 7, 14, 28 (MNIST) or 8, 16, 32, 64 (64x64), and a
    last layer to ``out_channels``: a stride-2 transposed convolution if the grid has not reached
    ``image_size`` yet, else a stride-1 one. Outputs logits / pre-sigmoid means (the likelihood
    applies the sigmoid).

    Table 7, MNIST: ``base_channels=1024, channels=[512, 256]``; CelebA: ``image_size=64,
    out_channels=3, base_channels=1024, channels=[512, 256, 128]``.
    Table 9, MNIST: ``base_channels=256, channels=[256, 128, 64], residual_blocks=4``.
    """

    def __init__(self, image_size: int = 28, out_channels: int = 1, base_channels: int = 1024,
                 channels: list[int] = (512, 256), kernel_size: int | None = None, residual_blocks: int = 0,
                 residual_hidden: int = 512, latent_dim: int | None = None, batch_norm: bool = False):
        super().__init__()
        if residual_blocks and latent_dim is None:
            raise ValueError("PythaeConvDecoder needs latent_dim for its residual blocks in the latent space.")
        sides = _halving_sides(image_size, 3)
        if len(channels) not in (2, 3):
            raise ValueError(f"channels must have 2 or 3 entries (3 stride-2 stages to {image_size}); got {list(channels)}.")
        kernel = kernel_size or (3 if image_size <= 32 else 5)
        self.base_channels, self.base = base_channels, sides[0]
        layers: list[nn.Module] = []
        widths = [base_channels, *channels]
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers += _conv_block(self._upsample(a, b, kernel, sides[i], sides[i + 1]), b, batch_norm)
        stage = len(channels)
        last = (self._upsample(widths[-1], out_channels, kernel, sides[stage], sides[stage + 1]) if stage < 3
                else nn.ConvTranspose2d(widths[-1], out_channels, kernel, stride=1, padding=kernel // 2))
        self.latent = ResidualMLP(latent_dim, [residual_hidden] * 2, residual_blocks, "silu") if residual_blocks else nn.Identity()
        self.project = nn.LazyLinear(base_channels * self.base**2)
        self.upsample = nn.Sequential(*layers, last)

    @staticmethod
    def _upsample(c_in: int, c_out: int, kernel: int, side: int, target: int) -> nn.ConvTranspose2d:
        """A stride-2 transposed convolution from ``side`` to exactly ``target``."""
        padding = kernel // 2
        output_padding = target - ((side - 1) * 2 - 2 * padding + kernel)
        return nn.ConvTranspose2d(c_in, c_out, kernel, stride=2, padding=padding, output_padding=output_padding)

    def forward(self, features):
        grid = self.project(self.latent(features)).view(-1, self.base_channels, self.base, self.base)
        return self.upsample(grid)  # [n, out_channels, image_size, image_size]


class RBFPrecision(nn.Module):
    """A radial-basis-function network for the decoder's precision (R-VAE paper, section 4 and Table 5;
    Arvanitidis et al. 2018):

        beta(z) = softplus(W) v(z) + floor,   v_k(z) = exp(-lambda_k |z - c_k|^2),

    with positive output weights, so the precision falls to ``floor`` (the variance grows to 1/floor)
    away from the centres c_k, and the pull-back metric grows off the data. The centres are k-means
    centres of the training codes (:meth:`fit_centres`; 350 in the paper). ``bandwidth`` fixes every
    lambda_k (0.01 in the paper, appendix C, whose codes are spread widely); ``bandwidth=None`` adapts
    them to the code scale as Arvanitidis et al.: lambda_k = 1/2 (a s_k)^-2, s_k the mean distance of
    cluster k's codes to its centre and a = ``bandwidth_scale``.

    Args:
        latent_dim: d.
        out_features: D, one precision per data dimension.
        num_centers: K.
        bandwidth: the factor on squared distances in the kernel, or ``None`` (per-centre, adaptive).
        bandwidth_scale: a, the kernel width in cluster radii when adaptive.
        floor: the precision far from the data.
    """

    def __init__(self, latent_dim: int, out_features: int, num_centers: int = 350, bandwidth: float | None = 0.01,
                 bandwidth_scale: float = 1.0, floor: float = 0.1):
        super().__init__()
        if (bandwidth is not None and bandwidth <= 0) or floor <= 0 or bandwidth_scale <= 0:
            raise ValueError(f"bandwidth, bandwidth_scale and floor must be positive; got {bandwidth}, "
                             f"{bandwidth_scale} and {floor}.")
        self.bandwidth, self.bandwidth_scale, self.floor, self.num_centers = bandwidth, bandwidth_scale, floor, num_centers
        self.register_buffer("centres", torch.randn(num_centers, latent_dim))
        self.register_buffer("inverse_widths", torch.full((num_centers,), bandwidth or 1.0))  # lambda_k
        self.raw_weight = nn.Parameter(torch.randn(out_features, num_centers) * 0.1 - 2.0)

    def _kernel_precision(self, z: torch.Tensor) -> torch.Tensor:
        """``softplus(W) v(z)``, the precision above the floor, ``[n, D]``."""
        centres = self.centres.to(z)
        squared = (z.pow(2).sum(-1, keepdim=True) - 2 * z @ centres.T + centres.pow(2).sum(-1)).clamp_min(0)  # [n, K]
        weight = derived_weight(self.raw_weight, nn.functional.softplus)  # [D, K], once per loss evaluation
        return torch.exp(-self.inverse_widths.to(z) * squared) @ weight.T

    @torch.no_grad()
    def fit_centres(self, codes: torch.Tensor, target: torch.Tensor | None = None, seed: int = 0) -> None:
        """Place the centres at the k-means centres of the codes ``[n, d]`` (scikit-learn) and, when
        adaptive, set each lambda_k from its cluster's spread. The output weights are then rescaled so
        that the mean precision over the codes is ``target`` ``[D]`` (e.g. the inverse residual
        variance of the reconstructions), or, without one, what it was before."""
        from sklearn.cluster import KMeans

        if len(codes) < self.num_centers:
            raise ValueError(f"k-means with {self.num_centers} centres needs at least as many codes; got {len(codes)}.")
        codes = codes.detach().to(self.centres)
        before = self._kernel_precision(codes).mean(0)  # [D]
        points = codes.cpu().double().numpy()
        kmeans = KMeans(self.num_centers, n_init=1, random_state=seed).fit(points)
        self.centres.copy_(torch.from_numpy(kmeans.cluster_centers_))
        if self.bandwidth is None:
            distances = np.linalg.norm(points - kmeans.cluster_centers_[kmeans.labels_], axis=1)
            counts = np.bincount(kmeans.labels_, minlength=self.num_centers)
            spread = np.bincount(kmeans.labels_, distances, minlength=self.num_centers) / np.maximum(counts, 1)
            spread = np.maximum(spread, spread[spread > 0].min() if (spread > 0).any() else 1.0)  # singletons
            self.inverse_widths.copy_(torch.from_numpy(0.5 / (self.bandwidth_scale * spread) ** 2))
        wanted = before if target is None else (target.to(before) - self.floor).clamp_min(1e-6)
        scale = wanted / self._kernel_precision(codes).mean(0).clamp_min(1e-12)  # [D]
        weight = (nn.functional.softplus(self.raw_weight) * scale[:, None]).clamp_min(1e-6)
        self.raw_weight.copy_(weight + torch.log(-torch.expm1(-weight)))  # softplus^-1

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self._kernel_precision(z) + self.floor  # [n, D]


class MeanPrecisionDecoder(nn.Module):
    """A decoder of a mean network and a precision network for
    :class:`lvm.likelihoods.HeteroscedasticGaussianLikelihood`: outputs ``[n, 2, *data_shape]``, the
    mean network's output and the log-variance ``-log beta(z)``."""

    def __init__(self, mean: nn.Module, precision: RBFPrecision):
        super().__init__()
        self.mean, self.precision = mean, precision

    def forward(self, features):
        mean = self.mean(features)  # [n, *data_shape]
        log_var = -torch.log(self.precision(features)).view_as(mean)
        return torch.stack([mean, log_var], dim=1)


class GatedEncoder(nn.Module):
    """The gated nonlinear encoder of the lattice paper (section 4.1, after Tomczak & Welling):
    ``z = relu(sigmoid(x G + b_0) * (x A_1 + b_1)) A_2 + b_2``; ``hidden=0`` gives the linear encoder
    ``z = x A + b``, with ``out_features`` outputs (the code ``[n, d]`` of a point-mass posterior)."""

    def __init__(self, out_features: int, hidden: int = 300):
        super().__init__()
        self.gate = GatedLayer(hidden) if hidden else None
        self.out = nn.LazyLinear(out_features)

    def forward(self, x):
        h = x.flatten(start_dim=1)
        return self.out(self.gate(h) if self.gate is not None else h)


class GatedDecoder(nn.Module):
    """The decoder mirroring :class:`GatedEncoder` (``hidden=0``: linear), ``[n, *data_shape]``."""

    def __init__(self, data_shape: list[int], hidden: int = 300):
        super().__init__()
        self.data_shape = tuple(data_shape)
        self.gate = GatedLayer(hidden) if hidden else None
        self.out = nn.LazyLinear(math.prod(data_shape))

    def forward(self, features):
        h = self.gate(features) if self.gate is not None else features
        return self.out(h).view(-1, *self.data_shape)


class GatedLayer(nn.Module):
    """``relu(sigmoid(x G + b_0) * (x A + b))`` with ``width`` outputs."""

    def __init__(self, width: int):
        super().__init__()
        self.gate, self.value = nn.LazyLinear(width), nn.LazyLinear(width)

    def forward(self, x):
        return torch.relu(torch.sigmoid(self.gate(x)) * self.value(x))
