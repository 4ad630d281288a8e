"""Vocalizations from raw recordings: segmentation and annotation import (:mod:`.segment`), syllable spectrograms
(:mod:`.preprocess`) and the datamodule over the HDF5 files they write (:mod:`.datamodule`)."""

from .datamodule import VocalizationsDataModule

__all__ = ["VocalizationsDataModule"]
