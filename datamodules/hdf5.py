"""Lazy, worker-safe reading of HDF5 arrays (3dShapes, vocalization spectrograms).

An :class:`H5Rows` dataset reads rows of one array of one or more HDF5 files on demand. The files are
opened on first access in each process, so every DataLoader worker gets its own handle (h5py handles
cannot be shared across processes) and nothing is loaded whole. An :class:`H5Split` is a split of one (a
``Subset`` that says which file rows it holds), so the splits share the data set beneath them and the
per-example metadata (covariates) of that data set.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset, Subset
from torch.utils.data._utils.collate import default_collate

__all__ = ["H5Rows", "H5Split", "require_dataset"]


def require_dataset(handle: h5py.File, key: str, path: Path, shape: tuple | None = None, dtype=None) -> h5py.Dataset:
    """``handle[key]``, checked: it exists, and its trailing shape and dtype kind are as expected
    (``None`` entries in ``shape`` are free); errors name the file and say what is wrong."""
    if key not in handle:
        raise KeyError(f"{path}: no dataset {key!r} (it has {sorted(handle.keys())}).")
    dataset = handle[key]
    if shape is not None and (len(dataset.shape) != len(shape)
                              or any(s is not None and s != d for s, d in zip(shape, dataset.shape))):
        expected = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{path}: dataset {key!r} has shape {dataset.shape}, expected {expected}.")
    if dtype is not None and np.dtype(dataset.dtype).kind != np.dtype(dtype).kind:
        raise ValueError(f"{path}: dataset {key!r} has dtype {dataset.dtype}, expected {np.dtype(dtype)}.")
    return dataset


class H5Rows(Dataset):
    """Items ``transform(row, index)`` for rows ``[(file_index, row), ...]`` of the array ``key`` in
    ``paths``. ``cache`` (an array of the selected rows, already loaded) bypasses the files."""

    def __init__(self, paths: list[Path], key: str, rows: list[tuple[int, int]],
                 transform: Callable[[np.ndarray, int], tuple], cache: np.ndarray | None = None):
        self.paths, self.key, self.rows, self.transform, self.cache = [Path(p) for p in paths], key, rows, transform, cache
        self._handles: dict[int, h5py.File] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self):  # workers open their own handles
        state = dict(self.__dict__)
        state["_handles"] = None
        return state

    def __getitem__(self, index: int):
        if self.cache is not None:
            return self.transform(self.cache[index], index)
        if self._handles is None:
            self._handles = {}
        file_index, row = self.rows[index]
        if file_index not in self._handles:
            self._handles[file_index] = h5py.File(self.paths[file_index], "r")
        return self.transform(self._handles[file_index][self.key][row], index)

    def fetch_rows(self, rows: torch.Tensor) -> tuple:
        """The items of the positions ``rows`` ``[b]`` collated into batch tensors (e.g. ``(x [b, ...], label [b])``),
        so :class:`lvm.datamodules.base.TensorBatches` can add the examples' covariate codes."""
        return tuple(default_collate([self[int(i)] for i in rows]))


class H5Split(Subset):
    """The positions ``indices`` of an :class:`H5Rows` (a train, validation or test split)."""

    dataset: H5Rows

    @property
    def rows(self) -> list[tuple[int, int]]:
        """The ``(file_index, row)`` of each example of the split, in its order."""
        return [self.dataset.rows[i] for i in self.indices]

    @property
    def cache(self) -> np.ndarray | None:
        """The split's rows of the in-memory array (``None`` when read lazily)."""
        return None if self.dataset.cache is None else self.dataset.cache[np.asarray(self.indices, dtype=np.int64)]

    @property
    def _handles(self) -> dict[int, h5py.File] | None:
        """The files the data set beneath opened in this process (``None``: none yet; workers open their own)."""
        return self.dataset._handles
