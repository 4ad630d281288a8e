"""A scientist's own data in one datamodule: an array, a table, an AnnData file or a folder of images
(:mod:`lvm.datamodules.sources` lists the formats), with optional per-row metadata.

``python train.py --config configs/qlvm_counts.yaml --data.init_args.path counts.npy --data.init_args.metadata meta.csv``

* **Shape**: known as soon as the datamodule exists (``data_shape``, from the file's header), so a config states it
  once: the CLI gives it to a decoder whose ``data_shape`` is left out.
* **Metadata**: the format's own (a table's other columns, ``obs`` of an AnnData file, image paths, 1-D arrays beside
  the data in ``.npz``/HDF5) and an optional table (``metadata``: ``.csv``/``.tsv``/``.parquet``) joined by row order
  or by ``id_column`` (a column of both tables; AnnData's ``obs_names``; an image's relative path). Every field is on
  ``metadata`` and arrives in ``lvm.tools.embed``'s export; a conditional model names fields as its covariates
  (``model.covariates``).
* **Labels and splits**: ``label_key`` (a field: numbers as values, text as categories) colours the plots;
  ``split_key`` (a field of ``train``/``val``/``test``) fixes the splits, else ``group_key`` keeps each group (animal,
  session, donor) in one split (stratified by a categorical ``label_key``: each label spread over the splits as evenly
  as its groups allow, with a warning where that fails), else ``test_fraction``/``val_fraction`` of the rows drawn by ``seed``.
* **Sequences**: rows that are frames or windows of recordings name their recording and time with ``sequence_key`` and
  ``time_key`` (metadata fields); they are copied to the fields ``sequence`` (text) and ``time`` (numbers, in
  ``time_unit``, seconds by default), which the per-frame export and the trajectory views read.
* **Transform** (``none``, ``standardize`` per feature, ``log1p``, ``minmax`` per feature to [0, 1]): fitted on the
  training split only, saved in checkpoints (the datamodule's state) and applied again by every tool that reads
  the run's data or new data (:meth:`ArrayDataModule.transform_array`).
* **Checks before a run writes anything** (``prepare_data``): the file, the key, numeric feature columns, NaN and
  infinite values (how many, and the first one's place), the metadata table's rows, and, for the model's likelihood
  (:meth:`ArrayDataModule.check_support`), non-negative integer counts or values in [0, 1].

Batches are ``(x [b, *data_shape], label [b])``; rows are read a batch at a time (a memory-mapped ``.npy`` larger
than the memory trains).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from .base import (SplitDataModule, categorical, encode_labels, grouped_split, metadata_field, seeded_split,
                   split_fractions)
from .sources import TABLE_SUFFIXES, Source, metadata_array, open_source, read_table

__all__ = ["ArrayDataModule", "FeatureTransform", "TRANSFORMS"]

TRANSFORMS = ("none", "standardize", "log1p", "minmax")
SPLIT_NAMES = {"train": 0, "training": 0, "val": 1, "valid": 1, "validation": 1, "test": 2}
CHUNK_BYTES = 64 * 2**20  # rows read at once when scanning or fitting: at most this many bytes of float32


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _chunks(rows: np.ndarray, source: Source):
    """``rows`` in pieces of at most ``CHUNK_BYTES`` of float32 each."""
    step = max(1, CHUNK_BYTES // (4 * max(1, int(np.prod(source.shape)))))
    for start in range(0, len(rows), step):
        yield rows[start:start + step]


class FeatureTransform:
    """``none``, ``standardize`` ((x - mean) / std per feature), ``log1p`` or ``minmax`` ((x - min) / (max - min) per
    feature): fitted on training rows, applied to NumPy batches, inverted for decoded values. A feature with no
    spread keeps scale 1."""

    def __init__(self, kind: str = "none"):
        if kind not in TRANSFORMS:
            raise ValueError(f"transform must be one of {list(TRANSFORMS)}; got {kind!r}.")
        self.kind, self.offset, self.scale = kind, None, None

    @property
    def fitted(self) -> bool:
        return self.kind in ("none", "log1p") or self.offset is not None

    def fit(self, source: Source, rows: np.ndarray) -> None:
        if self.kind not in ("standardize", "minmax"):
            return
        total, squares = np.zeros(source.shape), np.zeros(source.shape)
        low, high = np.full(source.shape, np.inf), np.full(source.shape, -np.inf)
        for chunk in _chunks(np.sort(rows), source):
            values = source.read(chunk).astype(np.float64)  # [c, *shape]
            total += values.sum(0)
            squares += np.square(values).sum(0)
            low, high = np.minimum(low, values.min(0)), np.maximum(high, values.max(0))
        if self.kind == "standardize":
            mean = total / len(rows)
            offset, spread = mean, np.sqrt(np.maximum(squares / len(rows) - np.square(mean), 0.0))
        else:
            offset, spread = low, high - low
        self.offset = offset.astype(np.float32)
        self.scale = np.where(spread > 1e-12, spread, 1.0).astype(np.float32)

    def apply(self, x: np.ndarray) -> np.ndarray:
        if self.kind == "log1p":
            return np.log1p(x)
        if self.kind == "none":
            return x
        return (x - self.offset) / self.scale

    def tensor(self, x: np.ndarray) -> torch.Tensor:
        """Raw values as the model's input: transformed, float32, contiguous."""
        return torch.from_numpy(np.ascontiguousarray(self.apply(x), dtype=np.float32))

    def inverse(self, x: np.ndarray) -> np.ndarray:
        """Values in the data's own units from transformed ones (for ``log1p``: ``expm1``, which maps a decoded mean
        of ``log1p(x)`` to the data's scale but is not the mean of ``x``)."""
        if self.kind == "log1p":
            return np.expm1(x)
        if self.kind == "none":
            return x
        return x * self.scale + self.offset

    def log_abs_det_jacobian(self, x: np.ndarray) -> np.ndarray:
        """``log |det d t(x) / dx|`` per example ``[n]`` for raw ``x [n, ...]``: a density of the transformed values
        plus this is the density of the raw ones (change of variables), so likelihoods compare across transforms."""
        n = len(x)
        if self.kind == "none":
            return np.zeros(n)
        if self.kind == "log1p":
            return -np.log1p(x.reshape(n, -1).astype(np.float64)).sum(1)  # d log(1 + x) / dx = 1 / (1 + x)
        return np.full(n, -np.log(self.scale.astype(np.float64)).sum())

    def state_dict(self) -> dict:
        """Tensors (a checkpoint loads with ``weights_only``), ``None`` for a transform without fitted values."""
        as_tensor = lambda values: None if values is None else torch.from_numpy(values)  # noqa: E731
        return {"kind": self.kind, "offset": as_tensor(self.offset), "scale": as_tensor(self.scale)}

    def load_state_dict(self, state: dict) -> None:
        as_array = lambda values: None if values is None else np.asarray(values, dtype=np.float32)  # noqa: E731
        self.kind, self.offset, self.scale = state["kind"], as_array(state["offset"]), as_array(state["scale"])


