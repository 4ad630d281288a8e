"""The embedded default data set: scikit-learn's bundled 8x8 handwritten digits (1797 images).

No download is needed. Pixels (0..16) are scaled to [0, 1]; images are ``[1, 8, 8]`` float32
and batches are ``(image, label)`` so plots can colour embeddings by digit.
"""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from torch.utils.data import TensorDataset

from .base import SplitDataModule, seeded_split, split_fractions

__all__ = ["DigitsDataModule"]


class DigitsDataModule(SplitDataModule):
    """Args:
        batch_size: examples per batch.
        test_fraction: held-out fraction (an 80/20 train/test split by default).
        val_fraction: fraction of all examples used for validation, taken from the training part.
        seed: fixes the split.
        num_workers: DataLoader workers.
    """

    data_shape = (1, 8, 8)
    label_title = "digit"
    quantization_step = 1 / 16  # 17 grey levels (0..16) scaled to [0, 1]: bits/dim of the quantised data

    def __init__(self, batch_size: int = 64, test_fraction: float = 0.2, val_fraction: float = 0.1,
                 seed: int = 0, num_workers: int = 0):
        super().__init__(batch_size, num_workers, seed)
        self.save_hyperparameters()
        self.test_fraction, self.val_fraction = test_fraction, val_fraction

    def build_splits(self):
        digits = load_digits()
        images = torch.tensor(digits.images, dtype=torch.float32).div(16.0).unsqueeze(1)  # [n, 1, 8, 8]
        dataset = TensorDataset(images, torch.tensor(digits.target, dtype=torch.int64))
        return seeded_split(dataset, split_fractions(self.test_fraction, self.val_fraction), self.seed)
