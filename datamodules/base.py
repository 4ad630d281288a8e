"""Pieces shared by the datamodules: seeded and grouped splits, safe ``.npz`` reads and the three DataLoaders."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset
from torch.utils.data._utils.collate import default_collate

from .training_order import EpochShuffle, ResumableBatches, ResumableLoader

__all__ = ["split_fractions", "seeded_split", "grouped_split", "categorical", "metadata_field", "npz_array", "encode_labels", "SplitDataModule", "TensorBatches", "batched"]


def split_fractions(test_fraction: float, val_fraction: float) -> list[float]:
    """The train, validation and test fractions ``[1 - val - test, val, test]``, or a ``ValueError`` saying why the
    two held-out fractions do not leave a training part."""
    if min(test_fraction, val_fraction) < 0 or test_fraction + val_fraction >= 1:
        raise ValueError(f"test_fraction ({test_fraction}) and val_fraction ({val_fraction}) must be >= 0 and add up to "
                         "less than 1, leaving examples to train on.")
    return [1.0 - test_fraction - val_fraction, val_fraction, test_fraction]


def seeded_split(dataset: Dataset, fractions: list[float], seed: int) -> list[Subset]:
    """Split ``dataset`` into consecutive parts of a permutation drawn from ``seed``.
    The last part takes the remainder, so the sizes always add up to ``len(dataset)``."""
    n = len(dataset)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    sizes = [int(round(f * n)) for f in fractions[:-1]]
    sizes.append(n - sum(sizes))
    parts, start = [], 0
    for size in sizes:
        parts.append(Subset(dataset, order[start:start + size]))
        start += size
    return parts


SPLIT_NAMES = ("train", "val", "test")


def grouped_split(dataset, groups: np.ndarray, fractions: list[float], seed: int, labels: np.ndarray | None = None,
                  label_key: str = "label") -> list[Subset]:
    """Split ``dataset`` so that each value of ``groups`` (one per item) lies in one part.

    Without ``labels``: the groups, in a seeded random order, are laid end to end; a group goes to the part whose
    share of the items its midpoint falls in. With categorical ``labels`` (one per item: species, cell type), the
    split is stratified as scikit-learn's ``StratifiedGroupKFold`` is: groups, largest first (ties in a seeded
    random order), each go to the part where they bring the label counts closest to ``fraction x total`` per label
    (the smallest increase of sum_k ((count_k - target_k) / total_k)^2), so every label's examples are spread as
    evenly as its groups allow. A warning names each label with fewer groups than the splits, or with no example in
    the training part; the examples per label and split are reported (``rank_zero_info``).

    Either way, a part with a positive fraction that gets no group takes one from the part with the most groups."""
    names, codes = np.unique(groups, return_inverse=True)
    wanted = [i for i, f in enumerate(fractions) if f > 0]
    if len(names) < len(wanted):
        raise ValueError(f"group_key gives {len(names)} group(s), fewer than the {len(wanted)} splits with a positive "
                         "fraction; set the other splits' fractions to 0 or group by a finer key.")
    rng = np.random.default_rng(seed)
    part = np.empty(len(names), dtype=int)
    if labels is None:
        order = rng.permutation(len(names))
        sizes = np.bincount(codes, minlength=len(names))[order]
        midpoints = np.cumsum(sizes) - 0.5 * sizes
        part[order] = np.searchsorted(np.cumsum(fractions)[:-1] * len(groups), midpoints, side="right")
    else:
        label_names, label_codes = np.unique(labels, return_inverse=True)
        counts = np.zeros((len(names), len(label_names)))  # [groups, labels]
        np.add.at(counts, (codes, label_codes), 1.0)
        totals = counts.sum(0)  # [labels]
        targets = np.asarray(fractions)[:, None] * totals[None, :]  # [parts, labels]
        filled = np.zeros_like(targets)
        shuffled = rng.permutation(len(names))
        for g in shuffled[np.argsort(-counts[shuffled].sum(1), kind="stable")]:  # largest first
            increase = (((filled + counts[g] - targets) ** 2 - (filled - targets) ** 2) / totals**2).sum(1)  # [parts]
            increase[[i for i in range(len(fractions)) if i not in wanted]] = np.inf
            part[g] = int(np.argmin(increase))
            filled[part[g]] += counts[g]
    for empty in [i for i in wanted if not np.any(part == i)]:
        donor = np.bincount(part, minlength=len(fractions)).argmax()
        part[np.flatnonzero(part == donor)[0]] = empty
    if labels is not None:
        _report_label_spread(part[codes], labels, codes, len(fractions), len(wanted), label_key)
    return [Subset(dataset, np.flatnonzero(part[codes] == i).tolist()) for i in range(len(fractions))]


def _report_label_spread(item_part: np.ndarray, labels: np.ndarray, group_codes: np.ndarray, num_parts: int,
                         num_wanted: int, label_key: str) -> None:
    """Warn about labels the grouped split cannot spread, and report the examples of each label per split."""
    import warnings

    from lightning.pytorch.utilities import rank_zero_info

    label_names = np.unique(labels)
    few = [str(name) for name in label_names if len(np.unique(group_codes[labels == name])) < num_wanted]
    if few:
        warnings.warn(f"{label_key} {few} occur(s) in fewer groups than the {num_wanted} splits, so not in every split; "
                      "group by a finer key to spread them.", stacklevel=3)
    untrained = [str(name) for name in label_names if not np.any(item_part[labels == name] == 0)]
    if untrained:
        warnings.warn(f"{label_key} {untrained} has/have no example in the training split: the model never sees "
                      "them; group by a finer key or change the fractions.", stacklevel=3)
    rows = [f"{SPLIT_NAMES[i] if i < len(SPLIT_NAMES) else i}: " + ", ".join(
        f"{name} {int(np.sum((item_part == i) & (labels == name)))}" for name in label_names) for i in range(num_parts)]
    rank_zero_info(f"Examples per {label_key} and split: " + "; ".join(rows))


def metadata_field(metadata: dict[str, np.ndarray], key: str, argument: str, where, note: str = "") -> np.ndarray:
    """``metadata[key]``, or a ``KeyError`` naming the argument that asked for it, the data (``where``) and the fields
    there are (with ``note`` after them)."""
    if key not in metadata:
        raise KeyError(f"{argument} {key!r} is not a metadata field of {where}; choose one of "
                       f"{sorted(metadata) or 'none'}{note}.")
    return metadata[key]


def categorical(values: np.ndarray | None) -> np.ndarray | None:
    """``values`` when they name categories (text, or integers with few distinct values), else ``None``: labels a
    grouped split can stratify by."""
    if values is None:
        return None
    if values.dtype.kind in "US":
        return values
    if values.dtype.kind in "biu" and len(np.unique(values)) <= max(2, len(values) // 2):
        return values
    return None


def npz_array(archive, key: str, path: Path) -> np.ndarray:
    """``archive[key]``, or a ``ValueError`` that names the array and how to save it when it holds Python objects
    (a pandas column of strings saved as is), which numpy reads only with pickle, unsafe for files from elsewhere."""
    try:
        return archive[key]
    except ValueError as error:
        if "allow_pickle" not in str(error):
            raise
        raise ValueError(f"{path}: array {key!r} holds Python objects (e.g. a pandas column of strings saved as is), "
                         "which is not read without pickle; save it as fixed-width strings or numbers, e.g. "
                         f"np.savez(..., {key}=np.asarray(column, dtype=str)).") from None


def encode_labels(values: np.ndarray | None, n: int) -> tuple[torch.Tensor, list[str] | None]:
    """The labels of ``n`` examples from a metadata field: numbers as float32; text as category codes (int64) with
    the category names, sorted; no field (``None``): the example's index."""
    if values is None:
        return torch.arange(n), None
    if values.dtype.kind not in "biuf":
        names, codes = np.unique(values, return_inverse=True)  # categories (species, cell types) as integers
        return torch.from_numpy(codes.astype(np.int64)), names.tolist()
    return torch.from_numpy(values.astype(np.float32)), None


