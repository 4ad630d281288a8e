"""Decoder and encoder networks of the QLVM paper (Fig. A2, appendix B.2).

Decoders map latent features ``[n, F]`` (``F = 2d`` on the torus) to likelihood parameters of
shape ``[n, *data_shape]``; their first layer is lazy, so the same decoder config works for
any latent space (the model runs one dry forward pass at construction to fix the size).
Every linear/conv layer before the output is followed by a ReLU. Encoders mirror the decoders
with tanh in place of ReLU (B.2) and return ``[n, 2d]`` = (mean, log-variance).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["MLPDecoder", "ConvDecoder", "MLPEncoder", "ConvEncoder", "HigginsEncoder", "HigginsDecoder"]


ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU}


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

    def forward(self, features):
        grid = self.project(features).view(-1, self.channels[0], self.base, self.base)
        return self.upsample(grid)  # [n, out_channels, image_size, image_size]


class MLPEncoder(nn.Module):
    """Fully connected Gaussian encoder: flattened input -> MLP -> (mean, log-variance).
    ``activation`` defaults to tanh (QLVM appendix B.2); the Taylor-VAE MNIST setting uses ReLU."""

    def __init__(self, latent_dim: int, hidden: list[int] = (512, 256), activation: str = "tanh"):
        super().__init__()
        self.latent_dim = latent_dim
        self.net = nn.Sequential(nn.Flatten(), *_mlp(list(hidden), _activation(activation)),
                                 nn.Linear(hidden[-1], 2 * latent_dim))

    def forward(self, x):
        return self.net(x)  # [n, 2d]


class ConvEncoder(nn.Module):
    """Convolutional Gaussian encoder mirroring :class:`ConvDecoder` with tanh activations."""

    def __init__(self, latent_dim: int, image_size: int = 28, in_channels: int = 1, hidden: int = 256,
                 channels: list[int] = (32, 64)):
        super().__init__()
        _num_stages(image_size, channels)
        self.latent_dim = latent_dim
        convs: list[nn.Module] = []
        widths = [in_channels] + list(channels)
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            convs += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.Tanh()]
        self.net = nn.Sequential(
            *convs, nn.Flatten(), nn.LazyLinear(hidden), nn.Tanh(), nn.Linear(hidden, 2 * latent_dim)
        )

    def forward(self, x):
        return self.net(x)  # [n, 2d]


class HigginsEncoder(nn.Module):
    """The 64x64 convolutional encoder of Higgins et al. (beta-VAE), as specified in the
    sampling-free VAE paper, appendix B.1: Conv 32, 32, 64, 64 (4x4, stride 2), Conv 256 (4x4,
    stride 1), each followed by ReLU, then FC 256 -> 2 * latent_dim (mean, log-variance)."""

    def __init__(self, latent_dim: int, in_channels: int = 3):
        super().__init__()
        self.latent_dim = latent_dim
        widths = [in_channels, 32, 32, 64, 64]
        convs: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            convs += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU()]  # 64 -> 32 -> 16 -> 8 -> 4
        self.net = nn.Sequential(*convs, nn.Conv2d(64, 256, 4), nn.ReLU(), nn.Flatten(),  # [n, 256]
                                 nn.Linear(256, 2 * latent_dim))

    def forward(self, x):
        return self.net(x)  # [n, 2d]


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
