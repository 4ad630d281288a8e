"""WAV files + syllable segments -> spectrogram HDF5 files for :class:`VocalizationsDataModule`,
following the Autoencoded Vocal Analysis recipe (Goffinet, Brudner, Mooney & Pearson 2021, eLife
10:e67855) without AVA itself (it calls SciPy's removed ``interp2d``).

For each syllable (a row ``file,onset,offset`` of the segments CSV, times in seconds): the STFT of its
recording, read as floats in [-1, 1] whatever the WAV's sample format (int16, int32 and float files of the
same sound give the same spectrogram), log-magnitude ``log(|STFT| + eps)``, interpolated
(``RegularGridInterpolator``) onto ``num_freq_bins`` frequencies between ``min_freq`` and ``max_freq``
(linearly or mel spaced) and ``num_time_bins`` times spanning the syllable (with ``time_stretch``, a
duration d is shown as sqrt(d * max_dur), so short syllables are stretched, centred in a window of
``max_dur``), then ``(value - spec_min_val) / (spec_max_val - spec_min_val)`` clipped to [0, 1]. Pixels
outside the recording or above its Nyquist frequency are 0.

``spec_min_val`` and ``spec_max_val`` (natural-log magnitudes) default to percentiles of the log
spectrograms of a sample of the data set's syllables (``calibration_percentiles``: the median maps to 0,
so the background is dark, and the 99.5th percentile to 1); the values used are written to
``preprocess_config.yaml`` beside the output, reusable with ``--config`` for another data set that must be
scaled the same way.

Each recording gives ``<out_dir>/<recording path with / as __>.h5`` with ``specs`` (N, F, T) float32,
``onsets``, ``offsets`` (s), ``audio_filenames``, ``duration`` (s), ``mean_freq`` (the spectral centroid
of the scaled syllable, Hz), every further column of the segments CSV (numbers as floats, anything else
as UTF-8 strings), and as attributes the spectrogram parameters and ``fs``, the recording's sample rate (Hz; with
them :func:`lvm.numerics.spectrograms.spectrogram_to_audio` turns the images back into sound; files written before
``fs`` was recorded cannot be inverted without it). ``preprocess_summary.json`` counts the
syllables written and skipped (with the reason for each skipped row). The output appears at once at the
end of a successful run (files are written to a hidden folder and moved), so a failed run leaves none.

Sliding windows (the "shotgun" mode, ``--windows.length L --windows.hop H``, :func:`preprocess_windows`): no
segmentation; windows of L seconds every H seconds over every recording under ``audio_dir`` (or over the regions of
``--segments``), each a syllable of duration L to the recipe above (same parameters, same size; L <= ``max_dur``), with
``sequence`` (the recording without its suffix), ``time`` (the window's start, s), ``onsets``/``offsets`` and, with
``--labels`` (a table ``file,onset,offset,label``, e.g. imported annotations), the ``label`` each window overlaps most;
the files' attribute ``window_length`` lets a checkpoint refuse windows of another length. Recordings are read in
blocks, so an hour at 44.1 kHz takes about 18 MB (benchmarks/shotgun_preprocess.py).

Usage: ``python -m lvm.datamodules.vocalizations.preprocess --audio_dir wavs --segments segments.csv
--out_dir data/vocalizations [--params.num_freq_bins 64 --params.num_time_bins 64 --params.max_freq 8000
...]`` or ``--config preprocess.yaml`` holding the same keys (jsonargparse); sliding windows: ``... --audio_dir wavs
--out_dir data/windows --windows.length 0.2 --windows.hop 0.05 [--segments regions.csv] [--labels annotated.csv]``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import soundfile
import yaml
from rich.progress import track
from scipy.interpolate import RegularGridInterpolator
from scipy.signal import stft

from .audio import RecordingBlocks, read_recording
from .frequencies import frequency_axis
from .segment import _audio_files
from .windows import SlidingWindows, overlap_labels, sequence_id, window_starts

__all__ = ["SpectrogramParams", "SlidingWindows", "log_spectrogram", "stft_span", "syllable_spectrogram", "calibrate",
           "preprocess", "preprocess_windows", "main"]

EPSILON = 1e-12
RESERVED = ("specs", "onsets", "offsets", "audio_filenames", "sequence", "time", "duration", "mean_freq")
BLOCK_SECONDS = 10.0  # audio read at once in the shotgun mode
BATCH = 256  # window spectrograms held in memory before they are written
BLANK, SATURATED = 1e-6, 0.99  # a spectrogram whose maximum is below BLANK is blank; mean above SATURATED, saturated


@dataclass
class SpectrogramParams:
    """The AVA parameters (defaults: AVA's zebra-finch settings, with a calibrated intensity scale).

    Args:
        nperseg, noverlap: STFT window length and overlap in samples.
        min_freq, max_freq: the frequency band kept (Hz).
        num_freq_bins, num_time_bins: the spectrogram's size (rows x columns; 128 x 128, or e.g. 64 x 64
            for small models and CPUs).
        mel: mel-spaced instead of linearly spaced frequencies.
        time_stretch: show a syllable of duration d over sqrt(d * max_dur).
        max_dur: the longest syllable (s); the time window of every spectrogram. Longer syllables are
            skipped and counted.
        spec_min_val, spec_max_val: natural-log magnitudes (of samples in [-1, 1]) mapped to 0 and 1;
            ``None``: calibrated from the data (``calibration_percentiles``).
        calibration_percentiles: the percentiles of the log-magnitude pixels of a sample of syllables that
            become ``spec_min_val`` and ``spec_max_val``.
        calibration_syllables: how many syllables (drawn evenly over the data set, seeded) calibrate.
    """

    nperseg: int = 512
    noverlap: int = 256
    min_freq: float = 400.0
    max_freq: float = 10_000.0
    num_freq_bins: int = 128
    num_time_bins: int = 128
    mel: bool = True
    time_stretch: bool = True
    max_dur: float = 0.2
    spec_min_val: float | None = None
    spec_max_val: float | None = None
    calibration_percentiles: tuple[float, float] = (50.0, 99.5)
    calibration_syllables: int = 500

    def __post_init__(self):
        if not 0 <= self.min_freq < self.max_freq:
            raise ValueError(f"Need 0 <= min_freq < max_freq; got {self.min_freq} and {self.max_freq}.")
        if not 0 <= self.noverlap < self.nperseg:
            raise ValueError(f"Need 0 <= noverlap < nperseg; got {self.noverlap} and {self.nperseg}.")
        if min(self.num_freq_bins, self.num_time_bins) < 2 or self.max_dur <= 0:
            raise ValueError("num_freq_bins and num_time_bins must be at least 2 and max_dur positive.")
        if (self.spec_min_val is None) != (self.spec_max_val is None):
            raise ValueError("Give both spec_min_val and spec_max_val, or neither (calibrated from the data).")
        if self.spec_min_val is not None and self.spec_max_val <= self.spec_min_val:
            raise ValueError(f"spec_max_val must exceed spec_min_val; got {self.spec_max_val} <= {self.spec_min_val}.")
        low, high = self.calibration_percentiles
        if not 0 <= low < high <= 100:
            raise ValueError(f"calibration_percentiles must satisfy 0 <= low < high <= 100; got {low}, {high}.")

    @property
    def calibrated(self) -> bool:
        return self.spec_min_val is not None

    def frequencies(self) -> np.ndarray:
        """The target frequency axis (Hz), ``[num_freq_bins]``, increasing."""
        return frequency_axis(self.min_freq, self.max_freq, self.num_freq_bins, self.mel)


def _times(onset: float, offset: float, params: SpectrogramParams) -> np.ndarray:
    """The ``[num_time_bins]`` times (s) of a syllable's spectrogram columns."""
    duration = min(offset - onset, params.max_dur)
    shown = np.sqrt(duration * params.max_dur) if params.time_stretch else duration
    margin = 0.5 * (params.max_dur - shown)
    return np.linspace(onset - margin * duration / shown, offset + margin * duration / shown, params.num_time_bins)