class _Batch(tuple):
    """A batch that a dataset assembled itself (:meth:`TensorBatches.__getitems__`): the collate step passes it on."""


def _collate(samples):
    return tuple(samples) if isinstance(samples, _Batch) else default_collate(samples)


class TensorBatches(Dataset):
    """The examples of a :class:`~torch.utils.data.TensorDataset` (or of a dataset with a ``fetch_rows(rows)``
    method), or of a chain of :class:`~torch.utils.data.Subset` s of one, fetched a batch at a time: the
    DataLoader's ``__getitems__`` path gathers each tensor once per batch (one indexing op) instead of indexing every
    example and stacking them (64 ``select`` s and a ``stack`` per tensor), a tenth of the digits' epoch. Same
    examples, same order. ``source`` is the dataset it views (the same data, for
    :meth:`lvm.estimators.summaries.EvaluationResults.matches`)."""

    def __init__(self, dataset: Dataset, codes: torch.Tensor | None = None):
        self.source = dataset
        self.indices = torch.arange(len(dataset))
        while isinstance(dataset, Subset):
            self.indices = torch.as_tensor(dataset.indices)[self.indices]
            dataset = dataset.dataset
        self.dataset = dataset
        self.codes = codes  # covariate codes [N, C] of every example of the data set beneath, appended to each batch

    def _fetch(self, rows: torch.Tensor) -> tuple:
        if hasattr(self.dataset, "fetch_rows"):
            parts = tuple(self.dataset.fetch_rows(rows))
        else:
            parts = tuple(tensor[rows] for tensor in self.dataset.tensors)
        return parts if self.codes is None else (*parts, self.codes[rows])

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return tuple(part[0] for part in self._fetch(self.indices[index:index + 1]))

    def __getitems__(self, indices: list[int]) -> _Batch:
        return _Batch(self._fetch(self.indices[torch.as_tensor(indices)]))  # rows [b]