class ArrayRows(Dataset):
    """Every row of a :class:`Source` as ``(x, label)``, transformed; the datamodule's loaders read a batch at once
    (``fetch_rows``, through :class:`lvm.datamodules.base.TensorBatches`)."""

    def __init__(self, source: Source, labels: torch.Tensor, transform: FeatureTransform):
        self.source, self.labels, self.transform = source, labels, transform

    def __len__(self) -> int:
        return self.source.n

    def _x(self, rows) -> torch.Tensor:
        return self.transform.tensor(self.source.read(rows))

    def __getitem__(self, index: int):
        return self._x([index])[0], self.labels[index]

    def fetch_rows(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x [b, *shape], label [b])`` of the rows ``rows [b]``, read at once."""
        return self._x(rows.numpy()), self.labels[rows]


class ArrayDataModule(SplitDataModule):
    """Args:
        path: the data: ``.npy``, ``.npz``, ``.csv``/``.tsv``/``.parquet``, ``.h5``/``.hdf5``, ``.h5ad`` or a folder
            of images.
        key: the array of a ``.npz``, the dataset of an HDF5 file, the layer of an ``.h5ad`` (default ``X``).
        features: a table's feature columns: a list of names, a prefix (``"gene_"``), or ``None`` for every numeric
            column; the other columns become metadata.
        metadata: an optional table (``.csv``/``.tsv``/``.parquet``) of per-row metadata.
        id_column: join ``metadata`` by this column (the data's ids: a table's column of that name, AnnData's
            ``obs_names``, images' relative paths) instead of by row order.
        label_key: the metadata field used as the label (plots colour by it); ``None``: the row index.
        group_key: the metadata field whose values never straddle two splits (an animal, a session, a donor).
        split_key: a metadata field of ``train``/``val``/``test`` that fixes the splits (overrides the fractions).
        sequence_key: the metadata field naming each row's sequence (recording, trial, session), copied to
            ``sequence`` as text.
        time_key: the metadata field of each row's time within its sequence (numbers), copied to ``time``.
        time_unit: the unit of ``time_key`` (default seconds, ``"s"``).
        transform: ``none``, ``standardize``, ``log1p`` or ``minmax`` (fitted on the training split).
        image_size: ``[height, width]`` images are resized to (default: the first image's size).
        channels: 1 (grey) or 3 (RGB) for images (default: as the first image).
        test_fraction, val_fraction, batch_size, seed, num_workers: as usual.
    """

    def __init__(self, path: str, key: str | None = None, features: list[str] | str | None = None,
                 metadata: str | None = None, id_column: str | None = None, label_key: str | None = None,
                 group_key: str | None = None, split_key: str | None = None, sequence_key: str | None = None,
                 time_key: str | None = None, time_unit: str = "s", transform: str = "none",
                 image_size: list[int] | None = None, channels: int | None = None, test_fraction: float = 0.2,
                 val_fraction: float = 0.1, batch_size: int = 128, seed: int = 0, num_workers: int = 0):
        super().__init__(batch_size, num_workers, seed)
        self.save_hyperparameters()
        self.path, self.key, self.features = Path(path), key, features
        self.metadata_path = Path(metadata) if metadata else None
        self.id_column, self.label_key, self.group_key, self.split_key = id_column, label_key, group_key, split_key
        self.sequence_key, self.time_key, self.time_unit = sequence_key, time_key, time_unit
        self.image_size, self.channels = image_size, channels
        self.fractions = split_fractions(test_fraction, val_fraction)
        self.transform = FeatureTransform(transform)
        self.metadata: dict[str, np.ndarray] = {}
        self.label_names: list[str] | None = None
        self._source: Source | None = None
        self._summary: dict | None = None
        self._kept_layout: tuple[tuple[int, ...], list[str] | None] | None = None  # from a checkpoint's state

    # ----- the data --------------------------------------------------------------------------

    @property
    def source(self) -> Source:
        if self._source is None:
            self._source = open_source(self.path, self.key, self.features, self.id_column, self.image_size,
                                       self.channels)
        return self._source

    @property
    def data_shape(self) -> tuple[int, ...]:
        """One example's shape, from the file's header (a table: ``(number of feature columns,)``)."""
        return self.source.shape

    def _joined_metadata(self) -> dict[str, np.ndarray]:
        source = self.source
        fields = dict(source.metadata)
        if self.metadata_path is None:
            if self.id_column is not None and source.ids is None and self.path.suffix.lower() not in TABLE_SUFFIXES:
                raise ValueError(f"id_column {self.id_column!r} joins a metadata table by the data's row ids, which "
                                 f"{self.path.name} has none of; leave id_column out to join by row order.")
            return fields
        if self.metadata_path.suffix.lower() not in TABLE_SUFFIXES:
            raise ValueError(f"metadata {self.metadata_path}: a table is read from {', '.join(TABLE_SUFFIXES)}.")
        if not self.metadata_path.is_file():
            raise FileNotFoundError(f"metadata {self.metadata_path}: no such file.")
        table = read_table(self.metadata_path)
        if self.id_column is None:
            if len(table) != source.n:
                raise ValueError(f"metadata {self.metadata_path} has {len(table)} rows but {self.path} has {source.n} "
                                 "examples; give one row per example in the same order, or join by an id column "
                                 "(data.init_args.id_column).")
        else:
            if self.id_column not in table.columns:
                raise KeyError(f"metadata {self.metadata_path} has no column {self.id_column!r} (id_column); its columns "
                               f"are {list(map(str, table.columns))[:20]}.")
            if source.ids is None:
                raise ValueError(f"id_column {self.id_column!r}: {self.path} has no row ids to join by (tables: a column "
                                 "of that name; AnnData: obs_names; images: relative paths); join by row order instead.")
            keys = table[self.id_column].astype(str)
            if keys.duplicated().any():
                raise ValueError(f"metadata {self.metadata_path}: column {self.id_column!r} repeats the id "
                                 f"{keys[keys.duplicated()].iloc[0]!r}; ids must be unique.")
            position = dict(zip(keys, range(len(keys))))
            ids = np.asarray(source.ids).astype(str)
            missing = [i for i in ids if i not in position]
            if missing:
                raise ValueError(f"metadata {self.metadata_path}: {len(missing)} of the {len(ids)} ids of {self.path} "
                                 f"are not in column {self.id_column!r} (e.g. {missing[0]!r}).")
            table = table.iloc[[position[i] for i in ids]]
        fields.update({str(c): metadata_array(table[c]) for c in table.columns})
        return fields

    @property
    def data_description(self) -> str:
        """The data and their metadata table, as errors about the metadata (labels, groups, covariates) name them."""
        return f"{self.path}" + (f" with metadata {self.metadata_path}" if self.metadata_path else "")

    def _field(self, key: str, argument: str) -> np.ndarray:
        return metadata_field(self.metadata, key, argument, self.data_description,
                              "" if self.metadata else " (give a metadata table: data.init_args.metadata)")

    def covariate_columns(self, keys: list[str]) -> dict[str, np.ndarray]:
        """The metadata fields ``{key: [N]}`` of every row (the format's own, e.g. AnnData's ``obs``, and the
        metadata table's columns), or a ``KeyError`` naming the field, the files and the fields there are."""
        self.setup("fit")
        return {key: self._field(key, "model.covariates key") for key in keys}

    def _scan(self) -> dict:
        """One pass over every value: NaN/infinite, negative and non-integer counts with the first one's place, the
        minimum and the maximum."""
        source, summary = self.source, {"min": np.inf, "max": -np.inf}
        for name in ("nonfinite", "negative", "noninteger"):
            summary[name], summary[f"first_{name}"] = 0, None
        for chunk in _chunks(np.arange(source.n), source):
            values = source.read(chunk).reshape(len(chunk), -1)  # [c, D]
            finite = np.isfinite(values)
            for name, bad in (("nonfinite", ~finite), ("negative", values < 0),
                              ("noninteger", finite & (values != np.floor(values)))):
                count = int(bad.sum())
                if count and summary[f"first_{name}"] is None:
                    row, column = np.argwhere(bad)[0]
                    summary[f"first_{name}"] = source.where(int(chunk[row]), int(column))
                summary[name] += count
            if finite.any():
                summary["min"] = min(summary["min"], float(values[finite].min()))
                summary["max"] = max(summary["max"], float(values[finite].max()))
        return summary

    def prepare_data(self) -> None:
        """Open and check the data and the metadata; raise a one-line error naming the file and what to do."""
        if self._summary is not None:
            return
        self.metadata = self._joined_metadata()
        for key, argument in ((self.label_key, "label_key"), (self.group_key, "group_key"), (self.split_key, "split_key")):
            if key is not None:
                self._field(key, argument)
        if self.split_key is not None:
            self._split_codes()
        self._add_sequences()
        summary = self._scan()
        if summary["nonfinite"]:
            raise ValueError(f"{self.path}: {summary['nonfinite']} NaN or infinite value(s), the first at "
                             f"{summary['first_nonfinite']}; remove or impute them before training.")
        if self.transform.kind == "log1p" and summary["min"] <= -1:
            raise ValueError(f"{self.path}: transform log1p needs values above -1; the smallest is {summary['min']:g}.")
        self._summary = summary

    def _add_sequences(self) -> None:
        """Copy the ``sequence_key`` and ``time_key`` fields to ``sequence`` (text) and ``time`` (float); a one-line
        error for a field that is not there, would replace another field of that name, or (time) is not numeric or
        has missing values."""
        for key, argument, name in ((self.sequence_key, "sequence_key", "sequence"), (self.time_key, "time_key", "time")):
            if key is None:
                continue
            values = self._field(key, argument)
            if key != name and name in self.metadata:
                raise ValueError(f"{argument} {key!r} would replace the metadata field {name!r} of "
                                 f"{self.data_description}; rename that column or give {argument}: {name}.")
            if name == "sequence":
                self.metadata[name] = values.astype(str)
                continue
            if values.dtype.kind not in "biuf":
                example = next((v for v in values if not _is_number(v)), values[0])
                raise ValueError(f"{argument} {key!r} of {self.data_description} is not numeric (e.g. {str(example)!r}); give "
                                 f"each row's time as a number ({self.time_unit}).")
            missing = np.flatnonzero(np.isnan(values.astype(float)))
            if len(missing):
                raise ValueError(f"{argument} {key!r} of {self.data_description} has {len(missing)} missing value(s), "
                                 f"the first at row {missing[0]}; give every row a time.")
            self.metadata[name] = values.astype(float)

    def check_support(self, support: str) -> None:
        """Raise a ``ValueError`` if the data, as transformed, lie outside what the likelihood models: ``counts``
        (non-negative integers: Poisson, negative binomial) or ``unit_interval`` ([0, 1]: Bernoulli)."""
        self.prepare_data()
        summary, kind = self._summary, self.transform.kind
        if support == "counts":
            if kind != "none":
                raise ValueError(f"A count likelihood models the raw counts; set data.init_args.transform: none "
                                 f"(it is {kind}).")
            for name, what in (("negative", "negative"), ("noninteger", "non-integer")):
                if summary[name]:
                    raise ValueError(f"{self.path}: {summary[name]} {what} value(s), the first at "
                                     f"{summary[f'first_{name}']}, but the likelihood models counts (0, 1, 2, ...); "
                                     "use a Gaussian likelihood for real values.")
        elif support == "unit_interval" and kind != "minmax" and (summary["min"] < 0 or summary["max"] > 1):
            values = summary["min"] if kind == "none" else f"after {kind}, {summary['min']:g}"
            raise ValueError(f"{self.path}: values from {values} to {summary['max']:g}, but the likelihood models values "
                             "in [0, 1]; set data.init_args.transform: minmax, or use a Gaussian likelihood.")

    # ----- splits ----------------------------------------------------------------------------

    def _split_codes(self) -> np.ndarray:
        values = np.char.lower(self._field(self.split_key, "split_key").astype(str))
        unknown = sorted(set(values) - set(SPLIT_NAMES))
        if unknown:
            raise ValueError(f"split_key {self.split_key!r} has value(s) {unknown[:5]}; use train, val or test.")
        codes = np.asarray([SPLIT_NAMES[v] for v in values])
        if not np.any(codes == 0):
            raise ValueError(f"split_key {self.split_key!r} marks no row as train.")
        return codes

    def build_splits(self):
        self.prepare_data()
        source = self.source
        labels, self.label_names = encode_labels(
            None if self.label_key is None else self._field(self.label_key, "label_key"), source.n)
        dataset = ArrayRows(source, labels, self.transform)
        if self.split_key is not None:
            codes = self._split_codes()
            parts = [Subset(dataset, np.flatnonzero(codes == i).tolist()) for i in range(3)]
        elif self.group_key is not None:
            strata = categorical(None if self.label_key is None else self._field(self.label_key, "label_key"))
            parts = grouped_split(dataset, self._field(self.group_key, "group_key"), self.fractions, self.seed, strata,
                                  self.label_key)
        else:
            parts = seeded_split(dataset, self.fractions, self.seed)
        if not self.transform.fitted:  # a checkpoint's transform (load_state_dict) is kept
            self.transform.fit(source, np.asarray(parts[0].indices))
        return tuple(parts)

    # ----- new data and checkpoints ----------------------------------------------------------

    def transform_array(self, x) -> torch.Tensor:
        """New data (an array ``[n, *data_shape]``, a table with the feature columns, or a sparse matrix) as the
        model's input: checked and transformed as the training data were. Raises a ``ValueError`` saying what is
        wrong."""
        return self.transform.tensor(self.raw_array(x))

    def raw_array(self, x) -> np.ndarray:
        """New data as a float32 array ``[n, *data_shape]`` in the training data's column order, checked (shape,
        finite values); a ``ValueError`` says what is wrong. Uses the shape and columns kept with the transform, so a
        checkpoint's datamodule needs no access to the training file."""
        if not self.transform.fitted:
            self.setup("fit")
        shape, columns = self._layout()
        if hasattr(x, "columns") and columns is not None:
            missing = [c for c in columns if c not in x.columns]
            if missing:
                raise ValueError(f"the table lacks the feature column(s) {missing[:5]} the model was trained on.")
            x = x[columns]
        x = np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float32)
        if x.shape[1:] != shape:
            raise ValueError(f"the data have shape {list(x.shape)}; the model was trained on examples of shape "
                             f"{list(shape)} (pass [n, {', '.join(map(str, shape))}]).")
        if not np.isfinite(x).all():
            raise ValueError(f"the data hold {int((~np.isfinite(x)).sum())} NaN or infinite value(s).")
        return x

    def _layout(self) -> tuple[tuple[int, ...], list[str] | None]:
        """One example's shape and a table's feature columns: kept from the checkpoint, or read from the data."""
        if self._kept_layout is not None:
            return self._kept_layout
        return tuple(self.data_shape), getattr(self.source, "columns", None)

    def inverse_transform_array(self, x: torch.Tensor) -> np.ndarray:
        """Model-space values (decoded means, samples) in the data's own units."""
        return self.transform.inverse(x.detach().cpu().numpy())

    def state_dict(self) -> dict:
        shape, columns = self._layout()
        return {**super().state_dict(), "transform": self.transform.state_dict(), "data_shape": list(shape),
                "columns": columns}

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        if "transform" in state_dict:
            self.transform.load_state_dict(state_dict["transform"])
        if "data_shape" in state_dict:
            self._kept_layout = tuple(state_dict["data_shape"]), state_dict.get("columns")