def stft_span(onset: float, offset: float, rate: float, length: int, params: SpectrogramParams) -> tuple[int, int]:
    """The samples ``[start, stop)`` of a recording of ``length`` samples that a syllable's spectrogram reads."""
    times, pad = _times(onset, offset, params), params.nperseg / rate
    return max(0, int((times[0] - pad) * rate)), min(length, int(np.ceil((times[-1] + pad) * rate)))


def log_spectrogram(audio: np.ndarray, rate: float, onset: float, offset: float, params: SpectrogramParams,
                    first: int = 0, length: int | None = None) -> np.ndarray:
    """The ``[num_freq_bins, num_time_bins]`` natural-log STFT magnitude of one syllable (rows: increasing
    frequency), NaN outside the recording and above its Nyquist frequency. ``audio`` holds floats in [-1, 1]: the
    whole recording, or its samples from ``first`` on (at least those of :func:`stft_span`) of a recording of
    ``length`` samples, which give the same spectrogram."""
    length = first + len(audio) if length is None else length
    times = _times(onset, offset, params)
    start, stop = stft_span(onset, offset, rate, length, params)
    if start < first or stop > first + len(audio):
        raise ValueError(f"samples {start}-{stop} are needed, but only {first}-{first + len(audio)} were given.")
    f, t, z = stft(audio[start - first:stop - first], fs=rate, nperseg=params.nperseg, noverlap=params.noverlap)
    log_magnitude = np.log(np.abs(z) + EPSILON)  # [frequencies, frames]
    interpolate = RegularGridInterpolator((f, t + start / rate), log_magnitude, bounds_error=False, fill_value=np.nan)
    grid_f, grid_t = np.meshgrid(params.frequencies(), times, indexing="ij")
    spec = interpolate(np.stack([grid_f, grid_t], axis=-1))  # [F, T]
    spec[:, (times < 0) | (times > length / rate)] = np.nan
    return spec


