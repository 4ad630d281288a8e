"""The test phase of the 2-D MNIST QLVM config with its analysis callbacks, against the test loop alone; and the
embedding export of every split against one held-out evaluation of the same examples (issue 30: one evaluation pass).

MNIST-sized data in MNIST's IDX files (no download): the bundled 8x8 digits upsampled to 28 x 28 with noise,
``--train`` training images and ``--test`` test images (10 000, MNIST's test set). ``configs/qlvm_mnist.yaml`` trains
for ``--steps`` steps (the figures are about evaluation, not about fit), then ``trainer.test`` runs with the config's
callbacks (LatentPlots, Explorer, TrustDiagnostics; ``--all-callbacks`` adds PosteriorPlots). Measured:

* ``test_loop_s``: from the test's start to the end of its last batch (the held-out estimate of every test example,
  which now also keeps each example's posterior summaries and the aggregated posterior);
* ``test_phase_s``: the whole ``trainer.test``, the callbacks' analyses and files included;
  target ``test_phase_s / test_loop_s <= 1.5``;
* ``heldout_s``: the held-out estimate of every example of every split (``model.evaluation.log_likelihood``);
  ``embed_s``: :func:`lvm.analysis.embedding.embedding_table` of every split (posterior summaries and the held-out
  estimate of every example: what ``python -m lvm.tools.embed`` writes); target ``embed_s / heldout_s <= 1.2``. Each
  starts with no decoded lattice kept.

``--recompute`` also runs the test phase as before this change (no decoded lattice kept, no per-example results:
every analysis computes its own posteriors) for the before/after ratio, in the same process.

``--precision bf16-mixed`` passes ``--trainer.precision bf16-mixed`` to the run, ``--compile`` passes
``--model.compile_decoder true`` (``torch.compile`` on the decoder).

    python benchmarks/test_phase.py [--train 5000] [--test 10000] [--steps 40] [--recompute] [--precision P] [--compile]

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datamodules.miniatures import write_idx  # noqa: E402

MARKS: dict[str, float] = {}


class TestStart(L.Callback):
    """First in the list: the test's start; the end of the test loop (its last batch's epoch end)."""

    def on_test_start(self, trainer, pl_module):
        MARKS["start"] = time.perf_counter()

    def on_test_epoch_end(self, trainer, pl_module):
        MARKS["loop_end"] = time.perf_counter()


class TestEnd(L.Callback):
    """Last in the list: after every other callback's ``on_test_end``."""

    def on_test_end(self, trainer, pl_module):
        MARKS["end"] = time.perf_counter()


