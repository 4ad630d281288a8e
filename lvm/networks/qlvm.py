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


def _base_side(side: int, channels: list[int], network: str) -> int:
    """The side of the base grid that ``len(channels)`` stride-2 stages link to ``side`` (28 with 2 stages -> 7,
    64 with 4 -> 4, 128 with 4 -> 8, 80 with 4 -> 5), or a ``ValueError`` when they cannot."""
    stages = len(channels)
    if side % 2**stages:
        fits = max(k for k in range(stages + 1) if side % 2**k == 0)
        raise ValueError(f"{network}: {stages} stride-2 stages (channels={list(channels)}) need a side divisible by "
                         f"{2**stages}; got {side}. Give channels {fits} entries, or preprocess the data to a side "
                         f"divisible by {2**stages} (e.g. {2**stages * max(1, round(side / 2**stages))}).")
    return side // 2**stages


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
    """Convolutional decoder for images and spectrograms (28x28 MNIST, 64x64, 80x80 Celeb-A, 128x128 syllables): a
    linear layer to a ``[channels[0], h, w]`` grid followed by one stride-2 transposed convolution per entry of
    ``channels``, doubling the sides up to the data's, then a 3x3 convolution to the output channels.

    The data's shape is ``data_shape`` ``[C, H, W]`` (left out in a config, ``train.py`` takes it from the datamodule,
    so one config trains on any preprocessed size whose sides ``len(channels)`` halvings divide), or, as in the
    papers' configs, square ``image_size`` with ``out_channels``; when both are given they must agree."""

    def __init__(self, image_size: int | None = None, out_channels: int | None = None, hidden: int = 256,
                 channels: list[int] = (64, 32), data_shape: list[int] | None = None):
        super().__init__()
        name = type(self).__name__
        if image_size is not None:
            stated = [out_channels or 1, image_size, image_size]
            if data_shape is not None and list(data_shape) != stated:
                raise ValueError(f"{name}: image_size {image_size} with out_channels {out_channels or 1} makes "
                                 f"{stated}, but the data are {list(data_shape)}; leave image_size and out_channels "
                                 "out to take the data's shape, or preprocess the data to that size.")
            data_shape = stated
        elif data_shape is not None and out_channels is not None and data_shape[0] != out_channels:
            raise ValueError(f"{name}: out_channels {out_channels} but the data have {data_shape[0]} channels.")
        data_shape = require_data_shape(data_shape, name)
        if len(data_shape) != 3:
            raise ValueError(f"{name} decodes images [C, H, W]; got data_shape {data_shape}. Use MLPDecoder for "
                             "vectors.")
        self.out_channels, height, width = data_shape
        self.base = (_base_side(height, channels, name), _base_side(width, channels, name))
        self.image_size = height if height == width else (height, width)
        self.channels = list(channels)
        self.project = nn.Sequential(
            *_mlp([hidden, channels[0] * self.base[0] * self.base[1]], nn.ReLU)
        )
        ups: list[nn.Module] = []
        widths = list(channels) + [channels[-1]]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            ups += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU()]
        self.upsample = nn.Sequential(*ups, nn.Conv2d(widths[-1], self.out_channels, 3, padding=1))
        self.data_shape = tuple(data_shape)

    def forward(self, features):
        grid = self.project(features).view(-1, self.channels[0], *self.base)  # [n, channels[0], h, w]
        return self.upsample(grid)  # [n, *data_shape]


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
        _base_side(image_size, channels, type(self).__name__)
        convs: list[nn.Module] = []
        widths = [in_channels] + list(channels)
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            convs += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.Tanh()]
        self.net = nn.Sequential(
            *convs, nn.Flatten(), nn.LazyLinear(hidden), nn.Tanh(), nn.Linear(hidden, out_features)
        )

    def forward(self, x):
        return self.net(x)  # [n, out_features]
