"""The tabular density-estimation benchmarks of Papamakarios et al. 2017 (MAF), used by the MLAE
paper (section 5.2, Table 1, appendix E.3): POWER, GAS, HEPMASS and MINIBOONE.

Each datamodule reads the standard files of the MAF release and applies that release's fixed
preprocessing and splits, so results compare with the published ones (the split does not depend on
``seed``). Get ``data.tar.gz`` from https://zenodo.org/record/1161203 ("Data for MAF"), extract it,
and point ``root`` at the extracted ``data/`` folder, which must hold:

    <root>/power/data.npy                          float array [N, 8]
    <root>/gas/ethylene_CO.pickle                  pandas DataFrame with Time, Meth, Eth and 16 sensor columns
    <root>/hepmass/1000_train.csv, 1000_test.csv   CSV with a header; the first column is the class label
    <root>/miniboone/data.npy                      float array [N, 43]

Batches are ``(x,)`` with ``x: [b, D]`` float32, standardised; D is 6, 8, 21 and 43.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import TensorDataset

from .base import SplitDataModule

__all__ = ["JitteredDataset", "TabularDataModule", "PowerDataModule", "GasDataModule", "HepmassDataModule", "MinibooneDataModule"]

SOURCE = "https://zenodo.org/record/1161203 (data.tar.gz, the preprocessed data of Papamakarios et al. 2017)"
Splits = tuple[np.ndarray, np.ndarray, np.ndarray]


def _tail_splits(data: np.ndarray) -> Splits:
    """MAF's splits: the last 10 % is the test set, the last 10 % of the rest the validation set."""
    n_test = int(0.1 * len(data))
    rest, test = data[:-n_test], data[-n_test:]
    n_val = int(0.1 * len(rest))
    return rest[:-n_val], rest[-n_val:], test


def _standardised_tail_splits(data: np.ndarray) -> Splits:
    """:func:`_tail_splits`, standardised by the training + validation statistics (POWER, MINIBOONE)."""
    splits = _tail_splits(data)
    reference = np.vstack(splits[:2])
    mean, std = reference.mean(axis=0), reference.std(axis=0)
    return tuple((part - mean) / std for part in splits)


class TabularDataModule(SplitDataModule):
    """Base class: subclasses name their ``files`` (relative to ``root``), ``data_shape`` and
    :meth:`load` (the MAF preprocessing, returning train/validation/test arrays).

    Args:
        root: the extracted ``data/`` folder of the MAF release.
        train_noise: standard deviation of isotropic Gaussian noise added to each training example
            each time it is drawn (0.01 in the MLAE paper, appendix E.3); held-out data stay clean.
        batch_size, seed, num_workers: as usual (``seed`` orders the training batches only).
    """

    files: tuple[str, ...]

    def __init__(self, root: str = "data/maf", train_noise: float = 0.0, batch_size: int = 512, seed: int = 0,
                 num_workers: int = 0):
        super().__init__(batch_size, num_workers, seed)
        if train_noise < 0:
            raise ValueError(f"train_noise must be a non-negative standard deviation; got {train_noise}.")
        self.save_hyperparameters()
        self.root, self.train_noise = Path(root), train_noise

    def load(self) -> Splits:
        raise NotImplementedError

    def _check_files(self) -> None:
        missing = [name for name in self.files if not (self.root / name).is_file()]
        if missing:
            where = ", ".join(str((self.root / name).resolve()) for name in missing)
            raise FileNotFoundError(
                f"{type(self).__name__}: missing {where}. Download {SOURCE}, extract it and set "
                f"data.init_args.root to the extracted data/ folder (it holds {', '.join(self.files)})."
            )

    def _format_error(self, what: str) -> ValueError:
        return ValueError(f"{type(self).__name__}: {what} in {self.root.resolve()}; expected the standard MAF files "
                          f"from {SOURCE}.")

    def _load_array(self, name: str, columns: int) -> np.ndarray:
        data = np.load(self.root / name)
        if data.ndim != 2 or data.shape[1] != columns:
            raise self._format_error(f"{name} has shape {data.shape}, not [N, {columns}]")
        return data

    def prepare_data(self) -> None:
        self._check_files()

    def build_splits(self):
        self._check_files()
        splits = self.load()
        for name, part in zip(("train", "validation", "test"), splits):
            if part.ndim != 2 or part.shape[1] != self.data_shape[0] or len(part) == 0:
                raise self._format_error(f"the {name} split has shape {part.shape} after preprocessing, "
                                         f"not [N > 0, {self.data_shape[0]}]")
            if not np.isfinite(part).all():
                raise self._format_error(f"the {name} split holds NaN or infinite values")
        train, val, test = (torch.from_numpy(np.ascontiguousarray(part, dtype=np.float32)) for part in splits)
        return JitteredDataset(train, self.train_noise), TensorDataset(val), TensorDataset(test)


