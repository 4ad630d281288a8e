"""Throughput of the spectrogram inversion (:func:`lvm.numerics.spectrograms.spectrogram_to_audio`): syllables per
second at the preprocessing's default sizes (128 x 128 images, mel rows 400-10 000 Hz, time_stretch, max_dur 0.2 s,
STFT 512/256) and the default 100 fast Griffin-Lim iterations (50 NNLS iterations), on the CPU and, when there is
one, on CUDA, for several batch sizes (median of ``--repeats`` calls after a warm-up), with the quality the
inversion reports (its re-analysis is part of the timed call).

The images are the real pipeline's: a miniature recording at 32 kHz (:func:`lvm.datamodules.miniatures.
write_recordings`: tones, chirps, harmonic stacks and pulse trains of 30-150 ms in noise) preprocessed with the
defaults (calibrated scale) and read by :class:`VocalizationsDataModule`, whose ``inversion_params`` and
``durations`` the inversion uses. A batch takes syllables spread over the set; larger batches repeat them. The
quality figures (per call kind: median and worst spectral convergence and mean pixel difference) are those of the
whole set inverted at once.

Usage: ``python benchmarks/inversion.py [--repeats 3] [--syllables 64] [--cpu-batches 1 16 64]
[--cuda-batches 64 256 1024] [--threads N]``. The last output line is one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import median_seconds  # noqa: E402
from lvm.datamodules import VocalizationsDataModule  # noqa: E402
from lvm.datamodules.miniatures import write_recordings  # noqa: E402
from lvm.datamodules.vocalizations.preprocess import preprocess  # noqa: E402
from lvm.numerics.spectrograms import spectrogram_to_audio, time_window  # noqa: E402


def syllables(folder: Path, count: int) -> tuple[torch.Tensor, np.ndarray, dict, np.ndarray]:
    """The preprocessing's images ``[count, F, T]`` of a miniature recording, their durations (s), the inversion's
    parameters and the call kinds."""
    table = write_recordings(folder / "wav", rates=(32_000,), subtypes=("FLOAT",), calls_per_file=count)
    table.drop(columns="rate").to_csv(folder / "segments.csv", index=False)
    with redirect_stdout(StringIO()):
        preprocess(str(folder / "wav"), str(folder / "segments.csv"), str(folder / "specs"))
    data = VocalizationsDataModule(str(folder / "specs"), test_fraction=0.0, val_fraction=0.0)
    data.setup()
    images = torch.stack([data.train_set.dataset[i][0][0] for i in range(len(data.durations))])
    return images, data.durations, data.inversion_params(0), data.metadata["kind"]


def summary(out, chosen: np.ndarray) -> dict:
    """Median and worst spectral convergence, mean and worst pixel error of the ``chosen`` syllables."""
    convergence, error = out.spectral_convergence[chosen], out.pixel_error[chosen]
    return {"spectral_convergence_median": float(convergence.median()), "spectral_convergence_max":
            float(convergence.max()), "pixel_error_mean": float(error.mean()), "pixel_error_max": float(error.max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--syllables", type=int, default=64, help="calls in the miniature recording")
    parser.add_argument("--cpu-batches", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--cuda-batches", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        images, durations, params, kinds = syllables(Path(folder), args.syllables)
    out = spectrogram_to_audio(images, params, durations)
    kinds = np.asarray(kinds)
    quality = {kind: summary(out, kinds == kind) for kind in sorted(set(kinds))}
    quality["all"] = summary(out, np.ones(len(kinds), dtype=bool))
    print("quality: " + ", ".join(f"{kind} spectral convergence median {q['spectral_convergence_median']:.3f} (worst "
                                  f"{q['spectral_convergence_max']:.3f}), pixel error {q['pixel_error_mean']:.4f}"
                                  for kind, q in quality.items()), flush=True)
    figures = {"image": list(images.shape[1:]), "iterations": 100, "sample_rate": params["fs"],
               "syllables": len(images), "durations_s": [float(durations.min()), float(durations.max())],
               "cpu_threads": torch.get_num_threads(), "quality": quality, "devices": {}}
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
        rows = {}
        for batch in (args.cuda_batches if device == "cuda" else args.cpu_batches):
            take = ((np.arange(batch) + 0.5) * len(images) / batch).astype(int)  # spread over the set
            x, d = images[take].to(device), durations[take]  # [batch, F, T], [batch]
            seconds = median_seconds(lambda x=x, d=d: spectrogram_to_audio(x, params, d), torch.device(device),
                                     args.repeats)
            spans, _ = time_window(d, params["max_dur"], params["time_stretch"])
            rows[str(batch)] = {"syllables_per_s": batch / seconds, "seconds": seconds,
                                "audio_seconds_per_s": float(spans.sum()) / seconds}
            print(f"{name}, batch {batch}: {batch / seconds:.1f} syllables/s ({seconds:.3f} s per call)", flush=True)
        figures["devices"][device] = {"name": name, "batches": rows,
                                      "best_syllables_per_s": max(r["syllables_per_s"] for r in rows.values())}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
