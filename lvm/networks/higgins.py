"""The 64x64 convolutional encoder and decoder of "beta-VAE: Learning basic visual concepts with a constrained
variational framework", Higgins, Matthey, Pal, Burgess, Glorot, Botvinick, Mohamed and Lerchner, 2017, as specified
in "A Sampling-Free Approximation of Gaussian Variational Auto-Encoders" (anonymous ICLR 2022 submission),
appendix B.1, for its CelebA experiment (section 4.2).
"""

from __future__ import annotations

from torch import nn


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