class JitteredDataset(TensorDataset):
    """A one-tensor dataset whose items get fresh isotropic Gaussian noise of std ``noise``."""

    def __init__(self, data: torch.Tensor, noise: float):
        super().__init__(data)
        self.noise = noise

    def __getitem__(self, index):
        (x,) = super().__getitem__(index)
        return (x + self.noise * torch.randn_like(x),) if self.noise else (x,)


class PowerDataModule(TabularDataModule):
    """UCI household electric power consumption (D = 6). MAF's preprocessing: shuffle with
    ``RandomState(42)``, drop the global-intensity and reactive-power columns, add uniform noise
    (0.001 to the active power, 0.01 to the voltage, 1 to the sub-meterings, none to the time),
    split, standardise by the training + validation statistics."""

    files = ("power/data.npy",)
    data_shape = (6,)

    def load(self):
        data = self._load_array(self.files[0], 8)
        rng = np.random.RandomState(42)
        rng.shuffle(data)
        data = np.delete(data, [1, 3], axis=1)  # [N, 6]: active power, voltage, 3 sub-meterings, time
        n = len(data)
        noise = np.hstack([0.001 * rng.rand(n, 1), 0.01 * rng.rand(n, 1), rng.rand(n, 3), np.zeros((n, 1))])
        return _standardised_tail_splits(data + noise)


class GasDataModule(TabularDataModule):
    """UCI gas sensor array under dynamic gas mixtures, ethylene + CO (D = 8). MAF's preprocessing:
    drop Time, Meth and Eth, repeatedly drop the first column correlated above 0.98 with another,
    standardise by the whole data set (pandas' unbiased std), split."""

    files = ("gas/ethylene_CO.pickle",)
    data_shape = (8,)

    def load(self):
        frame = pd.read_pickle(self.root / self.files[0])
        if not isinstance(frame, pd.DataFrame) or not {"Time", "Meth", "Eth"} <= set(frame.columns):
            raise self._format_error("gas/ethylene_CO.pickle is not a DataFrame with Time, Meth and Eth columns")
        frame = frame.drop(columns=["Meth", "Eth", "Time"])
        while True:
            correlated = (frame.corr() > 0.98).sum(axis=1).to_numpy()  # each column counts itself once
            if not (correlated > 1).any():
                break
            frame = frame.drop(columns=frame.columns[np.flatnonzero(correlated > 1)[0]])
        frame = (frame - frame.mean()) / frame.std()
        return _tail_splits(frame.to_numpy())


class HepmassDataModule(TabularDataModule):
    """UCI HEPMASS, signal events only (D = 21). MAF's preprocessing: keep the rows whose label (first
    column) is 1 and drop the label (and the test file's extra last column), standardise by the
    training statistics (pandas' unbiased std), drop the features whose smallest value occurs more
    than 5 times (discrete ones), take the last 10 % of the training rows for validation."""

    files = ("hepmass/1000_train.csv", "hepmass/1000_test.csv")
    data_shape = (21,)

    def load(self):
        train, test = (pd.read_csv(self.root / name, index_col=False) for name in self.files)
        if test.shape[1] != train.shape[1] + 1:
            raise self._format_error(f"hepmass/1000_test.csv has {test.shape[1]} columns; expected the training "
                                     f"file's {train.shape[1]} plus one")
        train = train[train.iloc[:, 0] == 1].drop(columns=train.columns[0])
        test = test[test.iloc[:, 0] == 1].drop(columns=[test.columns[0], test.columns[-1]])
        mean, std = train.mean(), train.std()
        train, test = ((train - mean) / std).to_numpy(), ((test.to_numpy() - mean.to_numpy()) / std.to_numpy())
        keep = [i for i, column in enumerate(train.T) if Counter(column)[column.min()] <= 5]
        train, test = train[:, keep], test[:, keep]
        n_val = int(0.1 * len(train))
        return train[:-n_val], train[-n_val:], test


class MinibooneDataModule(TabularDataModule):
    """MiniBooNE particle identification (D = 43). MAF's preprocessing: split, standardise by the
    training + validation statistics."""

    files = ("miniboone/data.npy",)
    data_shape = (43,)

    def load(self):
        return _standardised_tail_splits(self._load_array(self.files[0], 43))