def syllable_spectrogram(audio: np.ndarray, rate: float, onset: float, offset: float,
                         params: SpectrogramParams, first: int = 0, length: int | None = None) -> np.ndarray:
    """The ``[num_freq_bins, num_time_bins]`` spectrogram in [0, 1] of one syllable (rows: increasing
    frequency), on the calibrated scale of ``params``; ``first`` and ``length`` as for :func:`log_spectrogram`."""
    if not params.calibrated:
        raise ValueError("syllable_spectrogram needs spec_min_val and spec_max_val; calibrate(...) finds them.")
    spec = (log_spectrogram(audio, rate, onset, offset, params, first, length) - params.spec_min_val) / (
        params.spec_max_val - params.spec_min_val)
    return np.clip(np.nan_to_num(spec, nan=0.0), 0.0, 1.0)


def _mean_frequency(spec: np.ndarray, frequencies: np.ndarray) -> float:
    energy = spec.sum(axis=1)
    return float((energy * frequencies).sum() / energy.sum()) if energy.sum() > 0 else float("nan")


def _read_segments(segments: str) -> pd.DataFrame:
    path = Path(segments)
    if not path.is_file():
        raise FileNotFoundError(f"Segments table not found: {path.resolve()}. Write one with `python -m lvm.datamodules.vocalizations.segment`.")
    table = pd.read_csv(path, float_precision="round_trip")  # times as written, to the last bit
    missing = {"file", "onset", "offset"} - set(table.columns)
    if missing:
        raise ValueError(f"{segments}: missing columns {sorted(missing)}; expected file,onset,offset (seconds) "
                         "and optionally further columns (species, individual, ...).")
    clash = sorted(set(table.columns) & set(RESERVED))
    if clash:
        raise ValueError(f"{segments}: columns {clash} would overwrite the features the preprocessing computes; rename them.")
    for column in ("onset", "offset"):
        values = pd.to_numeric(table[column], errors="coerce")
        if values.isna().any():
            row = int(np.flatnonzero(values.isna())[0])
            raise ValueError(f"{segments}, data row {row + 1}: {column} {table[column].iloc[row]!r} is not a number of seconds.")
        table[column] = values.astype(float)
    table["file"] = table["file"].astype(str)
    return table


class _Recordings:
    """Reads each recording once, as mono floats in [-1, 1]; errors name the file."""

    def __init__(self, audio_dir: str, segments: str, params: SpectrogramParams):
        self.audio_dir, self.segments, self.params = Path(audio_dir), segments, params

    def read(self, name: str) -> tuple[np.ndarray, float]:
        path = self.audio_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"{self.segments} lists {name}, but {path.resolve()} does not exist.")
        audio, rate = read_recording(path)
        if not np.any(audio):
            raise ValueError(f"{path} is silent (every sample is 0); remove its rows from {self.segments}.")
        if self.params.max_freq > rate / 2:
            warnings.warn(f"{path}: max_freq {self.params.max_freq:g} Hz exceeds the Nyquist frequency {rate / 2:g} Hz "
                          "of this recording; the rows above it are 0. Lower params.max_freq.", stacklevel=2)
        return audio, rate


def _skip_reason(onset: float, offset: float, length: float, max_dur: float) -> str | None:
    if offset <= onset:
        return "offset not after onset"
    if offset - onset > max_dur * (1 + 1e-9):
        return f"longer than max_dur={max_dur:g} s"
    if onset >= length or offset <= 0:
        return "outside the recording"
    return None


