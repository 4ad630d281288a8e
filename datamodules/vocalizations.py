"""Spectrograms of segmented vocalizations (QLVM paper, appendix B.1.2: zebra finch and gerbil
syllables processed as by Autoencoded Vocal Analysis; Fig. 5E colours the embedding by a syllable
feature).

On-disk layout (what ``python -m datamodules.vocalization_preprocess`` writes, and AVA's layout): a
directory of HDF5 files (``*.h5`` / ``*.hdf5``), each holding

* ``specs``: float array (N, 128, 128), spectrograms scaled to [0, 1] (frequency x time);
* per-syllable metadata, 1-D arrays of length N: ``onsets`` and ``offsets`` (seconds),
  ``audio_filenames`` (bytes strings), and any features (e.g. ``mean_freq``, ``family``).

or a single ``.npz`` with the same keys. Spectrograms outside [0, 1] are min-max scaled over the whole
set (Bernoulli-compatible). Batches are ``(spec [1, 128, 128], label)`` with the label the metadata
field ``label_key`` (float) or the syllable index; all metadata is on ``metadata`` (dict of arrays in
the dataset's order). 80/20 train/test split by ``seed``, ``val_fraction`` of all for validation.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import TensorDataset

from .base import SplitDataModule, seeded_split
from .hdf5 import H5Rows, require_dataset

__all__ = ["VocalizationsDataModule"]

SIDE = 128
CHUNK = 1024  # spectrograms read at once when scanning a file


class VocalizationsDataModule(SplitDataModule):
    """Args:
        root: the directory of HDF5 files, or one ``.npz`` file.
        label_key: the metadata field returned as the label (``None``: the syllable index).
        test_fraction, val_fraction, batch_size, seed, num_workers: as usual.
    """

    data_shape = (1, SIDE, SIDE)

    def __init__(self, root: str = "data/vocalizations", label_key: str | None = None, test_fraction: float = 0.2,
                 val_fraction: float = 0.1, batch_size: int = 64, seed: int = 0, num_workers: int = 0):
        super().__init__(batch_size, num_workers, seed)
        self.save_hyperparameters()
        self.root, self.label_key = Path(root), label_key
        self.fractions = [1.0 - test_fraction - val_fraction, val_fraction, test_fraction]
        self.metadata: dict[str, np.ndarray] = {}

    def _files(self) -> list[Path]:
        if self.root.suffix == ".npz":
            if not self.root.is_file():
                raise FileNotFoundError(f"Vocalization file not found: {self.root.resolve()}.")
            return [self.root]
        files = sorted([*self.root.glob("*.h5"), *self.root.glob("*.hdf5")]) if self.root.is_dir() else []
        if not files:
            raise FileNotFoundError(
                f"No vocalization HDF5 files (*.h5, *.hdf5) in {self.root.resolve()}. Write them from WAV files and "
                "a table of syllable onsets with `python -m datamodules.vocalization_preprocess`, or point "
                "data.init_args.root at AVA-style files holding 'specs' (N, 128, 128) and per-syllable metadata."
            )
        return files

    def prepare_data(self) -> None:
        self._files()

    def _read_metadata(self, arrays: dict, path: Path, n: int) -> dict[str, np.ndarray]:
        fields = {}
        for key, value in arrays.items():
            value = np.asarray(value)
            if key == "specs" or value.ndim != 1:
                continue
            if len(value) != n:
                raise ValueError(f"{path}: metadata {key!r} has {len(value)} entries for {n} spectrograms.")
            fields[key] = value.astype(str) if value.dtype.kind in "SO" else value
        return fields

    def build_splits(self):
        files = self._files()
        if files[0].suffix == ".npz":
            with np.load(files[0], allow_pickle=False) as archive:
                if "specs" not in archive:
                    raise KeyError(f"{files[0]}: no array 'specs' (it has {sorted(archive.keys())}).")
                specs = archive["specs"].astype(np.float32)
                if specs.shape[1:] != (SIDE, SIDE):
                    raise ValueError(f"{files[0]}: 'specs' has shape {specs.shape}, expected (N, {SIDE}, {SIDE}).")
                self.metadata = self._read_metadata(dict(archive), files[0], len(specs))
            low, high = self._range(specs, files[0])
            dataset = TensorDataset(torch.from_numpy((specs - low) / (high - low)).unsqueeze(1), self._labels(len(specs)))
        else:
            rows, metadata, low, high = [], [], np.inf, -np.inf
            for index, path in enumerate(files):
                with h5py.File(path, "r") as handle:
                    specs = require_dataset(handle, "specs", path, (None, SIDE, SIDE), np.float32)
                    lo, hi = self._range(specs, path)
                    low, high = min(low, lo), max(high, hi)
                    metadata.append(self._read_metadata({k: handle[k][:] for k in handle if k != "specs"}, path, len(specs)))
                    rows += [(index, row) for row in range(len(specs))]
            self.metadata = {key: np.concatenate([m[key] for m in metadata]) for key in metadata[0]
                             if all(key in m for m in metadata)}
            labels = self._labels(len(rows))

            def item(spec: np.ndarray, position: int):
                x = torch.from_numpy(((spec - low) / (high - low)).astype(np.float32)).unsqueeze(0)  # [1, 128, 128]
                return x, labels[position]

            dataset = H5Rows(files, "specs", rows, item)
        return tuple(seeded_split(dataset, self.fractions, self.seed))

    @staticmethod
    def _range(specs, path: Path) -> tuple[float, float]:
        """(0, 1) for spectrograms already in [0, 1], else their min and max (min-max scaling). Reads
        an HDF5 dataset ``CHUNK`` spectrograms at a time, never whole."""
        low, high = np.inf, -np.inf
        for start in range(0, len(specs), CHUNK):
            chunk = specs[start:start + CHUNK]
            if not np.isfinite(chunk).all():
                raise ValueError(f"{path}: 'specs' holds NaN or infinite values.")
            low, high = min(low, float(chunk.min())), max(high, float(chunk.max()))
        return (0.0, 1.0) if low >= 0 and high <= 1 else (low, high if high > low else low + 1.0)

    def _labels(self, n: int) -> torch.Tensor:
        if self.label_key is None:
            return torch.arange(n)
        if self.label_key not in self.metadata:
            raise KeyError(f"label_key {self.label_key!r} is not a metadata field of {self.root}; "
                           f"choose one of {sorted(self.metadata)}.")
        values = self.metadata[self.label_key]
        if values.dtype.kind not in "biuf":
            _, codes = np.unique(values, return_inverse=True)  # categories (e.g. family names) as integers
            return torch.from_numpy(codes)
        return torch.from_numpy(values.astype(np.float32))


