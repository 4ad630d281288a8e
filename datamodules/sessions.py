"""Recordings of several sessions whose examples have different feature counts (a different number of neurons, or
of recorded channels, per session), for one shared latent space (issue 28; :mod:`lvm.covariates`, ``kind: session``).

``python train.py --config configs/qlvm_sessions.yaml --data.init_args.paths '[day1.npy, day2.npy, day3.npy]'``

* **Files**: one per session, in any format :mod:`lvm.datamodules.sources` reads (``.npy``, ``.npz``, ``.csv``/
  ``.parquet`` tables of numbers, ``.h5ad``, HDF5), rows = examples (time bins, trials, cells), columns = that
  session's features; sessions are named by ``names`` (default: the files' stems).
* **Layout**: every session's features get their own block of columns of one table ``[N, D_1 + ... + D_S]``, zeros
  elsewhere; :meth:`SessionsDataModule.feature_blocks` names the blocks. The model's decoder outputs every block (its
  last layer: one output head per session on a shared trunk) and each example is scored on its own block only
  (``model.covariates: [{key: session, kind: session}]``), so the held-out log-likelihood is per session and overall
  (``test/log_likelihood/session=<name>``).
* **Splits**: each session is split on its own with the fractions (seeded), so every session is in training.
* **Labels**: the session (colours the plots), as category codes named by ``label_names``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset, TensorDataset

from .base import SplitDataModule, split_fractions
from .sources import open_source

__all__ = ["SessionsDataModule"]


class SessionsDataModule(SplitDataModule):
    """Args:
        paths: one data file per session.
        names: the sessions' names (default: the files' stems; they must differ).
        key: the array inside ``.npz``/HDF5/``.h5ad`` files, if they hold several.
        test_fraction, val_fraction, batch_size, seed, num_workers: as usual.
    """

    def __init__(self, paths: list[str], names: list[str] | None = None, key: str | None = None,
                 test_fraction: float = 0.2, val_fraction: float = 0.1, batch_size: int = 128, seed: int = 0,
                 num_workers: int = 0):
        super().__init__(batch_size, num_workers, seed)
        self.save_hyperparameters()
        self.paths = [Path(path) for path in paths]
        if not self.paths:
            raise ValueError("data.init_args.paths is empty; give one data file per session.")
        self.names = [str(name) for name in names] if names is not None else [path.stem for path in self.paths]
        if len(self.names) != len(self.paths):
            raise ValueError(f"{len(self.names)} names for {len(self.paths)} session files (data.init_args.names).")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"The sessions' names repeat: {self.names}; give data.init_args.names.")
        self.key, self.fractions = key, split_fractions(test_fraction, val_fraction)
        self.metadata: dict[str, np.ndarray] = {}
        self.label_names = self.names
        self.label_title = "session"
        self._sizes: list[int] | None = None

    @property
    def data_description(self) -> str:
        return f"the sessions {', '.join(str(path) for path in self.paths)}"

    def _sources(self):
        return [open_source(path, self.key) for path in self.paths]

    def prepare_data(self) -> None:
        """Open every file (each names itself in its errors) and read the feature counts."""
        if self._sizes is None:
            sizes = []
            for path, source in zip(self.paths, self._sources()):
                if source.n == 0:
                    raise ValueError(f"{path}: no rows; every session needs examples.")
                sizes.append(int(np.prod(source.shape)))
            self._sizes = sizes

    @property
    def data_shape(self) -> tuple[int, ...]:
        self.prepare_data()
        return (sum(self._sizes),)

    def feature_blocks(self) -> dict[str, tuple[int, int]]:
        """Each session's columns ``(start, stop)`` in the table."""
        self.prepare_data()
        ends = np.cumsum([0, *self._sizes])
        return {name: (int(ends[k]), int(ends[k + 1])) for k, name in enumerate(self.names)}

    def build_splits(self):
        self.prepare_data()
        width, blocks = sum(self._sizes), self.feature_blocks()
        tables, sessions = [], []
        for k, (name, source) in enumerate(zip(self.names, self._sources())):
            values = np.asarray(source.read(np.arange(source.n)), dtype=np.float32).reshape(source.n, -1)  # [n_s, D_s]
            bad = ~np.isfinite(values)
            if bad.any():
                row, column = np.argwhere(bad)[0]
                raise ValueError(f"{self.paths[k]}: {int(bad.sum())} NaN or infinite value(s), the first at row {row}, "
                                 f"column {column}; fill or drop them.")
            table = np.zeros((source.n, width), dtype=np.float32)
            start, stop = blocks[name]
            table[:, start:stop] = values
            tables.append(table)
            sessions.append(np.full(source.n, k))
        session = np.concatenate(sessions)
        self.metadata = {"session": np.asarray(self.names)[session],
                         "row": np.concatenate([np.arange(len(t)) for t in tables])}  # the row in its own file
        dataset = TensorDataset(torch.from_numpy(np.concatenate(tables)), torch.from_numpy(session))
        generator = np.random.default_rng(self.seed)
        parts = [[], [], []]
        for k in range(len(self.names)):  # each session split on its own: every session trains
            rows = generator.permutation(np.flatnonzero(session == k))
            sizes = [int(round(f * len(rows))) for f in self.fractions[:2]]
            cuts = np.cumsum(sizes)
            for part, chunk in zip(parts, np.split(rows, cuts)):
                part.extend(chunk.tolist())
        return tuple(Subset(dataset, sorted(part)) for part in parts)
