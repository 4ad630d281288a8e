"""LightningDataModules; batches are ``(x, label)`` with ``x: [b, *data_shape]``."""

from .arrays import ArrayDataModule
from .celeba import CelebADataModule
from .digits import DigitsDataModule
from .mocap import MocapDataModule
from .mnist import BinarizedMNISTDataModule, FashionMNISTDataModule, MNISTDataModule
from .omniglot import OmniglotDataModule
from .sessions import SessionsDataModule
from .shapes3d import Shapes3DDataModule
from .sinusoid import NoisySinusoidDataModule
from .tabular import GasDataModule, HepmassDataModule, MinibooneDataModule, PowerDataModule
from .vocalizations import VocalizationsDataModule

__all__ = ["ArrayDataModule", "SessionsDataModule", "CelebADataModule", "DigitsDataModule", "MNISTDataModule", "FashionMNISTDataModule", "BinarizedMNISTDataModule", "NoisySinusoidDataModule",
           "Shapes3DDataModule", "VocalizationsDataModule", "MocapDataModule", "OmniglotDataModule", "PowerDataModule", "GasDataModule", "HepmassDataModule", "MinibooneDataModule"]