def calibrate(table: pd.DataFrame, recordings: _Recordings, params: SpectrogramParams, seed: int = 0) -> SpectrogramParams:
    """``params`` with ``spec_min_val``/``spec_max_val`` set to the ``calibration_percentiles`` of the log
    spectrograms of up to ``calibration_syllables`` syllables of ``table`` (spread evenly, seeded)."""
    chosen = table.sample(n=min(len(table), params.calibration_syllables), random_state=seed)
    pixels = []
    for name, rows in chosen.groupby("file"):
        audio, rate = recordings.read(name)
        for onset, offset in zip(rows.onset, rows.offset):
            if _skip_reason(onset, offset, len(audio) / rate, params.max_dur) is None:
                spec = log_spectrogram(audio, rate, onset, offset, params)
                pixels.append(spec[np.isfinite(spec)])
    return _calibrated(pixels, params, "No syllable of the segments table lies inside its recording with a duration "
                       f"in (0, max_dur={params.max_dur:g}] s; nothing to calibrate on. Check the onsets/offsets or "
                       "raise max_dur.")


def _calibrated(pixels: list[np.ndarray], params: SpectrogramParams, none: str) -> SpectrogramParams:
    """``params`` with the scale set to the ``calibration_percentiles`` of the log-magnitude ``pixels`` (``none``:
    the error when there are none)."""
    pixels = np.concatenate(pixels) if pixels else np.empty(0)
    if len(pixels) == 0:
        raise ValueError(none)
    low, high = np.percentile(pixels, params.calibration_percentiles)
    if high - low < 1e-6:
        raise ValueError(f"The syllables' log spectrograms are constant ({low:.3g}); are the recordings silent in the band "
                         f"{params.min_freq:g}-{params.max_freq:g} Hz? Check the segments and the frequency band.")
    return dataclasses.replace(params, spec_min_val=float(low), spec_max_val=float(high))


