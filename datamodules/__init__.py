"""LightningDataModules; batches are ``(x, label)`` with ``x: [b, *data_shape]``."""

from .digits import DigitsDataModule
from .mnist import MNISTDataModule

__all__ = ["DigitsDataModule", "MNISTDataModule"]