def write_data(root: Path, n_train: int, n_test: int) -> None:
    """MNIST's four IDX files of upsampled, jittered 8x8 digits (structure a decoder can learn; MNIST's sizes)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(0)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        pick = rng.integers(0, len(digits.images), n)
        big = np.kron(digits.images[pick] / 16.0, np.ones((3, 3)))  # [n, 24, 24]
        images = np.zeros((n, 28, 28))
        shifts = rng.integers(0, 5, (n, 2))
        for i, (dy, dx) in enumerate(shifts):
            images[i, dy:dy + 24, dx:dx + 24] = big[i]
        images = np.clip(images + 0.1 * rng.normal(size=images.shape), 0, 1)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", (images * 255).round())
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", digits.target[pick])


def run(root: Path, out: Path, args, recompute: bool) -> tuple:
    from lvm.runs.cli import LVMCLI

    callbacks = [{"class_path": "benchmarks.test_phase.TestStart"}]
    names = ["LatentPlots", "Explorer", "TrustDiagnostics"] + ["PosteriorPlots"] * args.all_callbacks
    callbacks += [{"class_path": f"lvm.callbacks.{name}"} for name in names]
    callbacks += [{"class_path": "benchmarks.test_phase.TestEnd"}]
    cli = LVMCLI(args=["--config", str(ROOT / "configs" / "qlvm_mnist.yaml"), "--data.init_args.root", str(root),
                       "--data.init_args.download", "false", "--data.init_args.val_size", "1000",
                       "--trainer.default_root_dir", str(out), "--trainer.max_epochs", "1",
                       "--trainer.limit_train_batches", str(args.steps), "--trainer.limit_val_batches", "2",
                       "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
                       "--trainer.enable_model_summary", "false", "--trainer.callbacks", json.dumps(callbacks),
                       *(["--model.eval_cache_bytes", "0"] if recompute else []),
                       *(["--trainer.precision", args.precision] if args.precision else []),
                       *(["--model.compile_decoder", "true"] if args.compile else [])], fit_and_test=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    if recompute:  # as before: no per-example results kept by the test loop
        cli.model.on_test_epoch_start = lambda: setattr(cli.model, "test_results", None)
    from benchmarks.test_phase import MARKS as marks  # the callbacks' module (this script runs as __main__)

    seconds: dict[str, float] = {}
    for callback in cli.trainer.callbacks:  # each analysis callback's on_test_end, timed
        if type(callback).__name__ in names:
            def timed(trainer, pl_module, _hook=callback.on_test_end, _name=type(callback).__name__):
                start = time.perf_counter()
                _hook(trainer, pl_module)
                seconds[_name] = round(time.perf_counter() - start, 2)
            callback.on_test_end = timed
    marks.clear()
    cli.trainer.test(cli.model, datamodule=cli.datamodule)
    return cli, marks["loop_end"] - marks["start"], marks["end"] - marks["start"], seconds


@torch.no_grad()
def heldout_and_embed(model, datamodule) -> tuple[float, float]:
    from lvm.analysis.embedding import SPLITS, embedding_table
    from lvm.batches import batch_data

    model.eval()
    model._decoded_lattices.clear()
    start = time.perf_counter()
    for split in SPLITS:
        for batch in getattr(datamodule, f"{split}_dataloader")():
            model.evaluation.log_likelihood(model, batch_data(batch))
    heldout = time.perf_counter() - start
    model._decoded_lattices.clear()
    model.test_results = None  # the export computes everything itself
    start = time.perf_counter()
    embedding_table(model, datamodule, SPLITS)
    return heldout, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=5000)
    parser.add_argument("--test", type=int, default=10000)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--all-callbacks", action="store_true", help="add PosteriorPlots")
    parser.add_argument("--recompute", action="store_true", help="also the test phase as before (no shared pass)")
    parser.add_argument("--precision", help="the trainer's precision, e.g. bf16-mixed (default: the config's)")
    parser.add_argument("--compile", action="store_true", help="compile the decoder (--model.compile_decoder true)")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    report: dict = {"train": args.train, "test": args.test, "threads": torch.get_num_threads(),
                    "device": "cuda" if torch.cuda.is_available() else "cpu",
                    **({"precision": args.precision} if args.precision else {}),
                    **({"compile": True} if args.compile else {})}
    with tempfile.TemporaryDirectory() as tmp:
        write_data(Path(tmp) / "data", args.train, args.test)
        cli, loop, phase, callbacks = run(Path(tmp) / "data", Path(tmp) / "runs", args, recompute=False)
        report.update(test_loop_s=round(loop, 2), test_phase_s=round(phase, 2), phase_over_loop=round(phase / loop, 3),
                      callbacks_s=callbacks)
        print(f"test loop {loop:.1f} s, whole test phase {phase:.1f} s ({phase / loop:.2f}x)", flush=True)
        heldout, embed = heldout_and_embed(cli.model, cli.datamodule)
        report.update(heldout_s=round(heldout, 2), embed_s=round(embed, 2), embed_over_heldout=round(embed / heldout, 3))
        print(f"held-out estimate of every split {heldout:.1f} s, embedding table {embed:.1f} s "
              f"({embed / heldout:.2f}x)", flush=True)
        if args.recompute:
            _, loop_before, phase_before, callbacks_before = run(Path(tmp) / "data", Path(tmp) / "runs", args,
                                                                  recompute=True)
            report.update(before_test_loop_s=round(loop_before, 2), before_test_phase_s=round(phase_before, 2),
                          before_callbacks_s=callbacks_before, phase_speedup=round(phase_before / phase, 2))
            print(f"before: test loop {loop_before:.1f} s, test phase {phase_before:.1f} s", flush=True)
    report["targets_met"] = {"test_phase_le_1.5x_loop": report["phase_over_loop"] <= 1.5,
                             "embed_le_1.2x_heldout": report["embed_over_heldout"] <= 1.2}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
