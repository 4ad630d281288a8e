"""Spectrograms of segmented vocalizations (QLVM paper, appendix B.1.2: zebra finch and gerbil
syllables processed as by Autoencoded Vocal Analysis; Fig. 5E colours the embedding by a syllable
feature).

On-disk layout (what ``python -m lvm.datamodules.vocalizations.preprocess`` writes, and AVA's layout): a
directory of HDF5 files (``*.h5`` / ``*.hdf5``), each holding

* ``specs``: float array (N, F, T), spectrograms (rows: increasing frequency) scaled to [0, 1], the
  same size in every file (128 x 128 in AVA; any size from the preprocessing);
* per-syllable metadata, 1-D arrays of length N: ``onsets`` and ``offsets`` (seconds),
  ``audio_filenames``, and any features or annotations (e.g. ``mean_freq``, ``duration``, ``species``,
  ``individual``; numbers or strings);
* optionally, as attributes, the spectrogram parameters (``min_freq``, ``max_freq``, ``mel``,
  ``max_dur``, ``time_stretch``, ...), from which plots label their axes in kHz and ms, and with the recording's
  sample rate ``fs`` the spectrograms turn back into sound (:meth:`VocalizationsDataModule.inversion_params`,
  :func:`lvm.numerics.spectrograms.spectrogram_to_audio`);

or a single ``.npz`` with the same keys.

Sequences: in the files the preprocessing writes, every example has ``sequence`` (its recording, without the audio
suffix) and ``time`` (its start, s, from the recording's start; ``time_unit`` is ``"s"``). Files of sliding windows (the preprocessing's ``--windows.length``) record the
window's length (attribute ``window_length``; :attr:`VocalizationsDataModule.window_length`, ``None`` for
syllables); the datamodule's state in a checkpoint keeps it, and a checkpoint meeting data of another window length
(or syllables) is refused in one line (:meth:`VocalizationsDataModule.load_state_dict`). Spectrograms outside [0, 1] are min-max scaled over the whole
set (Bernoulli-compatible). Batches are ``(spec [1, F, T], label)`` with the label the metadata field
``label_key`` (numbers as floats; strings as category codes, whose names are ``label_names``) or the
syllable index; all metadata is on ``metadata`` (dict of arrays in the dataset's order), and a conditional model
names its fields as covariates (``model.covariates: [{key: audio_filenames, kind: discrete}, {key: duration, kind:
continuous}]``; :meth:`VocalizationsDataModule.covariate_columns`).

Splits: ``test_fraction`` and ``val_fraction`` of the syllables, drawn by ``seed``; with ``group_key``
(e.g. ``audio_filenames``, ``individual``) whole groups go to one split each, so no recording or animal
is in two of them (the fractions then hold approximately); with a categorical ``label_key`` (species, call type) the
groups are assigned so that each label is spread over the splits as evenly as its groups allow, with a warning for
a label that cannot reach every split or the training split, and the examples per label and split are reported.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import TensorDataset

from lvm.numerics.spectrograms import INVERSION_KEYS, inversion_params
from lvm.plotting.axes import ImageAxes

from ..base import (SplitDataModule, categorical, encode_labels, grouped_split, metadata_field, npz_array,
                    seeded_split, split_fractions)
from ..hdf5 import H5Rows, require_dataset
from .frequencies import frequency_axis

__all__ = ["VocalizationsDataModule", "spectrogram_axes"]

CHUNK = 1024  # spectrograms read at once when scanning a file
PREPROCESS = "python -m lvm.datamodules.vocalizations.preprocess"


def _plain(value):
    """An HDF5 attribute as a plain Python value (numbers, booleans, strings, lists)."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value.tolist() if isinstance(value, np.ndarray | np.generic) else value


def spectrogram_axes(attrs, shape: tuple[int, int]) -> ImageAxes:
    """The axes of ``[F, T]`` spectrograms written with the parameters ``attrs`` (HDF5 attributes of the
    preprocessing): frequency (kHz) per row, increasing upward, and time (ms) per column; without the
    parameters, bin indices."""
    rows, columns = shape
    if "min_freq" not in attrs:
        return ImageAxes(np.arange(rows), np.arange(columns), "frequency bin", "time bin")
    frequencies = frequency_axis(float(attrs["min_freq"]), float(attrs["max_freq"]), rows, bool(attrs.get("mel", False)))
    stretched = bool(attrs.get("time_stretch", False))
    return ImageAxes(frequencies / 1000.0, np.linspace(0.0, 1000.0 * float(attrs["max_dur"]), columns),
                     "frequency (kHz)", "time (ms, √-stretched)" if stretched else "time (ms)")


