"""The vocalization pipeline from WAV files to a trained model, on generated recordings of ~1000 syllables
(:func:`lvm.datamodules.miniatures.write_recordings`: tones, chirps, harmonic stacks and pulse trains in noise at
22.05, 32 and 48 kHz, int16 and float WAVs).

Measures, in one run:

* segmentation (``lvm.datamodules.vocalizations.segment``, default parameters): seconds of audio per second, and the recall of
  the known calls (onset and offset within 10 ms);
* preprocessing (``lvm.datamodules.vocalizations.preprocess``, 64 x 64 as for the CPU config): seconds of audio and
  syllables per second;
* ``configs/qlvm_vocalizations_cpu.yaml`` trained for ``--epochs`` epochs and tested in its own process: seconds
  per epoch (EpochTimer, validation included), the whole run's wall time and its peak resident memory (test included), and the
  wall time projected to the config's own epoch count.

Usage: ``python benchmarks/vocalization_pipeline.py [--epochs 5] [--files-per-format 4] [--keep DIR]``.
The last output line is one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lvm.datamodules.miniatures import write_recordings  # noqa: E402
from lvm.datamodules.vocalizations.segment import SegmentParams, segment_files  # noqa: E402
from lvm.datamodules.vocalizations.preprocess import SpectrogramParams, preprocess  # noqa: E402
from lvm.tools.compare import train_run  # noqa: E402

CONFIG = ROOT / "configs" / "qlvm_vocalizations_cpu.yaml"


def recall(truth, found, tolerance: float = 0.01) -> float:
    """The fraction of true calls with a found segment whose onset and offset both lie within ``tolerance`` s."""
    hits = 0
    for name, calls in truth.groupby("file"):
        segments = found[found.file == name][["onset", "offset"]].to_numpy()
        for onset, offset in zip(calls.onset, calls.offset):
            hits += bool(len(segments)) and bool(np.any((np.abs(segments[:, 0] - onset) <= tolerance)
                                                        & (np.abs(segments[:, 1] - offset) <= tolerance)))
    return hits / len(truth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5, help="epochs of the CPU config to time")
    parser.add_argument("--files-per-format", type=int, default=4, help="recordings per (rate, sample format)")
    parser.add_argument("--calls-per-file", type=int, default=42)
    parser.add_argument("--keep", help="a folder for the recordings, spectrograms and run (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.keep or scratch)
        truth = write_recordings(folder / "wav", calls_per_file=args.calls_per_file, files_per_format=args.files_per_format)
        audio_seconds = sum(soundfile.info(folder / "wav" / name).duration for name in truth.file.unique())

        start = time.perf_counter()
        found = segment_files(str(folder / "wav"), SegmentParams())
        segment_seconds = time.perf_counter() - start
        found.to_csv(folder / "segments.csv", index=False)

        truth.drop(columns="rate").to_csv(folder / "truth.csv", index=False)
        start = time.perf_counter()
        preprocess(str(folder / "wav"), str(folder / "truth.csv"), str(folder / "specs"),
                   SpectrogramParams(num_freq_bins=64, num_time_bins=64), overwrite=True)
        preprocess_seconds = time.perf_counter() - start

        start = time.perf_counter()
        run = train_run(CONFIG, 0, folder / "runs", ["--data.init_args.root", str(folder / "specs"),
                                                    "--data.init_args.label_key", "kind",
                                                    "--trainer.max_epochs", str(args.epochs),
                                                    "--trainer.enable_progress_bar", "false"])
        run_seconds = time.perf_counter() - start
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the training process, test included
        timing = json.loads((run / "timing.json").read_text())
        metrics = json.loads((run / "metrics.json").read_text())

    config_epochs = yaml.safe_load(CONFIG.read_text())["trainer"]["max_epochs"]
    figures = {
        "syllables": len(truth), "audio_seconds": audio_seconds,
        "segment_audio_seconds_per_s": audio_seconds / segment_seconds, "segment_recall_10ms": recall(truth, found),
        "segments_found": len(found),
        "preprocess_audio_seconds_per_s": audio_seconds / preprocess_seconds,
        "preprocess_syllables_per_s": len(truth) / preprocess_seconds,
        "cpu_config_epochs": args.epochs, "cpu_config_seconds_per_epoch": timing["seconds_per_epoch"],
        "cpu_config_run_seconds": run_seconds, "cpu_config_peak_memory_mb": peak_mb,
        "cpu_config_projected_minutes": (run_seconds + (config_epochs - args.epochs) * timing["seconds_per_epoch"]) / 60,
        "cpu_config_test_log_likelihood": metrics.get("test/log_likelihood"),
    }
    for key, value in figures.items():
        print(f"{key:<36}{value:>14.4g}" if isinstance(value, float) else f"{key:<36}{value!s:>14}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
