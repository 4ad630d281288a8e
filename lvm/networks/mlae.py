"""Networks of "Maximum Likelihood Training of Autoencoders", Sorrenson, Rousselot, Zimmermann, Draxler,
Hummerich et al., 2023 (MLAE paper, appendix E): :class:`ResidualMLPEncoder`/:class:`ResidualMLPDecoder`
(toy and tabular data, E.1/E.3) and the Pythae-style convolutional :class:`PythaeConvEncoder`/
:class:`PythaeConvDecoder` ("ConvNet", Table 7; with ``residual_blocks=4`` and the MNIST channels
of Table 9, "ConvNet+").
"""

from __future__ import annotations

import math

from torch import nn

from lvm.networks.layers import _activation, _mlp, require_data_shape


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

    def __init__(self, data_shape: list[int] | None, latent_dim: int, hidden: list[int] = (256, 256), num_blocks: int = 2,
                 block_hidden: list[int] = (256, 256), activation: str = "relu"):
        super().__init__()
        self.data_shape = tuple(require_data_shape(data_shape, type(self).__name__))
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
