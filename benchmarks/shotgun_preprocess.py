"""The vocalization preprocessing's sliding windows (``--windows.length``, issue 29) over one long recording:
windows per second and the memory it takes, on a synthetic int16 WAV written on the fly (chirps every 0.25 s in
noise, 10 s at a time) and deleted afterwards.

Measures, with the recording read in blocks (:class:`lvm.datamodules.vocalizations.audio.RecordingBlocks`):

* windows per second (spectrograms written, calibration included; ``--bins`` x ``--bins``);
* the peak of the memory allocated while preprocessing, by ``tracemalloc`` (NumPy's buffers included), and the
  growth of the process's peak resident memory over what it was before (``ru_maxrss``, libsndfile and HDF5 included),
  against the recording's size as float64, what reading it whole would take.

Usage: ``python benchmarks/shotgun_preprocess.py [--minutes 60] [--rate 44100] [--length 0.2] [--hop 1.0]
[--bins 32]``. The last output line is one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lvm.datamodules.vocalizations.preprocess import main as preprocess  # noqa: E402


def write_recording(path: Path, minutes: float, rate: int) -> None:
    """Chirps of 60 ms every 0.25 s in faint noise, written 10 s at a time."""
    rng = np.random.default_rng(0)
    with soundfile.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16") as handle:
        for _ in range(int(round(minutes * 6))):
            t = np.arange(10 * rate) / rate
            phase = t % 0.25
            audio = np.where(phase < 0.06, 0.4 * np.sin(2 * np.pi * (1500 + 20_000 * phase) * phase), 0.0)
            handle.write(audio + 0.005 * rng.standard_normal(len(t)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--rate", type=int, default=44_100)
    parser.add_argument("--length", type=float, default=0.2)
    parser.add_argument("--hop", type=float, default=1.0)
    parser.add_argument("--bins", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        (folder / "wav").mkdir()
        write_recording(folder / "wav" / "long.wav", args.minutes, args.rate)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        tracemalloc.start()
        start = time.perf_counter()
        written = preprocess(["--audio_dir", str(folder / "wav"), "--out_dir", str(folder / "out"),
                              "--windows.length", str(args.length), "--windows.hop", str(args.hop),
                              "--params.max_dur", str(args.length), "--params.num_freq_bins", str(args.bins),
                              "--params.num_time_bins", str(args.bins)])
        seconds = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        summary = json.loads((folder / "out" / "preprocess_summary.json").read_text())
    figures = {"minutes": args.minutes, "rate": args.rate, "window_length": args.length, "hop": args.hop,
               "bins": args.bins, "windows": summary["written"], "files": len(written), "seconds": round(seconds, 2),
               "windows_per_second": round(summary["written"] / seconds, 1),
               "audio_seconds_per_second": round(60 * args.minutes / seconds, 1),
               "tracemalloc_peak_mb": round(peak / 1e6, 1), "rss_peak_growth_mb": round((rss_after - rss_before) / 1e6, 1),
               "recording_float64_mb": round(60 * args.minutes * args.rate * 8 / 1e6, 1)}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
