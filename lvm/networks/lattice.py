"""The gated networks of "Lattice Representation Learning", Lastras, 2020 (section 4.1), after the gated
layers of "VAE with a VampPrior", Tomczak and Welling, 2018.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lvm.networks.layers import require_data_shape


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

    def __init__(self, data_shape: list[int] | None = None, hidden: int = 300):
        super().__init__()
        self.data_shape = tuple(require_data_shape(data_shape, type(self).__name__))
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
