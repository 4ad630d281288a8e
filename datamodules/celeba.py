"""CelebA (Liu et al. 2015) via torchvision, aligned-and-cropped faces with the official
train/valid/test partition.

Two settings from the papers: the QLVM setting (80x80 grayscale, ``image_size: 80,
grayscale: true``) and the 64x64 RGB centre-crop setting of Higgins et al. / pythae
(``image_size: 64``, the default). Images are float32 in [0, 1]; batches are
``(image, label)`` where the label is one binary attribute (``label_attribute``, default
"Smiling") so embeddings can be coloured by it.

On-disk layout (torchvision's): ``<root>/celeba/img_align_celeba/*.jpg`` and, beside it,
``list_eval_partition.txt``, ``list_attr_celeba.txt``, ``identity_CelebA.txt``,
``list_bbox_celeba.txt``, ``list_landmarks_align_celeba.txt``.
"""

from __future__ import annotations

import operator
from pathlib import Path

from torchvision import transforms
from torchvision.datasets import CelebA

from .base import SplitDataModule

__all__ = ["CelebADataModule"]

_FILES = ["list_eval_partition.txt", "list_attr_celeba.txt", "identity_CelebA.txt", "list_bbox_celeba.txt",
          "list_landmarks_align_celeba.txt"]


class CelebADataModule(SplitDataModule):
    """Args:
        root: directory holding ``celeba/``.
        image_size: side of the square images after the centre crop.
        crop_size: side of the centre crop taken from the 178x218 aligned image before resizing.
        grayscale: convert to one channel (the QLVM setting).
        label_attribute: the attribute returned as the label (one of the 40 CelebA attributes).
        download: ask torchvision to fetch the files from Google Drive (often over quota; see README).
    """

    quantization_step = 1 / 255  # PIL resizes the 8-bit images; ToTensor scales the levels to [0, 1]

    def __init__(self, root: str = "data", image_size: int = 64, crop_size: int = 148, grayscale: bool = False,
                 label_attribute: str = "Smiling", download: bool = False, batch_size: int = 64, seed: int = 0,
                 num_workers: int = 4):
        super().__init__(batch_size, num_workers, seed)
        self.save_hyperparameters()
        self.root, self.download, self.label_attribute = Path(root), download, label_attribute
        self.data_shape = (1 if grayscale else 3, image_size, image_size)
        steps = [transforms.CenterCrop(crop_size), transforms.Resize(image_size)]
        steps += [transforms.Grayscale()] if grayscale else []
        self.transform = transforms.Compose([*steps, transforms.ToTensor()])

    def _split(self, split: str) -> CelebA:
        try:
            dataset = CelebA(self.root, split=split, target_type="attr", transform=self.transform, download=self.download)
        except RuntimeError as error:
            folder = (self.root / "celeba").resolve()
            raise FileNotFoundError(
                f"CelebA not found (or a file is corrupted) under {folder}. Download img_align_celeba.zip and "
                f"{', '.join(_FILES)} from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Google Drive, "
                f"'Align&Cropped Images' and 'Anno'/'Eval'), put the .txt files in {folder} and unzip the images "
                f"to {folder / 'img_align_celeba'}, or set data.init_args.root to the directory holding celeba/."
            ) from error
        if self.label_attribute not in dataset.attr_names:
            raise ValueError(f"Unknown CelebA attribute {self.label_attribute!r}; choose one of {dataset.attr_names}.")
        column = dataset.attr_names.index(self.label_attribute)
        dataset.target_transform = operator.itemgetter(column)  # attributes [40] -> the chosen 0/1 value
        return dataset

    def prepare_data(self) -> None:
        self._split("all")

    def build_splits(self):
        return self._split("train"), self._split("valid"), self._split("test")
