"""MNIST via torchvision (LeCun et al.), the default train/test split of the QLVM paper (B.1.1).

Images are ``[1, 28, 28]`` float32 in [0, 1] (grey levels, as the paper's Bernoulli runs use);
batches are ``(image, label)``. A validation set is carved from the 60 000 training images by
seed; the 10 000 official test images are the test set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import torch
from torch.utils.data import Subset, TensorDataset
from torchvision.datasets import MNIST, FashionMNIST

from .base import SplitDataModule, seeded_split

__all__ = ["MNISTDataModule", "FashionMNISTDataModule", "BinarizedMNISTDataModule"]

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
    label_title = "digit"
    quantization_step = 1 / 255  # 8-bit grey levels scaled to [0, 1]
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
    label_title = "clothing class"


class BinarizedMNISTDataModule(MNISTDataModule):
    """Statically binarized MNIST (the lattice paper's setting, section 4.1): the standard files of
    Larochelle & Murray (2011), ``<root>/binarized_mnist/binarized_mnist_{train,valid,test}.amat``
    (50 000 / 10 000 / 10 000 rows of 784 space-separated 0/1 values, from
    http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/), or, when they are absent,
    the same sizes binarized once from MNIST's grey levels with a Bernoulli draw seeded by
    ``binarize_seed`` (the validation images are the last 10 000 training images by ``seed``).
    Images are ``[1, 28, 28]`` float32 in {0, 1}; batches are ``(x,)`` from the files and
    ``(x, label)`` when binarized from MNIST."""

    quantization_step = 1.0  # two levels, 0 and 1

    splits = ("train", "valid", "test")

    def __init__(self, root: str = "data", download: bool = True, binarize_seed: int = 0, val_size: int = 10_000,
                 batch_size: int = 100, seed: int = 0, num_workers: int = 0):
        super().__init__(root, download, val_size, None, batch_size, seed, num_workers)
        self.binarize_seed = binarize_seed

    def _amat(self, split: str) -> Path:
        return self.root / "binarized_mnist" / f"binarized_mnist_{split}.amat"

    def prepare_data(self) -> None:
        if not all(self._amat(split).is_file() for split in self.splits):
            super().prepare_data()

    def build_splits(self):
        if all(self._amat(split).is_file() for split in self.splits):
            return tuple(TensorDataset(self._read_amat(self._amat(split))) for split in self.splits)
        generator = torch.Generator().manual_seed(self.binarize_seed)
        splits = []
        for part in super().build_splits():
            images, labels = zip(*[part[i] for i in range(len(part))])
            grey = torch.stack(images)
            splits.append(TensorDataset(torch.bernoulli(grey, generator=generator), torch.stack(labels)))
        return tuple(splits)

    @staticmethod
    def _read_amat(path: Path) -> torch.Tensor:
        values = np.loadtxt(path, dtype=np.float32, ndmin=2)
        if values.shape[1] != 784 or not np.isin(values, (0.0, 1.0)).all():
            raise ValueError(f"{path} must hold rows of 784 binary values; got shape {values.shape} "
                             f"with values {np.unique(values)[:5]}.")
        return torch.from_numpy(values).view(-1, 1, 28, 28)
