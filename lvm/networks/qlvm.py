"""Decoder and encoder networks of "Quasi Monte Carlo methods enable extremely low-dimensional deep generative
models", Martinez and Williams, 2024 (QLVM paper, Fig. A2, appendix B.2).

Decoders map latent features ``[n, F]`` (``F = 2d`` on the torus) to likelihood parameters of
shape ``[n, *data_shape]``; their first layer is lazy, so the same decoder config works for
any latent space (the model runs one dry forward pass at construction to fix the size).
Every linear/conv layer before the output is followed by a ReLU. Encoders mirror the decoders
with tanh in place of ReLU (B.2). An encoder outputs ``out_features`` numbers per example, which the model's
posterior family reads (:mod:`lvm.posteriors`: mean and log-variances ``[n, 2d]``, a code ``[n, d]``, ...); the CLI
sets ``out_features`` from the posterior and the prior's dimension, so configs name neither.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lvm.networks.layers import _activation, _mlp, require_data_shape


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
    ``data_shape``: the shape of one example (left out in a config, ``train.py`` takes it from the datamodule);
    ``activation``: ``"relu"`` (default), ``"tanh"`` or ``"elu"``."""

    def __init__(self, data_shape: list[int] | None = None, hidden: list[int] = (256, 512), activation: str = "relu"):
        super().__init__()
        self.data_shape = tuple(require_data_shape(data_shape, type(self).__name__))
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
