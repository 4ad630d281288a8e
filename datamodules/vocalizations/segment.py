"""Syllable segmentation of recordings, or import of existing annotations, into one CSV
``file,onset,offset`` (seconds; ``file`` relative to ``audio_dir``), the input of
:mod:`lvm.datamodules.vocalizations.preprocess`.

Segmentation follows the amplitude segmentation of Autoencoded Vocal Analysis (Goffinet, Brudner,
Mooney & Pearson 2021, eLife 10:e67855), written anew:

1. Each WAV/FLAC file under ``audio_dir`` (recursively) is read as float64 (``soundfile``, so int16 and
   float files share one scale) and its channels are averaged.
2. Short-time Fourier transform (Hann window of ``window_ms``, hop ``hop_ms``); the power of each frame
   summed over ``min_freq``-``max_freq`` Hz, in dB, smoothed by a Gaussian of ``smoothing_ms``: the
   *band energy* trace.
3. Reference level: in ``amplitude`` mode the file's noise floor, the ``noise_percentile``-th percentile
   of the trace; in ``contrast`` mode a local background, the larger of the running
   ``noise_percentile``-th percentiles over the ``background_window`` seconds before and after each
   frame, which follows noise whose level changes along the recording (rising without lag), so that
   calls (pulsed ones included) are found by their contrast with their surroundings.
4. A segment starts where the trace rises above reference + ``onset_threshold`` and ends where it falls
   back below reference + ``offset_threshold`` (AVA's th_2 and th_1). Segments separated by less than
   ``min_gap`` are merged (the pulses of a pulse train make one call). Segments whose peak stays below
   reference + ``peak_threshold`` (th_3), shorter than ``min_dur`` or longer than ``max_dur`` are dropped
   and counted in the summary (long ones are dropped, not split: a split point would be arbitrary, and
   the preprocessing refuses syllables longer than its own ``max_dur``, 0.2 s by default).

``--plot DIR`` draws, for each recording, its spectrogram with the segments shaded and the band energy
trace with the thresholds below it, to check and tune the parameters.

Import (``--annotations``) reads Sonic Visualiser, Raven, Audacity or plain CSV annotation files into the
same table instead (:mod:`lvm.datamodules.vocalizations.annotations`); with ``audio_dir`` given, each annotated
file is matched to the audio file of that stem found there.

Usage::

    python -m lvm.datamodules.vocalizations.segment --audio_dir wavs --out segments.csv [--plot plots] [--params.mode contrast]
        [--params.onset_threshold 8 ...]   # or --config segment.yaml holding the same keys (jsonargparse)
    python -m lvm.datamodules.vocalizations.segment --annotations '[a.selections.txt, b.selections.txt]' --annotation_format raven
        --out segments.csv [--audio_dir wavs]   # or --annotations+ FILE_OR_FOLDER, repeated
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from rich.progress import track
from scipy.fft import rfft
from scipy.ndimage import gaussian_filter1d, percentile_filter
from scipy.signal import get_window

from lvm.runs.files import write_atomically

from .annotations import COLUMNS, annotation_files, match_audio, read_annotations
from .audio import read_recording

__all__ = ["SegmentParams", "segment_audio", "segment_files", "segment", "main"]

AUDIO_SUFFIXES = (".wav", ".flac")
DROP_REASONS = ("below peak_threshold", "shorter than min_dur", "longer than max_dur")
FRAMES_PER_CHUNK = 4096  # STFT frames transformed at once, to bound memory on long recordings
PLOT_COLUMNS = 3000  # at most this many spectrogram columns in a plot
PLOT_DPI = 100


@dataclass
class SegmentParams:
    """Parameters of the amplitude segmentation (thresholds in dB above the reference level).

    Args:
        mode: ``"amplitude"``: thresholds relative to each file's noise floor; ``"contrast"``: relative to
            a running background level, for noise whose level changes along a recording and pulsed calls.
        window_ms: STFT window length (ms).
        hop_ms: STFT hop (ms), the time resolution of onsets and offsets.
        min_freq, max_freq: the frequency band (Hz) whose energy is traced; ``max_freq`` above a file's
            Nyquist frequency is lowered to it (with a warning naming the file).
        smoothing_ms: standard deviation (ms) of the Gaussian smoothing of the band energy (0: none).
        noise_percentile: the reference level is this percentile (0-100) of the band energy, over the
            whole file (amplitude mode) or over ``background_window`` (contrast mode).
        onset_threshold: a segment starts where the band energy rises this many dB above the reference.
        offset_threshold: and ends where it falls back below this many dB (<= ``onset_threshold``).
        peak_threshold: segments whose band energy never reaches this many dB above the reference are
            dropped (>= ``onset_threshold``).
        min_dur, max_dur: segments shorter or longer (s) are dropped (after merging).
        min_gap: segments separated by a gap shorter than this (s) are merged, so a pulse train is one call.
        background_window: contrast mode's background at a frame is the larger of the running percentiles
            over this many seconds before and after it; should be well above the longest call.
    """

    mode: str = "amplitude"
    window_ms: float = 8.0
    hop_ms: float = 1.0
    min_freq: float = 400.0
    max_freq: float = 10_000.0
    smoothing_ms: float = 2.0
    noise_percentile: float = 10.0
    onset_threshold: float = 10.0
    offset_threshold: float = 6.0
    peak_threshold: float = 15.0
    min_dur: float = 0.01
    max_dur: float = 0.2
    min_gap: float = 0.02
    background_window: float = 0.5

    def __post_init__(self):
        if self.mode not in ("amplitude", "contrast"):
            raise ValueError(f"mode must be 'amplitude' or 'contrast'; got {self.mode!r}.")
        if not 0 < self.hop_ms <= self.window_ms:
            raise ValueError(f"Need 0 < hop_ms <= window_ms; got hop_ms={self.hop_ms}, window_ms={self.window_ms}.")
        if not 0 <= self.min_freq < self.max_freq:
            raise ValueError(f"Need 0 <= min_freq < max_freq (Hz); got {self.min_freq} and {self.max_freq}.")
        if self.smoothing_ms < 0:
            raise ValueError(f"smoothing_ms must be >= 0; got {self.smoothing_ms}.")
        if not 0 <= self.noise_percentile <= 100:
            raise ValueError(f"noise_percentile must lie in [0, 100]; got {self.noise_percentile}.")
        if not self.offset_threshold <= self.onset_threshold <= self.peak_threshold:
            raise ValueError("Need offset_threshold <= onset_threshold <= peak_threshold (dB); got "
                             f"{self.offset_threshold}, {self.onset_threshold}, {self.peak_threshold}.")
        if not 0 <= self.min_dur < self.max_dur:
            raise ValueError(f"Need 0 <= min_dur < max_dur (s); got {self.min_dur} and {self.max_dur}.")
        if self.min_gap < 0:
            raise ValueError(f"min_gap must be >= 0 s; got {self.min_gap}.")
        if self.background_window <= 0:
            raise ValueError(f"background_window must be > 0 s; got {self.background_window}.")


@dataclass
class _Analysis:
    """One recording's band energy trace and what was found in it."""

    times: np.ndarray  # [frames] s, the frames' centres
    level: np.ndarray  # [frames] dB, smoothed band energy
    reference: np.ndarray  # [frames] dB, noise floor (constant) or running background
    segments: list[tuple[float, float]]
    dropped: Counter