def _column(values: pd.Series) -> np.ndarray:
    """A segments-table column as an HDF5-ready array: floats for numbers, UTF-8 strings otherwise."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.to_numpy(dtype=np.float64)
    return np.array(values.fillna("").astype(str).tolist(), dtype=h5py.string_dtype())


def _write_attributes(handle: h5py.File, params: SpectrogramParams, rate: float) -> None:
    for key, value in dataclasses.asdict(params).items():
        handle.attrs[key] = value
    handle.attrs["fs"] = float(rate)


def _write_recording(target: Path, name: str, rows: pd.DataFrame, specs: np.ndarray, mean_freq: np.ndarray,
                     extra: list[str], params: SpectrogramParams, rate: float) -> None:
    with h5py.File(target, "w") as handle:
        handle["specs"] = specs
        handle["onsets"] = rows.onset.to_numpy()
        handle["offsets"] = rows.offset.to_numpy()
        handle["audio_filenames"] = np.array([name] * len(rows), dtype=h5py.string_dtype())
        handle["sequence"] = np.array([sequence_id(name)] * len(rows), dtype=h5py.string_dtype())
        handle["time"] = rows.onset.to_numpy()
        handle["duration"] = (rows.offset - rows.onset).to_numpy()
        handle["mean_freq"] = mean_freq
        for column in extra:
            handle[column] = _column(rows[column])
        _write_attributes(handle, params, rate)


def _output_file(name: str) -> str:
    """The HDF5 file of a recording: its sequence id with ``/`` as ``__``."""
    return sequence_id(name).replace("/", "__") + ".h5"


def _stale_outputs(out: Path, overwrite: bool) -> list[Path]:
    """The HDF5 files of an earlier run in ``out`` (replaced with ``overwrite``, else an error)."""
    stale = sorted([*out.glob("*.h5"), *out.glob("*.hdf5")]) if out.is_dir() else []
    if stale and not overwrite:
        raise FileExistsError(f"{out.resolve()} already holds {len(stale)} HDF5 files (e.g. {stale[0].name}); the data "
                              "module would mix them with the new ones. Choose an empty out_dir or pass --overwrite true.")
    return stale


def _publish(partial: Path, out: Path, stale: list[Path], summary: dict, config: dict) -> list[Path]:
    """Write the summary and config into ``partial``, then replace ``stale`` with its files; the HDF5 paths."""
    (partial / "preprocess_summary.json").write_text(json.dumps(summary, indent=1))
    config["params"]["calibration_percentiles"] = list(config["params"]["calibration_percentiles"])
    (partial / "preprocess_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    for path in stale:
        path.unlink()
    written = []
    for path in sorted(partial.iterdir()):
        path.replace(out / path.name)
        if path.suffix == ".h5":
            written.append(out / path.name)
    return written


def preprocess(audio_dir: str, segments: str | None = None, out_dir: str = "data/vocalizations",
               params: SpectrogramParams = SpectrogramParams(), overwrite: bool = False, seed: int = 0,
               windows: SlidingWindows | None = None, labels: str | None = None,
               label_column: str = "label") -> list[Path]:
    """Write one HDF5 file of syllable spectrograms per recording listed in the ``segments`` CSV (columns
    ``file,onset,offset`` with ``file`` relative to ``audio_dir``, plus any metadata columns), with
    ``preprocess_config.yaml`` (the parameters used, calibrated values included) and
    ``preprocess_summary.json``. Syllables longer than ``max_dur``, with offset <= onset or outside their
    recording are skipped and counted. Returns the written HDF5 paths.

    With ``windows`` (``--windows.length 0.2 --windows.hop 0.05``), the shotgun mode: windows of that length and hop
    slide over every recording under ``audio_dir`` (``.wav``/``.flac``, recursively) or over the regions of the
    ``segments`` table, and each is a syllable of that duration to the spectrogram (:func:`preprocess_windows`).

    Args:
        overwrite: replace the HDF5 files of an earlier run in ``out_dir`` (otherwise an error).
        seed: the calibration sample's seed.
        windows: the window length and hop (s); ``None``: syllables.
        labels: with ``windows``, a table ``file,onset,offset,<label_column>`` of annotated intervals (e.g. written
            by ``python -m lvm.datamodules.vocalizations.segment --annotations ...``): each window gets the label of
            the interval it overlaps most, else ``""``.
        label_column: the column of ``labels`` that names the intervals.
    """
    if windows is not None:
        return preprocess_windows(audio_dir, out_dir, windows, segments, params, labels, label_column, overwrite, seed)
    if segments is None:
        raise ValueError("Give --segments TABLE (syllables: file,onset,offset), or --windows.length and "
                         "--windows.hop for sliding windows over whole recordings.")
    if labels is not None:
        raise ValueError("--labels names the windows' annotations; syllables take their labels from the segments "
                         "table's columns.")
    table = _read_segments(segments)
    out = Path(out_dir)
    stale = _stale_outputs(out, overwrite)
    recordings = _Recordings(audio_dir, segments, params)
    if not params.calibrated:
        params = calibrate(table, recordings, params, seed)
    extra = [c for c in table.columns if c not in ("file", "onset", "offset")]
    out.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=out))
    frequencies = params.frequencies()
    skipped, counts, names = [], {"blank": 0, "saturated": 0, "nan_mean_freq": 0, "written": 0}, {}
    try:
        for name in track(sorted(table.file.unique()), description="Spectrograms"):
            audio, rate = recordings.read(name)
            rows = table[table.file == name].sort_values("onset")
            keep = []
            for onset, offset in zip(rows.onset, rows.offset):
                reason = _skip_reason(onset, offset, len(audio) / rate, params.max_dur)
                keep.append(reason is None)
                if reason is not None:
                    skipped.append({"file": name, "onset": onset, "offset": offset, "reason": reason})
            rows = rows[keep]
            if rows.empty:
                continue
            specs = []
            for onset, offset in zip(rows.onset, rows.offset):
                try:
                    specs.append(syllable_spectrogram(audio, rate, onset, offset, params))
                except Exception as error:
                    raise RuntimeError(f"{name}, syllable {onset:.4f}-{offset:.4f} s: {error}") from error
            specs = np.stack(specs).astype(np.float32)  # [N, F, T]
            mean_freq = np.array([_mean_frequency(spec, frequencies) for spec in specs])
            _count(counts, specs, mean_freq)
            file_name = _output_file(name)
            if file_name in names:
                raise ValueError(f"{name} and {names[file_name]} would both be written to {file_name}; rename one.")
            names[file_name] = name
            _write_recording(partial / file_name, name, rows, specs, mean_freq, extra, params, rate)
        _check_outputs(counts, skipped, params)
        summary = {"syllables": len(table), **counts, "skipped": len(skipped),
                   "skipped_by_reason": pd.Series([s["reason"] for s in skipped], dtype=object).value_counts().to_dict(),
                   "skipped_rows": skipped, "spec_min_val": params.spec_min_val, "spec_max_val": params.spec_max_val}
        config = {"audio_dir": str(audio_dir), "segments": str(segments), "params": dataclasses.asdict(params)}
        written = _publish(partial, out, stale, summary, config)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    print(f"Wrote {counts['written']} spectrograms ({params.num_freq_bins}x{params.num_time_bins}) from {len(written)} "
          f"recordings to {out}; skipped {len(skipped)} ({summary['skipped_by_reason'] or 'none'}); intensity scale "
          f"log-magnitude {params.spec_min_val:.3f} -> 0, {params.spec_max_val:.3f} -> 1 (preprocess_config.yaml).")
    return written


def _count(counts: dict, specs: np.ndarray, mean_freq: np.ndarray) -> None:
    """Add a batch of spectrograms ``[n, F, T]`` to the counts of written, blank, saturated and NaN-mean-frequency ones."""
    counts["written"] += len(specs)
    counts["blank"] += int((specs.max(axis=(1, 2)) < BLANK).sum())
    counts["saturated"] += int((specs.mean(axis=(1, 2)) > SATURATED).sum())
    counts["nan_mean_freq"] += int(np.isnan(mean_freq).sum())


# ----- sliding windows ("shotgun") -------------------------------------------------------------------------------

@dataclass
class _Recording:
    name: str
    rate: float
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.rate


def _window_recordings(audio_dir: str, names: list[str] | None, windows: SlidingWindows, where: str,
                       params: SpectrogramParams) -> list[_Recording]:
    """The recordings to slide over (``names``, else every audio file under ``audio_dir``), their rates and lengths
    read from the headers; a ``ValueError`` for two recordings of one sequence id (naming both, and their rates when
    they differ) and for a recording shorter than a window (naming it, its duration and the window)."""
    root = Path(audio_dir)
    if names is None:
        names = [path.relative_to(root).as_posix() for path in _audio_files(root)]
    recordings, ids = [], {}
    for name in sorted(names):
        path = root / name
        if not path.is_file():
            raise FileNotFoundError(f"{where} lists {name}, but {path.resolve()} does not exist.")
        try:
            info = soundfile.info(str(path))
        except (soundfile.SoundFileError, RuntimeError) as error:
            raise ValueError(f"{path}: cannot be read as audio ({error}); convert it to WAV or FLAC or move it out of "
                             "the audio folder.") from None
        recording = _Recording(name, float(info.samplerate), int(info.frames))
        other = ids.setdefault(sequence_id(name), recording)
        if other is not recording:
            rates = (f" with different sample rates ({other.rate:g} Hz and {recording.rate:g} Hz)"
                     if other.rate != recording.rate else "")
            raise ValueError(f"{other.name} and {name} map to one sequence id {sequence_id(name)!r}{rates}; rename or "
                             "move one of them.")
        if recording.duration < windows.length:
            raise ValueError(f"{path}: the recording lasts {recording.duration:.4g} s, shorter than the window of "
                             f"{windows.length:g} s; shorten windows.length or leave the file out.")
        if params.max_freq > recording.rate / 2:
            warnings.warn(f"{path}: max_freq {params.max_freq:g} Hz exceeds the Nyquist frequency {recording.rate / 2:g} "
                          "Hz of this recording; the rows above it are 0. Lower params.max_freq.", stacklevel=3)
        recordings.append(recording)
    return recordings


def _window_table(recordings: list[_Recording], windows: SlidingWindows, regions: pd.DataFrame | None,
                  skipped: list[dict]) -> dict[str, np.ndarray]:
    """Each recording's window starts (s, increasing): over the whole recording, or over each of its regions (cut to
    the recording; a region shorter than a window is skipped and noted in ``skipped``)."""
    starts = {}
    for recording in recordings:
        if regions is None:
            spans = [(0.0, recording.duration)]
        else:
            rows = regions[regions.file == recording.name]
            spans = []
            for onset, offset in zip(rows.onset, rows.offset):
                start, stop = max(onset, 0.0), min(offset, recording.duration)
                if stop - start < windows.length:
                    skipped.append({"file": recording.name, "onset": onset, "offset": offset,
                                    "reason": f"shorter than the window of {windows.length:g} s"})
                else:
                    spans.append((start, stop))
        found = [window_starts(start, stop, windows.length, windows.hop) for start, stop in spans]
        starts[recording.name] = np.sort(np.concatenate(found)) if found else np.zeros(0)
    return starts


def _read_labels(labels: str, label_column: str) -> pd.DataFrame:
    path = Path(labels)
    if not path.is_file():
        raise FileNotFoundError(f"labels table not found: {path.resolve()}. Write one from annotation files with "
                                "`python -m lvm.datamodules.vocalizations.segment --annotations ...`.")
    table = pd.read_csv(path, float_precision="round_trip")
    missing = {"file", "onset", "offset", label_column} - set(table.columns)
    if missing:
        raise ValueError(f"{labels}: missing columns {sorted(missing)}; expected file,onset,offset (s) and the "
                         f"label_column {label_column!r}.")
    for column in ("onset", "offset"):
        table[column] = pd.to_numeric(table[column], errors="coerce")
        if table[column].isna().any():
            row = int(np.flatnonzero(table[column].isna())[0])
            raise ValueError(f"{labels}, data row {row + 1}: {column} is not a number of seconds.")
    return table.assign(file=table.file.astype(str), **{label_column: table[label_column].fillna("").astype(str)})


def _calibrate_windows(audio_dir: Path, starts: dict[str, np.ndarray], windows: SlidingWindows,
                       params: SpectrogramParams, seed: int) -> SpectrogramParams:
    """:func:`calibrate` on up to ``calibration_syllables`` windows drawn evenly (seeded), read a window at a time."""
    every = [(name, start) for name, values in starts.items() for start in values]
    chosen = np.random.default_rng(seed).choice(len(every), size=min(len(every), params.calibration_syllables),
                                                replace=False)
    pixels, blocks = [], None
    for index in sorted(chosen):  # by recording, then time: each recording is read forward once
        name, start = every[index]
        if blocks is None or blocks.path != audio_dir / name:
            if blocks is not None:
                blocks.close()
            blocks = RecordingBlocks(audio_dir / name, block_seconds=max(windows.length, 1.0))
        audio, first = blocks.span(*stft_span(start, start + windows.length, blocks.rate, blocks.frames, params))
        spec = log_spectrogram(audio, blocks.rate, start, start + windows.length, params, first, blocks.frames)
        pixels.append(spec[np.isfinite(spec)])
    if blocks is not None:
        blocks.close()
    return _calibrated(pixels, params, "No window to calibrate on.")


def _write_windows(target: Path, recording: _Recording, audio_dir: Path, starts: np.ndarray, windows: SlidingWindows,
                   params: SpectrogramParams, labels: np.ndarray | None, counts: dict) -> None:
    """One recording's windows: spectrograms written ``BATCH`` at a time while the recording is read in blocks
    (:class:`RecordingBlocks`), so memory does not grow with the recording's length."""
    frequencies = params.frequencies()
    with h5py.File(target, "w") as handle, RecordingBlocks(audio_dir / recording.name, BLOCK_SECONDS) as blocks:
        specs = handle.create_dataset("specs", (len(starts), params.num_freq_bins, params.num_time_bins), np.float32,
                                      chunks=(min(len(starts), 16), params.num_freq_bins, params.num_time_bins))
        mean_freq = np.zeros(len(starts))
        for begin in range(0, len(starts), BATCH):
            batch = []
            for start in starts[begin:begin + BATCH]:
                stop = start + windows.length
                audio, first = blocks.span(*stft_span(start, stop, blocks.rate, blocks.frames, params))
                batch.append(syllable_spectrogram(audio, blocks.rate, start, stop, params, first, blocks.frames))
            batch = np.stack(batch).astype(np.float32)  # [b, F, T]
            specs[begin:begin + len(batch)] = batch
            mean_freq[begin:begin + len(batch)] = [_mean_frequency(spec, frequencies) for spec in batch]
            _count(counts, batch, mean_freq[begin:begin + len(batch)])
        handle["onsets"], handle["offsets"], handle["time"] = starts, starts + windows.length, starts
        handle["audio_filenames"] = np.array([recording.name] * len(starts), dtype=h5py.string_dtype())
        handle["sequence"] = np.array([sequence_id(recording.name)] * len(starts), dtype=h5py.string_dtype())
        handle["duration"] = np.full(len(starts), windows.length)
        handle["mean_freq"] = mean_freq
        if labels is not None:
            handle["label"] = np.array(labels.tolist(), dtype=h5py.string_dtype())
        _write_attributes(handle, params, recording.rate)
        handle.attrs["window_length"], handle.attrs["window_hop"] = windows.length, windows.hop


