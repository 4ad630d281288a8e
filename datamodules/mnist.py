"""MNIST via torchvision (LeCun et al.), the default train/test split of the QLVM paper (B.1.1).

Images are ``[1, 28, 28]`` float32 in [0, 1] (grey levels, as the paper's Bernoulli runs use);
batches are ``(image, label)``. A validation set is carved from the 60 000 training images by
seed; the 10 000 official test images are the test set.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Subset, TensorDataset
from torchvision.datasets import MNIST, FashionMNIST

from .base import SplitDataModule, seeded_split

__all__ = ["MNISTDataModule", "FashionMNISTDataModule"]

_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


class MNISTDataModule(SplitDataModule):
    """Args:
        root: directory holding ``MNIST/raw/<idx files>`` (torchvision's layout).
        download: try to download when the files are absent.
        val_size: training images held out for validation.
        train_subset: train on this many training images only, drawn by ``seed`` (the 1 000-image
            full-batch setting of the sampling-free VAE paper, Table 4); ``None`` uses them all.
        batch_size, num_workers, seed: as usual; ``seed`` fixes the splits.
    """

    data_shape = (1, 28, 28)
    dataset_class = MNIST
    source = "https://ossci-datasets.s3.amazonaws.com/mnist/ (or http://yann.lecun.com/exdb/mnist/)"

    def __init__(self, root: str = "data", download: bool = True, val_size: int = 5000,
                 train_subset: int | None = None, batch_size: int = 128, seed: int = 0, num_workers: int = 0):
        super().__init__(batch_size, num_workers, seed)
        self.save_hyperparameters()
        self.root, self.download, self.val_size, self.train_subset = Path(root), download, val_size, train_subset

    def _missing_files_error(self, reason: str) -> FileNotFoundError:
        name = self.dataset_class.__name__
        raw = (self.root / name / "raw").resolve()
        return FileNotFoundError(
            f"{name} files not found under {raw} ({reason}). Download the four files "
            f"{', '.join(f + '.gz' for f in _FILES)} from {self.source}, gunzip them and put them in {raw}, "
            f"or set data.init_args.root to the directory that holds {name}/raw/."
        )

    def prepare_data(self) -> None:
        try:
            self.dataset_class(self.root, train=True, download=self.download)
        except RuntimeError as error:  # torchvision raises RuntimeError for absent or undownloadable files
            reason = "download failed" if self.download else "download disabled"
            raise self._missing_files_error(reason) from error

    def _tensors(self, train: bool) -> TensorDataset:
        try:
            dataset = self.dataset_class(self.root, train=train, download=False)
        except RuntimeError as error:
            raise self._missing_files_error("not downloaded") from error
        images = dataset.data.to(torch.float32).div(255.0).unsqueeze(1)  # [n, 1, 28, 28]
        return TensorDataset(images, dataset.targets.to(torch.int64))

    def build_splits(self):
        train_full = self._tensors(train=True)
        fraction = self.val_size / len(train_full)
        train_set, val_set = seeded_split(train_full, [1.0 - fraction, fraction], self.seed)
        if self.train_subset is not None:
            if not 0 < self.train_subset <= len(train_set):
                raise ValueError(f"train_subset must be between 1 and {len(train_set)}; got {self.train_subset}.")
            train_set = Subset(train_set, range(self.train_subset))  # train_set is already in seeded random order
        return train_set, val_set, self._tensors(train=False)


class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST (Xiao et al. 2017) via torchvision: the same IDX files, sizes and splits as
    MNIST, under ``<root>/FashionMNIST/raw/`` (the R-VAE paper's second data set, Table 2)."""

    dataset_class = FashionMNIST
    source = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
