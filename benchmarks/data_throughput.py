"""Data loading throughput against the model's step time, so loading is never the bottleneck.

For each datamodule (digits, 3dShapes, vocalizations, CMU mocap, Omniglot), training examples per second of its training DataLoader (one full pass, after a
warm-up batch) on generated miniatures in the real on-disk formats (or on the real files when
``--real-root`` holds them), beside the examples per second of a QLVM training step (m = 610 lattice
points, the quickstart's MLP decoder sized to the data) on the same batches: a ratio above 1 means the
loader outpaces training.

Usage: ``python benchmarks/data_throughput.py [--workers 2] [--batch 64] [--real-root data]``.
The last output line is one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import median_seconds  # noqa: E402
from lvm.datamodules import (DigitsDataModule, MocapDataModule, OmniglotDataModule, Shapes3DDataModule,  # noqa: E402
                         VocalizationsDataModule)
from lvm.datamodules.miniatures import write_3dshapes, write_mocap_subject, write_omniglot, write_vocalizations  # noqa: E402
from lvm.likelihoods import GaussianLikelihood  # noqa: E402
from lvm.model import LatentVariableModel  # noqa: E402
from lvm.networks import MLPDecoder  # noqa: E402
from lvm.priors import TorusPrior  # noqa: E402
from lvm.objectives import QMCObjective  # noqa: E402


def miniatures(folder: Path, n: int) -> dict:
    """Generated files in the real formats (:mod:`lvm.datamodules.miniatures`) and the datamodules reading them."""
    write_3dshapes(folder / "3dshapes.h5", n, chunks=(64, 64, 64, 3))
    (folder / "vocal").mkdir()
    write_vocalizations(folder / "vocal" / "calls.h5", n)
    write_mocap_subject(folder / "mocap", trials=10, frames=n // 10)
    write_omniglot(folder / "omniglot", alphabets=4, characters=5, drawers=max(1, n // 40))
    return {"digits": lambda **k: DigitsDataModule(**k),
            "3dshapes": lambda **k: Shapes3DDataModule(str(folder / "3dshapes.h5"), **k),
            "vocalizations": lambda **k: VocalizationsDataModule(str(folder / "vocal"), **k),
            "mocap": lambda **k: MocapDataModule(str(folder / "mocap"), **k),
            "omniglot": lambda **k: OmniglotDataModule(str(folder / "omniglot"), **k)}


def loader_rate(datamodule) -> tuple[float, torch.Tensor]:
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    iterator = iter(loader)
    first = next(iterator)[0]
    start, count = time.perf_counter(), 0
    for batch in iterator:
        count += len(batch[0])
    elapsed = time.perf_counter() - start
    return count / elapsed if count else float("nan"), first


def step_rate(x: torch.Tensor) -> float:
    torch.manual_seed(0)
    model = LatentVariableModel(MLPDecoder(list(x.shape[1:]), [64, 128]), GaussianLikelihood(0.1), TorusPrior(2),
                                QMCObjective(610))

    def step():
        model.zero_grad(set_to_none=True)
        model.objective(model, x)["loss"].backward()

    return len(x) / median_seconds(step, torch.device("cpu"), 5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--examples", type=int, default=2000, help="examples in each generated miniature")
    parser.add_argument("--real-root", help="a data root with real files (3dshapes.h5, vocalizations/) to time too")
    args = parser.parse_args()
    figures = {"workers": args.workers, "batch": args.batch, "datamodules": {}}
    with tempfile.TemporaryDirectory() as folder:
        modules = miniatures(Path(folder), args.examples)
        if args.real_root:
            root = Path(args.real_root)
            if (root / "3dshapes.h5").is_file():
                modules["3dshapes (real)"] = lambda **k: Shapes3DDataModule(str(root / "3dshapes.h5"), subset=20_000, **k)
            if (root / "vocalizations").is_dir():
                modules["vocalizations (real)"] = lambda **k: VocalizationsDataModule(str(root / "vocalizations"), **k)
        for name, make in modules.items():
            loaded, x = loader_rate(make(batch_size=args.batch, num_workers=args.workers))
            trained = step_rate(x)
            figures["datamodules"][name] = {"loader_examples_per_s": loaded, "step_examples_per_s": trained,
                                            "loader_over_step": loaded / trained, "data_dim": math.prod(x.shape[1:])}
    print(f"{'datamodule':<22}{'loader (ex/s)':>15}{'QLVM step (ex/s)':>18}{'loader / step':>15}")
    for name, entry in figures["datamodules"].items():
        print(f"{name:<22}{entry['loader_examples_per_s']:>15.0f}{entry['step_examples_per_s']:>18.0f}"
              f"{entry['loader_over_step']:>15.1f}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