def preprocess_windows(audio_dir: str, out_dir: str, windows: SlidingWindows, regions: str | None = None,
                       params: SpectrogramParams = SpectrogramParams(), labels: str | None = None,
                       label_column: str = "label", overwrite: bool = False, seed: int = 0) -> list[Path]:
    """The shotgun mode of :func:`preprocess`: one HDF5 file per recording of the spectrograms of windows of
    ``windows.length`` every ``windows.hop`` seconds (over the whole recording, or over the ``regions`` table's
    ``file,onset,offset`` rows), each made as a syllable of that duration is (:func:`syllable_spectrogram`: same
    parameters, same size; ``windows.length`` at most ``max_dur``). Per window: ``onsets``/``offsets`` (its start
    and end, s), ``time`` (its start), ``duration``, ``audio_filenames`` and ``sequence`` (the recording's name
    without its suffix), ``mean_freq``, and with ``labels`` the ``label`` of the annotated interval it overlaps most
    (else ``""``); as attributes the spectrogram parameters, ``fs``, ``window_length`` and ``window_hop``.
    Recordings are read in blocks of ``BLOCK_SECONDS`` and spectrograms written ``BATCH`` at a time, so memory does
    not grow with a recording's length. Errors (one line, nothing written): a window longer than a recording or than
    ``max_dur``, two recordings of one sequence id."""
    if windows.length > params.max_dur * (1 + 1e-9):
        raise ValueError(f"windows.length {windows.length:g} s exceeds params.max_dur {params.max_dur:g} s, the time "
                         "span of every spectrogram; raise --params.max_dur to at least the window.")
    regions_table = _read_segments(regions) if regions is not None else None
    where = regions if regions is not None else audio_dir
    recordings = _window_recordings(audio_dir, None if regions_table is None else sorted(regions_table.file.unique()),
                                    windows, where, params)
    annotations = _read_labels(labels, label_column) if labels is not None else None
    out = Path(out_dir)
    stale = _stale_outputs(out, overwrite)
    skipped = []
    starts = _window_table(recordings, windows, regions_table, skipped)
    total = sum(len(values) for values in starts.values())
    if total == 0:
        raise ValueError(f"No region of {regions} holds a window of {windows.length:g} s; shorten windows.length.")
    if not params.calibrated:
        params = _calibrate_windows(Path(audio_dir), starts, windows, params, seed)
    out.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=out))
    counts = {"blank": 0, "saturated": 0, "nan_mean_freq": 0, "written": 0}
    try:
        for recording in track(recordings, description="Windows"):
            if not len(starts[recording.name]):
                continue
            window_labels = None
            if annotations is not None:
                rows = annotations[annotations.file == recording.name]
                window_labels = overlap_labels(starts[recording.name], windows.length, rows.onset.to_numpy(),
                                               rows.offset.to_numpy(), rows[label_column].to_numpy())
            _write_windows(partial / _output_file(recording.name), recording, Path(audio_dir), starts[recording.name],
                           windows, params, window_labels, counts)
        _check_outputs(counts, skipped, params)
        summary = {"windows": total, **counts, "skipped_regions": len(skipped), "skipped_rows": skipped,
                   "window_length": windows.length, "window_hop": windows.hop,
                   "spec_min_val": params.spec_min_val, "spec_max_val": params.spec_max_val}
        config = {"audio_dir": str(audio_dir), "segments": regions, "windows": dataclasses.asdict(windows),
                  "labels": labels, "label_column": label_column, "params": dataclasses.asdict(params)}
        written = _publish(partial, out, stale, summary, config)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    print(f"Wrote {counts['written']} windows of {windows.length:g} s every {windows.hop:g} s "
          f"({params.num_freq_bins}x{params.num_time_bins}) from {len(written)} recordings to {out}; intensity scale "
          f"log-magnitude {params.spec_min_val:.3f} -> 0, {params.spec_max_val:.3f} -> 1 (preprocess_config.yaml).")
    return written