def _root(dataset: Dataset) -> Dataset:
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return dataset


def batched(dataset: Dataset, codes: torch.Tensor | None = None) -> Dataset:
    """``dataset`` as :class:`TensorBatches` when it is a plain TensorDataset or has ``fetch_rows`` (possibly inside
    Subsets), else itself; with covariate ``codes`` ``[N, C]`` (one row per example of the data set beneath) each
    batch ends with its examples' codes."""
    inner = _root(dataset)
    if type(inner) is TensorDataset or hasattr(inner, "fetch_rows"):
        return TensorBatches(dataset, codes)
    if codes is not None:
        raise TypeError(f"{type(inner).__name__} is not a TensorDataset and has no fetch_rows(rows): its batches cannot "
                        "carry covariates.")
    return dataset


def split_rows(dataset: Dataset) -> np.ndarray:
    """The rows of the data set beneath ``dataset``'s (possibly nested) ``Subset`` s that it holds, in its order."""
    if isinstance(dataset, Subset):
        return split_rows(dataset.dataset)[np.asarray(dataset.indices, dtype=np.int64)]
    return np.arange(len(dataset))


class SplitDataModule(L.LightningDataModule):
    """A datamodule whose ``setup`` fills ``train_set``, ``val_set`` and ``test_set`` once.
    Subclasses set ``data_shape`` and implement :meth:`build_splits`.

    The training order of each epoch is drawn from ``seed`` and the epoch (not from the global RNG), and the
    training loader's position in it is saved in checkpoints (:mod:`.training_order`), so a run resumed at an epoch's
    end or in its middle sees the same batches as an uninterrupted one (the global RNG, used by the objectives, is
    saved by :class:`lvm.runs.rng_state.RNGStateCheckpoint`)."""

    data_shape: tuple[int, ...]

    def __init__(self, batch_size: int, num_workers: int, seed: int):
        super().__init__()
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self._views: dict[int, tuple[Dataset, Dataset]] = {}  # id(split) -> (split, its batched view)
        self.covariate_codes: torch.Tensor | None = None  # [N, C], set by a conditional model

    # ----- covariates (lvm.covariates): the metadata fields a conditional model is given ----------------------

    def covariate_columns(self, keys: list[str]) -> dict[str, np.ndarray]:
        """The raw values ``{key: [N]}`` of metadata fields for every example of the data set beneath the splits (in
        its order), or a ``KeyError`` naming the field, the data and the fields there are. Datamodules with
        per-example ``metadata`` (a dict of arrays in that order) have it; others override this."""
        metadata = getattr(self, "metadata", None) or {}
        where = getattr(self, "data_description", None) or type(self).__name__
        return {key: metadata_field(metadata, key, "model.covariates key", where) for key in keys}

    def split_rows(self, split: str) -> np.ndarray:
        """The rows (of the data set beneath the splits) of ``split`` (train/val/test)."""
        self.setup("fit")
        return split_rows(getattr(self, f"{split}_set"))

    def set_covariate_codes(self, codes: torch.Tensor) -> None:
        """Make every loader's batches ``(x, label, codes)``: ``codes`` ``[N, C]`` has one row per example of the data
        set beneath the splits."""
        self.setup("fit")
        size = len(_root(self.train_set))
        if len(codes) != size:
            raise ValueError(f"{len(codes)} covariate rows for a data set of {size} examples.")
        self.covariate_codes = codes
        self._views.clear()

    def build_splits(self) -> tuple[Dataset, Dataset, Dataset]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if not hasattr(self, "train_set"):
            self.train_set, self.val_set, self.test_set = self.build_splits()

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        if self._views.get(id(dataset), (None,))[0] is not dataset:  # one view per split, shared by its loaders
            self._views[id(dataset)] = (dataset, batched(dataset, self.covariate_codes))
        view = self._views[id(dataset)][1]
        # the generator draws the workers' base seed, which would otherwise be a draw from the global RNG whenever an
        # iterator starts (when, depends on workers and resumes)
        options = {"num_workers": self.num_workers, "persistent_workers": self.num_workers > 0, "collate_fn": _collate,
                   "generator": torch.Generator().manual_seed(self.seed)}
        if not shuffle:
            return DataLoader(view, batch_size=self.batch_size, **options)
        batches = ResumableBatches(EpochShuffle(view, self.seed), self.batch_size, drop_last=False)
        return ResumableLoader(view, batch_sampler=batches, **options)

    def train_dataloader(self):
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self):
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self):
        return self._loader(self.test_set, shuffle=False)
