"""Vocalizations from raw recordings: segmentation (:mod:`.segment`, also the command that imports annotations) and
annotation import (:mod:`.annotations`), syllable spectrograms (:mod:`.preprocess`) and the datamodule over the HDF5
files they write (:mod:`.datamodule`)."""

from .datamodule import VocalizationsDataModule

__all__ = ["VocalizationsDataModule"]