def _check_outputs(counts: dict, skipped: list[dict], params: SpectrogramParams) -> None:
    """No output that would train a model on nothing: an error when every spectrogram is blank or
    saturated (or none was written), a warning with counts when some are."""
    if counts["written"] == 0:
        reasons = pd.Series([s["reason"] for s in skipped], dtype=object).value_counts().to_dict()
        raise ValueError(f"Every syllable was skipped ({reasons}); check the segments table and max_dur={params.max_dur:g} s.")
    scale = f"spec_min_val={params.spec_min_val:.3f}, spec_max_val={params.spec_max_val:.3f}"
    if counts["blank"] + counts["saturated"] == counts["written"]:
        raise ValueError(f"All {counts['written']} spectrograms are blank (all 0: {counts['blank']}) or saturated "
                         f"(mostly 1: {counts['saturated']}) with {scale}; leave both unset to calibrate them from the data, "
                         "or lower spec_min_val (blank) / raise spec_max_val (saturated).")
    if counts["blank"] or counts["saturated"] or counts["nan_mean_freq"]:
        warnings.warn(f"Of {counts['written']} spectrograms, {counts['blank']} are blank (all 0), {counts['saturated']} "
                      f"saturated (mean > {SATURATED}) and {counts['nan_mean_freq']} have no mean frequency (NaN), with "
                      f"{scale}. Check those syllables' segments, the frequency band or the scale.", stacklevel=2)


def main(args: list[str] | None = None) -> list[Path]:
    from jsonargparse import CLI

    return CLI(preprocess, args=args, as_positional=False)


if __name__ == "__main__":
    main()
