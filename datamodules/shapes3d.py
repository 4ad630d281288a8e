"""DeepMind's 3dShapes (Burgess & Kim 2018; QLVM paper section 3.4, appendix B.1.1).

One HDF5 file, ``3dshapes.h5`` (https://github.com/deepmind/3dshapes-dataset, ~6 GB): ``images``
(480000, 64, 64, 3) uint8 and ``labels`` (480000, 6) float64, the ground-truth factors floor hue,
wall hue, object hue, scale, shape and orientation. Images are read lazily in chunks of rows (one file
handle per DataLoader worker), never whole; ``subset`` trains on a seeded random subset and
``in_memory`` loads that subset once. Batches are ``(image [3, 64, 64] float32 in [0, 1], factors [6])``;
80/20 train/test split by ``seed`` (appendix B.1.1), with ``val_fraction`` of all examples for validation.
The factors are also per-example metadata by name (``metadata["shape"]``, ``metadata["scale"]``, ...), which a
conditional model names as covariates (``model.covariates: [{key: shape, kind: discrete}]``).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch

from .base import SplitDataModule, split_fractions
from .hdf5 import H5Rows, H5Split, require_dataset

__all__ = ["Shapes3DDataModule", "FACTORS"]

FACTORS = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")


class Shapes3DDataModule(SplitDataModule):
    """Args:
        path: the ``3dshapes.h5`` file.
        subset: use this many examples drawn by ``seed`` (``None``: all 480 000).
        in_memory: load the (subset's) images into memory once instead of reading them lazily.
        test_fraction, val_fraction: split fractions of all (selected) examples.
        batch_size, seed, num_workers: as usual.
    """

    data_shape = (3, 64, 64)
    quantization_step = 1 / 255  # 8-bit colour levels scaled to [0, 1]
    factor_names = FACTORS

    def __init__(self, path: str = "data/3dshapes.h5", subset: int | None = None, in_memory: bool = False,
                 test_fraction: float = 0.2, val_fraction: float = 0.1, batch_size: int = 64, seed: int = 0,
                 num_workers: int = 4):
        super().__init__(batch_size, num_workers, seed)
        self.save_hyperparameters()
        self.path, self.subset, self.in_memory = Path(path), subset, in_memory
        self.fractions = split_fractions(test_fraction, val_fraction)
        self.metadata: dict[str, np.ndarray] = {}  # the factors by name, [N] each (after setup)

    def _check(self) -> tuple[int, np.ndarray]:
        """Validate the file; return the number of examples and the factors ``[N, 6]``."""
        if not self.path.is_file():
            raise FileNotFoundError(
                f"3dShapes file not found: {self.path.resolve()}. Download 3dshapes.h5 from "
                "https://storage.googleapis.com/3d-shapes/3dshapes.h5 (see https://github.com/deepmind/3dshapes-dataset) "
                "and put it there, or set data.init_args.path."
            )
        with h5py.File(self.path, "r") as handle:
            images = require_dataset(handle, "images", self.path, (None, 64, 64, 3), np.uint8)
            labels = require_dataset(handle, "labels", self.path, (images.shape[0], 6))
            factors = labels[:].astype(np.float32)
        if not np.isfinite(factors).all():
            raise ValueError(f"{self.path}: 'labels' holds NaN or infinite values.")
        return len(factors), factors

    def prepare_data(self) -> None:
        self._check()

    @property
    def data_description(self) -> str:
        """The data, as errors about its metadata (covariates) name it."""
        return str(self.path)

    def build_splits(self):
        n, factors = self._check()
        generator = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(n, generator=generator).numpy()
        if self.subset is not None:
            if not 0 < self.subset <= n:
                raise ValueError(f"subset must be between 1 and {n}; got {self.subset}.")
            order = order[: self.subset]
        selected = np.sort(order)  # the file rows of the data set beneath the splits, read in order
        self.metadata = {name: factors[selected, k] for k, name in enumerate(FACTORS)}  # each [N]
        dataset = self._dataset(selected, factors)
        sizes = [int(round(f * len(order))) for f in self.fractions[:-1]]
        bounds = np.cumsum([0, *sizes, len(order) - sum(sizes)])
        return tuple(H5Split(dataset, np.searchsorted(selected, np.sort(order[a:b])).tolist())
                     for a, b in zip(bounds[:-1], bounds[1:]))

    def _dataset(self, indices: np.ndarray, factors: np.ndarray) -> H5Rows:
        cache = None
        if self.in_memory:
            with h5py.File(self.path, "r") as handle:
                cache = handle["images"][indices]  # sorted indices: one chunked read

        def item(image: np.ndarray, position: int):
            x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div(255.0)  # [3, 64, 64]
            return x, torch.from_numpy(factors[indices[position]])

        return H5Rows([self.path], "images", [(0, int(i)) for i in indices], item, cache)
