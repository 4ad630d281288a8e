"""Held-out QMC likelihood cost (QLVM paper, eq. 5; :mod:`lvm.estimators.heldout`).

The randomized-QMC log-likelihood of 10 000 MNIST-sized examples (D = 784) with a dense lattice of
m = 6765 points (the 2-D default) and the MNIST MLP decoder, as ``model.log_likelihood`` runs it in
batches (chunked over lattice points), against its pure matrix-product lower bound on this machine:
the [n, D] x [D, m] product alone (target <= 2x). Peak memory is the resident-set peak of one evaluation
in a fresh process.

Usage: ``python benchmarks/heldout_eval.py [--examples 10000] [--points 6765] [--batch 1000]``.
The last output line is one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import PeakMemory  # noqa: E402
from lvm.likelihoods import BernoulliLikelihood  # noqa: E402
from lvm.model import LatentVariableModel  # noqa: E402
from lvm.networks import MLPDecoder  # noqa: E402
from lvm.priors import TorusPrior  # noqa: E402
from lvm.objectives import QMCObjective  # noqa: E402


def evaluate(args) -> float:
    torch.manual_seed(0)
    model = LatentVariableModel(MLPDecoder([1, 28, 28], [256, 512]), BernoulliLikelihood(), TorusPrior(2),
                                QMCObjective(args.points), eval_num_points=args.points)
    x = torch.bernoulli(torch.full((args.examples, 1, 28, 28), 0.15))
    start = time.perf_counter()
    for batch in x.split(args.batch):
        model.log_likelihood(batch, shift_seed=0)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--points", type=int, default=6765)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--memory-only", action="store_true", help=argparse.SUPPRESS)  # internal
    args = parser.parse_args()
    if args.memory_only:
        with PeakMemory(torch.device("cpu")) as peak:
            evaluate(args)
        print(peak.bytes)
        return
    evaluate(argparse.Namespace(**{**vars(args), "examples": args.batch}))  # warm-up
    seconds = evaluate(args)
    x = torch.rand(args.examples, 784)
    params = torch.randn(args.points, 784)
    x @ params[:10].T  # warm-up
    start = time.perf_counter()
    for batch in x.split(args.batch):
        batch @ params.T  # [b, m]: the one product eq. 5 cannot avoid
    floor = time.perf_counter() - start
    command = [sys.executable, __file__, "--memory-only", "--examples", str(args.examples), "--points",
               str(args.points), "--batch", str(args.batch)]
    peak = int(subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    figures = {"examples": args.examples, "points": args.points, "batch": args.batch, "data_dim": 784,
               "seconds": seconds, "matmul_floor_seconds": floor, "over_floor": seconds / floor,
               "examples_per_s": args.examples / seconds, "peak_memory_mb": peak / 2**20}
    print(f"held-out QMC log-likelihood of {args.examples} examples, m = {args.points}, D = 784, batches of {args.batch}")
    print(f"time {seconds:.2f} s ({figures['examples_per_s']:.0f} examples/s); matrix-product floor {floor:.2f} s "
          f"-> {figures['over_floor']:.2f}x (target <= 2); peak memory {figures['peak_memory_mb']:.0f} MB")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