def _window_text(length: float | None) -> str:
    return "syllables" if length is None else f"{length:g} s windows"


class VocalizationsDataModule(SplitDataModule):
    """Args:
        root: the directory of HDF5 files, or one ``.npz`` file.
        label_key: the metadata field returned as the label (``None``: the syllable index).
        group_key: the metadata field whose values never straddle two splits (``None``: split by syllable).
        test_fraction, val_fraction, batch_size, seed, num_workers: as usual.
    """

    time_unit = "s"

    def __init__(self, root: str = "data/vocalizations", label_key: str | None = None, group_key: str | None = None,
                 test_fraction: float = 0.2, val_fraction: float = 0.1, batch_size: int = 64, seed: int = 0,
                 num_workers: int = 0):
        super().__init__(batch_size, num_workers, seed)
        self.save_hyperparameters()
        self.root, self.label_key, self.group_key = Path(root), label_key, group_key
        self.fractions = split_fractions(test_fraction, val_fraction)
        self.metadata: dict[str, np.ndarray] = {}
        self.label_names: list[str] | None = None
        self.image_axes: ImageAxes | None = None
        self._file_params: list[tuple[Path, dict]] = []  # each file and its attributes
        self._example_files = np.zeros(0, dtype=np.int64)  # [N] each example's file (index into _file_params)

    @property
    def shape_hint(self) -> str:
        """How to give the spectrograms another size (the CLI adds it to a decoder-shape mismatch)."""
        return (f"preprocess the recordings again to the decoder's size (python -m lvm.datamodules.vocalizations."
                f"preprocess ... --params.num_freq_bins F --params.num_time_bins T); the files in {self.root} hold "
                f"{' x '.join(map(str, (self.data_shape or ())[1:])) or 'no'} spectrograms.")

    @property
    def data_shape(self) -> tuple[int, ...] | None:
        """``(1, F, T)`` from the first file's ``specs`` (``None`` while there is none)."""
        try:
            path = self._files()[0]
        except FileNotFoundError:
            return None
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return (1, *archive["specs"].shape[1:]) if "specs" in archive else None
        with h5py.File(path, "r") as handle:
            return (1, *handle["specs"].shape[1:]) if "specs" in handle else None

    def _files(self) -> list[Path]:
        if self.root.suffix == ".npz":
            if not self.root.is_file():
                raise FileNotFoundError(f"Vocalization file not found: {self.root.resolve()}.")
            return [self.root]
        files = sorted([*self.root.glob("*.h5"), *self.root.glob("*.hdf5")]) if self.root.is_dir() else []
        if not files:
            raise FileNotFoundError(
                f"No vocalization HDF5 files (*.h5, *.hdf5) in {self.root.resolve()}. Write them from WAV files and "
                "a table of syllable onsets with `python -m lvm.datamodules.vocalizations.preprocess`, or point "
                "data.init_args.root at AVA-style files holding 'specs' (N, F, T) and per-syllable metadata."
            )
        return files

    def prepare_data(self) -> None:
        """Check the files before anything trains: they exist and each holds a 3-D ``specs`` array of one shape (the
        HDF5 headers or the npz index only, no spectrogram is read)."""
        files, shape = self._files(), None
        for path in files:
            if path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as archive:
                    if "specs" not in archive:
                        raise KeyError(f"{path}: no array 'specs' (it has {sorted(archive.keys())}).")
                    for key in archive.files:
                        if key != "specs":
                            npz_array(archive, key, path)
                continue
            with h5py.File(path, "r") as handle:
                specs = require_dataset(handle, "specs", path, (None, *(shape or (None, None))), np.float32)
                shape = shape or specs.shape[1:]
        self.window_length  # noqa: B018 (the files' one window length, or a ValueError naming two files)

    @property
    def window_length(self) -> float | None:
        """The length (s) of the sliding windows the files hold (their ``window_length`` attribute), ``None`` for
        syllables; a ``ValueError`` for files of different lengths (HDF5 headers only)."""
        lengths = {}
        for path in self._files():
            if path.suffix == ".npz":
                continue
            with h5py.File(path, "r") as handle:
                length = handle.attrs.get("window_length")
            lengths.setdefault(None if length is None else float(length), path)
        if len(lengths) > 1:
            (a, first), (b, second) = list(lengths.items())[:2]
            raise ValueError(f"{first} holds {_window_text(a)} but {second} holds {_window_text(b)}; keep the files of "
                             f"one preprocessing in {self.root}.")
        return next(iter(lengths), None)

    def state_dict(self) -> dict:
        """What a checkpoint keeps of the data: the window length (``None``: syllables)."""
        try:
            length = self.window_length
        except FileNotFoundError:
            return super().state_dict()
        return {**super().state_dict(), "window_length": length}

    def load_state_dict(self, state_dict: dict) -> None:
        """A checkpoint's state: a ``ValueError`` naming both lengths when its data were windows of another length than
        these data's (or syllables against windows). Data that are not there are not checked."""
        super().load_state_dict(state_dict)
        if "window_length" not in state_dict:
            return
        trained = state_dict["window_length"]
        try:
            length = self.window_length
        except FileNotFoundError:
            return
        if (trained is None) != (length is None) or (trained is not None and abs(trained - length) > 1e-9):
            raise ValueError(f"The checkpoint was trained on {_window_text(trained)}, but {self.root} holds "
                             f"{_window_text(length)}; preprocess the recordings as the training data were"
                             + (f" (--windows.length {trained:g})" if trained is not None else " (syllables)")
                             + " or use a model trained on these.")

    @staticmethod
    def _read_metadata(handle, path: Path, n: int) -> dict[str, np.ndarray]:
        """The 1-D fields of an HDF5 file or npz archive, strings decoded (UTF-8)."""
        fields = {}
        for key in handle:
            if key == "specs":
                continue
            if not isinstance(handle, h5py.File):
                npz_array(handle, key, path)  # an object array says how to save it instead
            if len(handle[key].shape) != 1:
                continue
            if isinstance(handle, h5py.File) and h5py.check_string_dtype(handle[key].dtype) is not None:
                value = np.asarray(handle[key].asstr()[:], dtype=str)
            else:
                value = np.asarray(handle[key][:])
                if value.dtype.kind == "S":
                    value = np.char.decode(value, "utf-8")
            if len(value) != n:
                raise ValueError(f"{path}: metadata {key!r} has {len(value)} entries for {n} spectrograms.")
            fields[key] = value
        return fields

    def build_splits(self):
        files = self._files()
        if files[0].suffix == ".npz":
            with np.load(files[0], allow_pickle=False) as archive:
                if "specs" not in archive:
                    raise KeyError(f"{files[0]}: no array 'specs' (it has {sorted(archive.keys())}).")
                specs = archive["specs"].astype(np.float32)
                if specs.ndim != 3:
                    raise ValueError(f"{files[0]}: 'specs' has shape {specs.shape}, expected (N, F, T).")
                self.metadata = self._read_metadata(archive, files[0], len(specs))
            self.image_axes = spectrogram_axes({}, specs.shape[1:])
            self._file_params, self._example_files = [(files[0], {})], np.zeros(len(specs), dtype=np.int64)
            low, high = self._range(specs, files[0])
            dataset = TensorDataset(torch.from_numpy((specs - low) / (high - low)).unsqueeze(1), self._labels(len(specs)))
        else:
            rows, metadata, low, high, shape = [], [], np.inf, -np.inf, None
            self._file_params = []
            for index, path in enumerate(files):
                with h5py.File(path, "r") as handle:
                    specs = require_dataset(handle, "specs", path, (None, *(shape or (None, None))), np.float32)
                    if shape is None:
                        shape = specs.shape[1:]
                        self.image_axes = spectrogram_axes(dict(handle.attrs), shape)
                    lo, hi = self._range(specs, path)
                    low, high = min(low, lo), max(high, hi)
                    metadata.append(self._read_metadata(handle, path, len(specs)))
                    rows += [(index, row) for row in range(len(specs))]
                    self._file_params.append((path, {key: _plain(value) for key, value in handle.attrs.items()}))
            self._example_files = np.array([index for index, _ in rows], dtype=np.int64)
            self.metadata = {key: np.concatenate([m[key] for m in metadata]) for key in metadata[0]
                             if all(key in m for m in metadata)}
            labels = self._labels(len(rows))

            def item(spec: np.ndarray, position: int):
                x = torch.from_numpy(((spec - low) / (high - low)).astype(np.float32)).unsqueeze(0)  # [1, F, T]
                return x, labels[position]

            dataset = H5Rows(files, "specs", rows, item)
        if self.group_key is None:
            return tuple(seeded_split(dataset, self.fractions, self.seed))
        strata = categorical(None if self.label_key is None else self._field(self.label_key, "label_key"))
        return tuple(grouped_split(dataset, self._field(self.group_key, "group_key"), self.fractions, self.seed, strata,
                                   self.label_key))

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

    @property
    def data_description(self) -> str:
        """The data, as errors about its metadata (covariates) name it."""
        return str(self.root)

    def covariate_columns(self, keys: list[str]) -> dict[str, np.ndarray]:
        """The metadata fields ``{key: [N]}`` of every syllable (``duration``: ``offsets - onsets`` where the files
        have them), or a ``KeyError`` naming the field, the data's root and the fields present in every file."""
        self.setup("fit")
        columns = {key: self._field(key, "model.covariates key") for key in keys if key != "duration"}
        if "duration" in keys:  # offsets - onsets where the files have them (as durations)
            columns["duration"] = self.durations if self.durations is not None else self._field("duration",
                                                                                                 "model.covariates key")
        return {key: columns[key] for key in keys}

    def _field(self, key: str, argument: str) -> np.ndarray:
        return metadata_field(self.metadata, key, argument, self.root, " (fields present in every file)")

    def _labels(self, n: int) -> torch.Tensor:
        values = None if self.label_key is None else self._field(self.label_key, "label_key")
        labels, self.label_names = encode_labels(values, n)
        return labels

    @property
    def spectrogram_params(self) -> dict | None:
        """The preprocessing's parameters (the files' HDF5 attributes, as plain Python values) that every file
        shares; one that differs between files (``fs`` when the recordings have several sample rates) is left out
        (:meth:`inversion_params` gives each example's own). ``None`` before ``setup`` or when the files hold no
        spectrogram parameters (``.npz``, AVA's own files)."""
        if not self._file_params or "min_freq" not in self._file_params[0][1]:
            return None
        first = self._file_params[0][1]
        return {key: value for key, value in first.items()
                if all(key in params and params[key] == value for _, params in self._file_params[1:])}

    @property
    def durations(self) -> np.ndarray | None:
        """Each syllable's duration (s) in the dataset's order, ``offsets - onsets`` (what the spectrogram shows;
        ``[N]``), for :func:`lvm.numerics.spectrograms.spectrogram_to_audio`; ``None`` without onsets and offsets."""
        if "onsets" in self.metadata and "offsets" in self.metadata:
            return self.metadata["offsets"].astype(float) - self.metadata["onsets"].astype(float)
        return self.metadata["duration"].astype(float) if "duration" in self.metadata else None

    def inversion_params(self, index: int | None = None, **given) -> dict:
        """The parameters :func:`lvm.numerics.spectrograms.spectrogram_to_audio` needs, for the example ``index``
        (dataset order: its file's attributes) or, with ``None``, for an image without a file of its own (a decoded
        one: the attributes every file shares). ``given`` values fill in or replace attributes, e.g. ``fs=32000`` for
        files written before the preprocessing recorded the sample rate, or AVA's. A missing parameter is a one-line
        ``ValueError`` naming the file and the preprocessing flag that sets it; asked for only here, so such files
        still train and plot."""
        if not self._file_params:
            raise RuntimeError("Call setup() before inversion_params(): the parameters are read with the data.")
        if index is None:
            params = {**(self.spectrogram_params or {}), **given}
            files = self._file_params
        else:
            path, attributes = self._file_params[int(self._example_files[index])]
            params, files = {**attributes, **given}, [(path, attributes)]
        for key in INVERSION_KEYS:
            if key in params:
                continue
            lacking = [path for path, attributes in files if key not in attributes]
            if not lacking:  # every file has it, with different values
                values = sorted({attributes[key] for _, attributes in files})
                raise ValueError(f"The files in {self.root} differ in {key!r} ({', '.join(map(str, values))}); give "
                                 f"the value for images without a file of their own: inversion_params({key}=...).")
            setting = ("the recording's sample rate, which earlier versions of the preprocessing did not write"
                       if key == "fs" else f"set by {PREPROCESS} --params.{key}")
            raise ValueError(f"{lacking[0]} has no attribute {key!r} ({setting}), needed to turn its spectrograms into "
                             f"sound: write the files again with {PREPROCESS}, or give it: "
                             f"inversion_params(..., {key}=...).")
        return inversion_params(params, source=str(files[0][0]))
