"""Windows per second from WAV files to the per-frame export (``python -m lvm.tools.trajectory``) on the CPU
vocalization config's model size (``configs/qlvm_vocalizations_cpu.yaml``: 64 x 64 spectrograms, 2-D torus,
ConvDecoder, 1597-point evaluation lattice).

Stages, each timed:

* the shotgun preprocessing (``lvm.datamodules.vocalizations.preprocess`` with ``windows``: sliding windows of
  ``--window`` s every ``--hop`` s over generated recordings of synthetic calls, 44.1 kHz): windows per second;
* the export on those windows: embedding (posterior mean and spread), the aggregated posterior's modes, each window's
  cluster probability, the table with its provenance, the sequence statistics and the figures: windows per second.
  The model is trained for one batch only (throughput does not depend on training).

Usage: ``python benchmarks/trajectory_throughput.py [--seconds 120] [--files 4] [--window 0.2] [--hop 0.05]
[--keep DIR]``. The last output line is one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lvm.datamodules.vocalizations.preprocess import SlidingWindows, SpectrogramParams, preprocess  # noqa: E402
from lvm.tools.compare import train_run  # noqa: E402

CONFIG = ROOT / "configs" / "qlvm_vocalizations_cpu.yaml"
RATE = 44_100


def write_wavs(folder: Path, files: int, seconds: float, seed: int = 0) -> None:
    """``files`` recordings of ``seconds`` each: chirps and harmonic tones every ~0.3 s in faint noise."""
    rng = np.random.default_rng(seed)
    for index in range(files):
        t = np.arange(int(seconds * RATE)) / RATE
        audio = 0.003 * rng.normal(size=len(t))
        for onset in np.arange(0.1, seconds - 0.3, 0.3):
            length = rng.uniform(0.05, 0.15)
            inside = (t >= onset) & (t < onset + length)
            local = t[inside] - onset
            start, slope = rng.uniform(1500, 6000), rng.uniform(-2e4, 2e4)
            audio[inside] += 0.3 * np.sin(2 * np.pi * (start * local + 0.5 * slope * local ** 2)) * np.hanning(
                inside.sum())
        soundfile.write(folder / f"recording{index}.wav", audio.astype(np.float32), RATE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=120.0, help="duration of each generated recording")
    parser.add_argument("--files", type=int, default=4, help="recordings")
    parser.add_argument("--window", type=float, default=0.2, help="window length (s)")
    parser.add_argument("--hop", type=float, default=0.05, help="hop between windows (s)")
    parser.add_argument("--keep", help="a folder for the recordings, windows, run and export (default: temporary)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trajectory-throughput-") as scratch:
        folder = Path(args.keep or scratch)
        (folder / "audio").mkdir(parents=True, exist_ok=True)
        write_wavs(folder / "audio", args.files, args.seconds)
        params = SpectrogramParams(num_freq_bins=64, num_time_bins=64, max_dur=args.window, max_freq=8000.0)
        start = time.perf_counter()
        preprocess(str(folder / "audio"), out_dir=str(folder / "windows"), params=params,
                   windows=SlidingWindows(args.window, args.hop), overwrite=True)
        preprocessing = time.perf_counter() - start
        data = ["--data.init_args.root", str(folder / "windows"), "--data.init_args.group_key", "null",
                "--data.init_args.label_key", "null"]
        run = train_run(CONFIG, 0, folder / "runs", ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1",
                                                     "--trainer.limit_val_batches", "0", "--trainer.limit_test_batches",
                                                     "1", "--trainer.callbacks", "[]", *data])
        (ckpt,) = run.rglob("last.ckpt")
        from lvm.tools import trajectory  # (PyTorch: after the recordings are written)

        out = folder / "export" / "traj.parquet"
        start = time.perf_counter()
        trajectory.main(["--ckpt", str(ckpt), "--out", str(out), "--max_figures", "4", *data])
        export = time.perf_counter() - start
        import pandas as pd

        windows = len(pd.read_parquet(out, columns=["sequence"]))
    figures = {
        "recordings": args.files, "seconds_of_audio": args.files * args.seconds, "sample_rate": RATE,
        "window_s": args.window, "hop_s": args.hop, "windows": windows,
        "preprocessing_s": round(preprocessing, 2), "preprocessing_windows_per_s": round(windows / preprocessing, 1),
        "export_s": round(export, 2), "export_windows_per_s": round(windows / export, 1),
        "wav_to_export_windows_per_s": round(windows / (preprocessing + export), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": os.cpu_count(), "config": CONFIG.name,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
