"""Omniglot (Lake et al. 2015) at 28 x 28, as in the lattice paper (section 4.1, Table 2).

On-disk layout (torchvision's, the two official zips extracted): ``<root>/omniglot-py/images_background/
<alphabet>/<character>/*.png`` (the training set) and ``.../images_evaluation/...`` (the test set), 105 x 105
black strokes on white. Images are inverted (strokes = 1) and resized to ``image_size`` with
antialiasing, giving grey levels; training images are binarized afresh at every draw (dynamic
binarization, ``train_binarization: dynamic``) or kept grey (``none``: the lattice paper's setting, "we use the
original OMNIGLOT (non-binarized) dataset during training"), validation and test images once, by a Bernoulli
draw seeded by ``binarize_seed``.
Batches are ``(image [1, s, s], alphabet index)``. ``download: true`` lets torchvision fetch the zips.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, TensorDataset

from .base import SplitDataModule, seeded_split

__all__ = ["OmniglotDataModule"]

SETS = {"train": "images_background", "test": "images_evaluation"}


class DynamicBinarization(Dataset):
    """Grey images ``[n, 1, s, s]`` with labels, binarized by a fresh Bernoulli draw at every access."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return torch.bernoulli(self.images[index]), self.labels[index]


class OmniglotDataModule(SplitDataModule):
    """Args:
        root: the directory holding ``omniglot-py/``.
        image_size: side of the resized images (28).
        val_fraction: training images held out for validation (by ``seed``).
        binarize_seed: seed of the static binarization of validation and test images.
        train_binarization: ``"dynamic"`` (a fresh Bernoulli draw at every access) or ``"none"`` (grey images).
        download: fetch the zips with torchvision when absent.
        batch_size, seed, num_workers: as usual.
    """

    label_title = "alphabet"

    def __init__(self, root: str = "data", image_size: int = 28, val_fraction: float = 0.1, binarize_seed: int = 0,
                 train_binarization: str = "dynamic", download: bool = False, batch_size: int = 100, seed: int = 0,
                 num_workers: int = 0):
        super().__init__(batch_size, num_workers, seed)
        self.save_hyperparameters()
        if train_binarization not in ("dynamic", "none"):
            raise ValueError(f"train_binarization must be 'dynamic' or 'none'; got {train_binarization!r}.")
        self.train_binarization = train_binarization
        self.folder = Path(root) / "omniglot-py"
        self.image_size, self.val_fraction, self.binarize_seed, self.download = image_size, val_fraction, binarize_seed, download
        self.data_shape = (1, image_size, image_size)

    def prepare_data(self) -> None:
        if self.download and not all((self.folder / name).is_dir() for name in SETS.values()):
            from torchvision.datasets import Omniglot

            for background in (True, False):
                Omniglot(str(self.folder.parent), background=background, download=True)
        for name in SETS.values():
            if not any((self.folder / name).glob("*/*/*.png")):
                raise FileNotFoundError(
                    f"Omniglot images not found under {(self.folder / name).resolve()}. Download images_background.zip "
                    "and images_evaluation.zip from https://github.com/brendenlake/omniglot (python/ folder), unzip "
                    f"them into {self.folder.resolve()}, or set data.init_args.download: true where there is internet."
                )

    def _load(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        paths = sorted((self.folder / name).glob("*/*/*.png"))
        alphabets = sorted({p.parent.parent.name for p in paths})
        images = np.stack([self._grey(p) for p in paths])  # [n, s, s] in [0, 1]
        labels = torch.tensor([alphabets.index(p.parent.parent.name) for p in paths])
        return torch.from_numpy(images).unsqueeze(1), labels

    def _grey(self, path: Path) -> np.ndarray:
        image = Image.open(path).convert("L")
        if image.size != (105, 105):
            raise ValueError(f"{path}: an Omniglot image must be 105 x 105; got {image.size[0]} x {image.size[1]}.")
        inverted = Image.fromarray(255 - np.asarray(image))  # strokes = 1
        resized = inverted.resize((self.image_size, self.image_size), Image.Resampling.BILINEAR, reducing_gap=None)
        return np.asarray(resized, dtype=np.float32) / 255.0

    def build_splits(self):
        self.prepare_data()
        generator = torch.Generator().manual_seed(self.binarize_seed)
        train_images, train_labels = self._load(SETS["train"])
        test_images, test_labels = self._load(SETS["test"])
        train, val = seeded_split(TensorDataset(train_images, train_labels), [1 - self.val_fraction, self.val_fraction],
                                  self.seed)
        val_images = torch.bernoulli(train_images[val.indices], generator=generator)
        training = DynamicBinarization if self.train_binarization == "dynamic" else TensorDataset
        return (training(train_images[train.indices], train_labels[train.indices]),
                TensorDataset(val_images, train_labels[val.indices]),
                TensorDataset(torch.bernoulli(test_images, generator=generator), test_labels))
