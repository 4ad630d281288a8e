"""The explorer's build time and file size with and without sound (issue 27), side by side in one run.

Miniature recordings at 32 kHz (:func:`lvm.datamodules.miniatures.write_recordings`: tones, chirps, harmonic stacks
and pulse trains of 30-150 ms in noise) go through the real preprocessing (``--size`` x ``--size`` spectrograms) and
a 2-D torus model (untrained: the cost of the page does not depend on training, though an untrained model's noisy
images make larger PNGs); :func:`lvm.tools.explore.build_explorer` then builds the page of every example with
``--items`` hover items (each with its original clip and its reconstruction when sound is on) and a
``--per-side`` x ``--per-side`` decoded grid (one sound per cell).

    python benchmarks/explorer_audio.py [--items 2000] [--calls 2200] [--size 64] [--per-side 24]

Last line: one JSON object (seconds and MB with and without sound, and their differences).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=2000, help="hover items (the explorer's max_images)")
    parser.add_argument("--calls", type=int, default=2200, help="syllables in the miniature recordings")
    parser.add_argument("--size", type=int, default=64, help="spectrogram rows and columns")
    parser.add_argument("--per-side", type=int, default=24, help="decoded grid cells per side")
    args = parser.parse_args()

    from lvm.analysis.embedding import embedding_table
    from lvm.datamodules import VocalizationsDataModule
    from lvm.datamodules.miniatures import write_recordings
    from lvm.datamodules.vocalizations import preprocess
    from lvm.likelihoods import BernoulliLikelihood
    from lvm.model import LatentVariableModel
    from lvm.networks import MLPDecoder
    from lvm.objectives import QMCObjective
    from lvm.priors import TorusPrior
    from lvm.tools.explore import build_explorer

    report: dict = {"items": args.items, "size": args.size, "per_side": args.per_side,
                    "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = max(1, args.calls // 220)
        truth = write_recordings(root / "wav", rates=(32_000,), subtypes=("PCM_16",), calls_per_file=args.calls // files,
                                 files_per_format=files)
        truth[["file", "onset", "offset", "kind"]].to_csv(root / "segments.csv", index=False)
        preprocess.main(["--audio_dir", str(root / "wav"), "--segments", str(root / "segments.csv"), "--out_dir",
                         str(root / "specs"), "--params.num_freq_bins", str(args.size), "--params.num_time_bins",
                         str(args.size)])
        datamodule = VocalizationsDataModule(str(root / "specs"), batch_size=256, label_key="kind")
        torch.manual_seed(0)
        model = LatentVariableModel(MLPDecoder(data_shape=[1, args.size, args.size], hidden=[64]),
                                    BernoulliLikelihood(), TorusPrior(2), QMCObjective(55), eval_num_points=89,
                                    eval_num_samples=4)
        table, _ = embedding_table(model, datamodule, ("train", "val", "test"), log_likelihood=False)
        report["examples"] = len(table)
        for audio in (False, True):
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                page = build_explorer(model, datamodule, table, max_images=args.items, per_side=args.per_side,
                                      audio=audio)
            seconds, megabytes = time.perf_counter() - start, len(page.encode()) / 1e6
            key = "with_sound" if audio else "without_sound"
            report[key] = {"seconds": round(seconds, 2), "mb": round(megabytes, 2)}
            print(f"{key:14s} {seconds:6.1f} s  {megabytes:6.2f} MB", flush=True)
    report["sound_adds_mb"] = round(report["with_sound"]["mb"] - report["without_sound"]["mb"], 2)
    report["sound_adds_s"] = round(report["with_sound"]["seconds"] - report["without_sound"]["seconds"], 2)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
