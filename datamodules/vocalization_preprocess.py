"""WAV files + syllable segments -> spectrogram HDF5 files for :class:`VocalizationsDataModule`,
following the Autoencoded Vocal Analysis recipe (Goffinet et al. 2021) without AVA itself (it calls
SciPy's removed ``interp2d``).

For each syllable (a row ``file,onset,offset`` of the segments CSV, times in seconds): the STFT of its
recording, log-magnitude ``log(|STFT| + eps)``, interpolated (``RegularGridInterpolator``) onto
``num_freq_bins`` frequencies between ``min_freq`` and ``max_freq`` (linearly or mel spaced) and
``num_time_bins`` times spanning the syllable (with ``time_stretch``, a duration d is shown as
sqrt(d * max_dur), so short syllables are stretched, centred in a window of ``max_dur``), then
``(value - spec_min_val) / (spec_max_val - spec_min_val)`` clipped to [0, 1]. Each recording gives
``<out_dir>/<recording stem>.h5`` with ``specs`` (N, 128, 128), ``onsets``, ``offsets``,
``audio_filenames`` and ``mean_freq`` (the spectral centroid of the syllable, Hz).

Usage: ``python -m datamodules.vocalization_preprocess --audio_dir wavs --segments segments.csv
--out_dir data/vocalizations [--min_freq 400 --max_freq 10000 --mel true ...]`` or ``--config
preprocess.yaml`` holding the same keys (jsonargparse).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import soundfile
from rich.progress import track
from scipy.interpolate import RegularGridInterpolator
from scipy.signal import stft

__all__ = ["SpectrogramParams", "syllable_spectrogram", "preprocess", "main"]

EPSILON = 1e-12


def _mel(hz: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log(1 + hz / 700.0)


def _inverse_mel(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (np.exp(mel / 1127.0) - 1)


@dataclass
class SpectrogramParams:
    """The AVA parameters (defaults: AVA's zebra-finch settings).

    Args:
        nperseg, noverlap: STFT window length and overlap in samples.
        min_freq, max_freq: the frequency band kept (Hz).
        num_freq_bins, num_time_bins: the spectrogram's size (128 x 128).
        mel: mel-spaced instead of linearly spaced frequencies.
        time_stretch: show a syllable of duration d over sqrt(d * max_dur).
        max_dur: the longest syllable (s); the time window of every spectrogram.
        spec_min_val, spec_max_val: log-magnitudes mapped to 0 and 1.
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
    spec_min_val: float = 2.0
    spec_max_val: float = 6.5

    def __post_init__(self):
        if not 0 <= self.min_freq < self.max_freq:
            raise ValueError(f"Need 0 <= min_freq < max_freq; got {self.min_freq} and {self.max_freq}.")
        if self.spec_max_val <= self.spec_min_val:
            raise ValueError(f"spec_max_val must exceed spec_min_val; got {self.spec_max_val} <= {self.spec_min_val}.")

    def frequencies(self) -> np.ndarray:
        """The target frequency axis (Hz), ``[num_freq_bins]``, increasing."""
        if self.mel:
            return _inverse_mel(np.linspace(_mel(self.min_freq), _mel(self.max_freq), self.num_freq_bins))
        return np.linspace(self.min_freq, self.max_freq, self.num_freq_bins)


def syllable_spectrogram(audio: np.ndarray, rate: float, onset: float, offset: float,
                         params: SpectrogramParams) -> np.ndarray:
    """The ``[num_freq_bins, num_time_bins]`` spectrogram in [0, 1] of one syllable (rows: increasing
    frequency)."""
    duration = offset - onset
    if duration <= 0 or duration > params.max_dur * (1 + 1e-9):
        raise ValueError(f"Syllable at {onset:.4f}-{offset:.4f} s: duration must lie in (0, max_dur={params.max_dur}] s.")
    duration = min(duration, params.max_dur)
    shown = np.sqrt(duration * params.max_dur) if params.time_stretch else duration
    margin = 0.5 * (params.max_dur - shown)
    times = np.linspace(onset - margin * duration / shown, offset + margin * duration / shown, params.num_time_bins)
    pad = params.nperseg / rate
    start, stop = max(0, int((times[0] - pad) * rate)), min(len(audio), int(np.ceil((times[-1] + pad) * rate)))
    f, t, z = stft(audio[start:stop], fs=rate, nperseg=params.nperseg, noverlap=params.noverlap)
    log_magnitude = np.log(np.abs(z) + EPSILON)  # [frequencies, frames]
    interpolate = RegularGridInterpolator((f, t + start / rate), log_magnitude, bounds_error=False,
                                          fill_value=np.log(EPSILON))
    grid_f, grid_t = np.meshgrid(params.frequencies(), times, indexing="ij")
    spec = interpolate(np.stack([grid_f, grid_t], axis=-1))
    return np.clip((spec - params.spec_min_val) / (params.spec_max_val - params.spec_min_val), 0.0, 1.0)


def _mean_frequency(spec: np.ndarray, frequencies: np.ndarray) -> float:
    energy = spec.sum(axis=1)
    return float((energy * frequencies).sum() / energy.sum()) if energy.sum() > 0 else float("nan")


def preprocess(audio_dir: str, segments: str, out_dir: str, params: SpectrogramParams = SpectrogramParams()) -> list[Path]:
    """Write one HDF5 file of syllable spectrograms per recording listed in the ``segments`` CSV
    (columns ``file,onset,offset``; ``file`` relative to ``audio_dir``). Returns the written paths."""
    rows = defaultdict(list)
    with open(segments, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"file", "onset", "offset"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{segments}: missing columns {sorted(missing)}; expected file,onset,offset (seconds).")
        for row in reader:
            rows[row["file"]].append((float(row["onset"]), float(row["offset"])))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in track(sorted(rows), description="Spectrograms"):
        path = Path(audio_dir) / name
        if not path.is_file():
            raise FileNotFoundError(f"{segments} lists {name}, but {path.resolve()} does not exist.")
        audio, rate = soundfile.read(path, dtype="float64", always_2d=True)
        audio = audio.mean(axis=1)  # mono
        syllables = sorted(rows[name])
        specs = np.stack([syllable_spectrogram(audio, rate, a, b, params) for a, b in syllables]).astype(np.float32)
        target = out / f"{Path(name).stem}.h5"
        with h5py.File(target, "w") as handle:
            handle["specs"] = specs
            handle["onsets"] = np.array([a for a, _ in syllables])
            handle["offsets"] = np.array([b for _, b in syllables])
            handle["audio_filenames"] = np.array([name.encode()] * len(syllables))
            handle["mean_freq"] = np.array([_mean_frequency(s, params.frequencies()) for s in specs])
        written.append(target)
    return written


def main(args: list[str] | None = None) -> list[Path]:
    from jsonargparse import CLI

    return CLI(preprocess, args=args, as_positional=False)


if __name__ == "__main__":
    main()
