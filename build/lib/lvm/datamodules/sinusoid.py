"""The noisy 2-D sinusoid of the MLAE paper (section 5.1, Fig. 3, appendix E.1).

Positions ``t ~ N(0, 1)`` on the curve ``(t, sin(pi t / 2))``, plus isotropic Gaussian noise of
standard deviation ``noise`` (0.1 in the paper; 0.2 and 0.3 in Fig. 6). Batches are ``(x, t)``:
the noisy point ``[2]`` and its clean position along the curve, so an embedding can be checked
(and coloured) against it. Generated from ``seed``; nothing to download.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import TensorDataset

from .base import SplitDataModule

__all__ = ["NoisySinusoidDataModule", "noisy_sinusoid"]


def noisy_sinusoid(n: int, noise: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points ``[n, 2]`` and their clean positions ``t: [n]``."""
    t = torch.randn(n, generator=generator)
    curve = torch.stack([t, torch.sin(math.pi * t / 2)], dim=1)  # [n, 2]
    return curve + noise * torch.randn(n, 2, generator=generator), t


class NoisySinusoidDataModule(SplitDataModule):
    """Args:
        num_train, num_val, num_test: examples per split (drawn independently).
        noise: standard deviation of the isotropic noise.
        batch_size, seed, num_workers: as usual; ``seed`` fixes the data.
    """

    data_shape = (2,)

    def __init__(self, num_train: int = 10_000, num_val: int = 1000, num_test: int = 1000, noise: float = 0.1,
                 batch_size: int = 128, seed: int = 0, num_workers: int = 0):
        super().__init__(batch_size, num_workers, seed)
        if noise < 0:
            raise ValueError(f"noise must be a non-negative standard deviation; got {noise}.")
        self.save_hyperparameters()
        self.sizes, self.noise = (num_train, num_val, num_test), noise

    def build_splits(self):
        generator = torch.Generator().manual_seed(self.seed)
        return tuple(TensorDataset(*noisy_sinusoid(n, self.noise, generator)) for n in self.sizes)