def _power_chunks(audio: np.ndarray, n: int, hop: int, bins: np.ndarray):
    """Yield the STFT power ``[chunk frames, len(bins)]`` of ``audio`` (Hann window of ``n`` samples,
    frame k centred on sample k * hop), at the rfft bins ``bins``."""
    padded = np.pad(audio, (n // 2, n - n // 2))
    frames = sliding_window_view(padded, n)[::hop]  # [len(audio) // hop + 1, n], a view
    window = get_window("hann", n)
    for start in range(0, len(frames), FRAMES_PER_CHUNK):
        spectrum = rfft(frames[start:start + FRAMES_PER_CHUNK] * window, axis=1)[:, bins]
        yield spectrum.real ** 2 + spectrum.imag ** 2


def _stft_sizes(rate: float, params: SegmentParams) -> tuple[int, int]:
    """Window length and hop in samples."""
    return max(int(round(params.window_ms * rate / 1000)), 4), max(int(round(params.hop_ms * rate / 1000)), 1)


def _band(rate: float, n: int, params: SegmentParams, name: str) -> np.ndarray:
    """The rfft bins of an ``n``-sample window inside the frequency band, as a boolean mask."""
    nyquist = rate / 2
    if params.min_freq >= nyquist:
        raise ValueError(f"{name}: min_freq={params.min_freq} Hz is not below the Nyquist frequency {nyquist:g} Hz "
                         f"of its sample rate {rate:g} Hz; lower --params.min_freq.")
    max_freq = params.max_freq
    if max_freq > nyquist:
        warnings.warn(f"{name}: max_freq={max_freq:g} Hz is above the Nyquist frequency {nyquist:g} Hz; "
                      f"using {nyquist:g} Hz for this file.", stacklevel=3)
        max_freq = nyquist
    frequencies = np.fft.rfftfreq(n, 1 / rate)
    band = (frequencies >= params.min_freq) & (frequencies <= max_freq)
    if not band.any():
        raise ValueError(f"{name}: no STFT frequency bin between {params.min_freq} and {max_freq} Hz "
                         f"(bins every {rate / n:g} Hz); widen the band or lengthen --params.window_ms.")
    return band


def _analyse(audio: np.ndarray, rate: float, params: SegmentParams, name: str = "recording") -> _Analysis:
    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)  # [samples, channels] -> [samples]
    elif audio.ndim != 1:
        raise ValueError(f"{name}: audio must be [samples] or [samples, channels]; got shape {audio.shape}.")
    n, hop = _stft_sizes(rate, params)
    band = _band(rate, n, params, name)
    power = np.concatenate(list(chunk.sum(axis=1) for chunk in _power_chunks(audio, n, hop, np.flatnonzero(band))))
    times = np.arange(len(power)) * hop / rate
    positive = power > 0
    if not positive.any():  # digital silence throughout
        flat = np.full(len(power), -np.inf)
        return _Analysis(times, flat, flat, [], Counter())
    # digital silence (exact zeros, e.g. padding) is set to the quietest sound's level, so that it does not
    # drag the noise floor or the background far below the recording's actual noise
    level = 10 * np.log10(np.maximum(power, power[positive].min()))
    frames_per_second = rate / hop
    if params.smoothing_ms > 0:
        level = gaussian_filter1d(level, params.smoothing_ms / 1000 * frames_per_second, mode="nearest")
    if params.mode == "amplitude":
        reference = np.full_like(level, np.percentile(level, params.noise_percentile))
    else:
        size = int(round(params.background_window * frames_per_second))
        reference = _background(level, params.noise_percentile, size)
    segments, dropped = _find_segments(times, level - reference, params)
    return _Analysis(times, level, reference, segments, dropped)


def _background(level: np.ndarray, percentile: float, size: int) -> np.ndarray:
    """The larger of the running ``percentile``-th percentiles of ``level`` over the ``size`` frames up to
    and from each frame: a low percentile ignores the calls, and the larger of the two sides follows a rise
    of the noise level at once instead of lagging behind it by most of a window."""
    centred = percentile_filter(level, percentile, size=max(size, 1), mode="nearest")  # window centred on each frame
    frames = np.arange(len(level))
    before = centred[np.maximum(frames - size // 2, 0)]  # the window ending at each frame
    after = centred[np.minimum(frames + size // 2, len(level) - 1)]  # the window starting there
    return np.maximum(before, after)


def _find_segments(times: np.ndarray, contrast: np.ndarray, params: SegmentParams):
    """Segments of the trace ``contrast`` (dB above the reference, one value per frame at ``times``):
    ``([(onset, offset), ...], Counter of dropped segments by reason)``."""
    above = np.concatenate([[False], contrast > params.offset_threshold, [False]])
    starts = np.flatnonzero(~above[:-1] & above[1:])  # first frame of each run above offset_threshold
    ends = np.flatnonzero(above[:-1] & ~above[1:])  # one past its last frame
    onset_frames = np.flatnonzero(contrast > params.onset_threshold)
    first = np.searchsorted(onset_frames, starts)  # the first frame above onset_threshold in each run, if any
    inside = first < len(onset_frames)
    inside[inside] = onset_frames[first[inside]] < ends[inside]
    onsets, ends = onset_frames[first[inside]], ends[inside]
    if len(onsets) == 0:
        return [], Counter()
    new_call = np.concatenate([[True], times[onsets[1:]] - times[ends[:-1] - 1] >= params.min_gap])
    onsets, ends = onsets[new_call], ends[np.concatenate([new_call[1:], [True]])]  # merge across short gaps
    # the maximum from each onset up to the next is the segment's peak where it matters: frames in between
    # stay below offset_threshold <= peak_threshold
    loud = np.maximum.reduceat(contrast, onsets) >= params.peak_threshold
    durations = times[ends - 1] - times[onsets]
    reasons = np.select([~loud, durations < params.min_dur, durations > params.max_dur], DROP_REASONS, "")
    dropped = Counter(str(reason) for reason in reasons[reasons != ""])
    keep = reasons == ""
    return [(float(a), float(b)) for a, b in zip(times[onsets[keep]], times[ends[keep] - 1])], dropped


def segment_audio(audio: np.ndarray, rate: float, params: SegmentParams = SegmentParams()) -> list[tuple[float, float]]:
    """The ``(onset, offset)`` times (s) of the calls in ``audio`` (``[samples]`` or ``[samples, channels]``,
    any scale) sampled at ``rate`` Hz; empty for silence or noise alone."""
    return _analyse(audio, rate, params).segments


def _audio_files(audio_dir: Path) -> list[Path]:
    if not audio_dir.is_dir():
        raise FileNotFoundError(f"Audio folder {audio_dir.resolve()} does not exist.")
    files = sorted(p for p in audio_dir.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f"No .wav or .flac file under {audio_dir.resolve()}; point --audio_dir at the "
                                "recordings (searched recursively).")
    return files


def _segment_all(audio_dir: str, params: SegmentParams, plot: str | None = None):
    """Segment every recording: ``(table, seconds of audio, files without segments, dropped Counter)``."""
    root = Path(audio_dir)
    files = _audio_files(root)
    rows, seconds, silent, dropped = [], 0.0, [], Counter()
    for path in track(files, description="Segmenting"):
        name = path.relative_to(root).as_posix()
        audio, rate = read_recording(path)
        analysis = _analyse(audio, rate, params, name)
        rows += [(name, onset, offset) for onset, offset in analysis.segments]
        seconds += len(audio) / rate
        dropped += analysis.dropped
        if not analysis.segments:
            silent.append(name)
        if plot is not None:
            _plot(Path(plot) / f"{name}.png", audio, rate, analysis, params, name)
    if not rows:
        raise ValueError(f"No segment found in any of the {len(files)} recordings under {root} "
                         f"({_dropped_text(dropped)}). {_advice(dropped, params)} Draw them with --plot DIR to see "
                         "the band energy and thresholds.")
    table = pd.DataFrame(rows, columns=COLUMNS).sort_values(["file", "onset"], ignore_index=True)
    return table, seconds, silent, dropped


def _dropped_text(dropped: Counter) -> str:
    parts = [f"{dropped[reason]} {reason}" for reason in DROP_REASONS if dropped[reason]]
    return "dropped " + ", ".join(parts) if parts else "none dropped"


def _advice(dropped: Counter, params: SegmentParams) -> str:
    if not dropped:
        return (f"Nothing rose {params.onset_threshold} dB above the noise floor in the "
                f"{params.min_freq:g}-{params.max_freq:g} Hz band: lower --params.onset_threshold (and "
                "offset_threshold, peak_threshold) or check min_freq/max_freq.")
    reason = dropped.most_common(1)[0][0]
    return {"below peak_threshold": f"Lower --params.peak_threshold (now {params.peak_threshold} dB).",
            "shorter than min_dur": f"Lower --params.min_dur (now {params.min_dur} s) or raise --params.min_gap.",
            "longer than max_dur": f"Raise --params.max_dur (now {params.max_dur} s), raise the thresholds, or "
                                   "try --params.mode contrast."}[reason]


def segment_files(audio_dir: str, params: SegmentParams = SegmentParams()) -> pd.DataFrame:
    """Segment every ``.wav``/``.flac`` file under ``audio_dir`` (recursively): a table ``file, onset, offset``
    (``file`` relative to ``audio_dir``, times in s) sorted by file and onset. Raises ``ValueError`` naming
    an unreadable file, and when no file has any segment."""
    return _segment_all(audio_dir, params)[0]


def _plot(path: Path, audio: np.ndarray, rate: float, analysis: _Analysis, params: SegmentParams, name: str):
    """The spectrogram of ``audio`` with the segments shaded, above its band energy and thresholds."""
    from matplotlib.figure import Figure  # not pyplot: no global figure registry, nothing left open

    duration = len(audio) / rate
    width = float(np.clip(3 + 4 * duration, 8, 30))  # inches, capped for long files
    n, hop = _stft_sizes(rate, params)
    hop = max(hop, int(np.ceil(len(audio) / min(PLOT_COLUMNS, width * PLOT_DPI))))
    power = np.concatenate(list(_power_chunks(audio, n, hop, np.arange(n // 2 + 1))))  # [frames, frequencies]
    spectrogram = 10 * np.log10(power.T + 1e-20)  # [frequencies, frames] dB
    top = np.percentile(spectrogram, 99.9)
    figure = Figure(figsize=(width, 5), dpi=PLOT_DPI, layout="constrained")
    axes = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    image = axes[0].imshow(spectrogram, origin="lower", aspect="auto", cmap="magma", vmin=top - 80, vmax=top,
                           extent=(-hop / rate / 2, (power.shape[0] - 0.5) * hop / rate, 0, rate / 2000),
                           interpolation="nearest")
    figure.colorbar(image, ax=axes, label="dB", pad=0.01, aspect=30)
    axes[0].set_ylabel("frequency (kHz)")
    axes[0].set_title(f"{name}: {len(analysis.segments)} segments ({params.mode} mode)")
    axes[1].plot(analysis.times, analysis.level, lw=0.6, color="black", label="band energy")
    for offset, style, label in ((0, ":", "reference"), (params.offset_threshold, "--", "offset threshold"),
                                 (params.onset_threshold, "-", "onset threshold"),
                                 (params.peak_threshold, "-.", "peak threshold")):
        axes[1].plot(analysis.times, analysis.reference + offset, style, lw=0.8, label=label)
    finite = np.concatenate([analysis.level, analysis.reference + params.peak_threshold])
    finite = finite[np.isfinite(finite)]
    if len(finite):  # headroom above the trace for the legend
        low, high = finite.min() - 3, finite.max() + 3
        axes[1].set_ylim(low, high + 0.5 * (high - low))
    axes[1].set_xlabel("time (s)")
    axes[1].set_ylabel("band energy (dB)")
    axes[1].legend(loc="upper right", fontsize="x-small", ncols=5)
    for onset, offset in analysis.segments:
        for ax in axes:
            ax.axvspan(onset, offset, color="white" if ax is axes[0] else "cyan", alpha=0.15, lw=0)
        axes[0].axvline(onset, color="lime", lw=0.8)
        axes[0].axvline(offset, color="red", lw=0.8)
    axes[1].set_xlim(0, max(duration, 0.01))  # 0.01 s: an empty file
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)


def _write_csv(table: pd.DataFrame, out: str):
    write_atomically(out, lambda partial: table.to_csv(partial, index=False, float_format="%.6f"))


def segment(audio_dir: str | None = None, out: str = "segments.csv", params: SegmentParams = SegmentParams(),
            plot: str | None = None, annotations: list[str] | None = None, annotation_format: str | None = None,
            audio_files: list[str] | None = None) -> pd.DataFrame:
    """Segment recordings, or import annotation files, into a CSV of syllables file,onset,offset.

    The CSV ``out`` holds ``file,onset,offset`` (seconds; ``file`` relative to ``audio_dir``), sorted by file
    and onset, written atomically; a one-line summary is printed. Returns the table.

    Args:
        audio_dir: folder of .wav/.flac recordings (searched recursively); with ``annotations``, optional: the
            annotated files are then looked up there and named relative to it.
        out: the CSV file written.
        params: segmentation parameters.
        plot: a folder for one PNG per recording: spectrogram, segments, band energy and thresholds.
        annotations: annotation files or folders to import instead of segmenting.
        annotation_format: ``sonic-visualiser``, ``raven``, ``audacity`` or ``csv``; default: guessed per file.
        audio_files: with ``annotations``, the audio file of each annotation file (default: its stem + .wav).
    """
    if annotations:
        files = [str(path) for path in annotation_files(annotations, annotation_format)]
        table = read_annotations(files, annotation_format, audio_files)
        if table.empty:
            raise ValueError(f"No annotation in {annotations}: the files hold no interval.")
        if audio_dir is not None:
            table = match_audio(table, Path(audio_dir), _audio_files(Path(audio_dir)))
        _write_csv(table, out)
        print(f"Imported {len(table)} segments of {table['file'].nunique()} audio files from {len(files)} "
              f"annotation files -> {out}")
        return table
    if audio_dir is None:
        raise ValueError("Give --audio_dir DIR to segment recordings, or --annotations FILES to import annotations.")
    table, seconds, silent, dropped = _segment_all(audio_dir, params, plot)
    _write_csv(table, out)
    files = table["file"].nunique() + len(silent)
    print(f"Segmented {files} files ({seconds:.1f} s of audio): {len(table)} segments, {_dropped_text(dropped)}"
          + (f"; no segment in {len(silent)} files ({', '.join(silent[:3])}{', ...' if len(silent) > 3 else ''})"
             if silent else "") + f" -> {out}")
    return table


def main(args: list[str] | None = None) -> pd.DataFrame:
    from jsonargparse import CLI

    return CLI(segment, args=args, as_positional=False)


if __name__ == "__main__":
    main()
