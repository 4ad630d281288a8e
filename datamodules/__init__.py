"""LightningDataModules; batches are ``(x, label)`` with ``x: [b, *data_shape]``."""

from .celeba import CelebADataModule
from .digits import DigitsDataModule
from .mnist import BinarizedMNISTDataModule, FashionMNISTDataModule, MNISTDataModule
from .sinusoid import NoisySinusoidDataModule
from .tabular import GasDataModule, HepmassDataModule, MinibooneDataModule, PowerDataModule

__all__ = ["CelebADataModule", "DigitsDataModule", "MNISTDataModule", "FashionMNISTDataModule", "BinarizedMNISTDataModule", "NoisySinusoidDataModule",
           "PowerDataModule", "GasDataModule", "HepmassDataModule", "MinibooneDataModule"]
