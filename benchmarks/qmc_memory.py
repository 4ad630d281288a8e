"""Memory of a QMC training step with and without chunking (issue: memory-bounded QMC training).

The conv decoder of ``configs/qlvm_vocalizations.yaml`` (128 x 128 spectrograms, Bernoulli likelihood), b = 32,
one step of eq. 5 (forward + backward) through ``QMCObjective``:

* peak memory at m = 610 and m = 2584 for the chunked step (``chunk_size="auto"``, 1 GiB activation budget:
  each chunk's decoder pass is checkpointed and recomputed in the backward pass) and the single pass
  (``chunk_size=None``), each in a fresh process (CPU: resident-set peak above the level at entry);
  targets: ``peak_mb_chunked_m2584`` <= 2500 and <= 1.2 x ``peak_mb_chunked_m610``;
* time of the chunked step / the single-pass step at m = 610 (target <= 1.5);
* the relative difference of the two paths' gradients (float32), and each one's relative error against the float64
  gradient of the same weights (the scale of float32 rounding for this step).

``--points M1 M2`` measures at other lattice sizes (the time and the gradients at the first; the figures' names say m).

Usage: ``python benchmarks/qmc_memory.py [--device cuda] [--repeats 3] [--batch 32] [--points 610 2584]``. The last
output line is one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import PeakMemory, benchmark_parser, median_seconds  # noqa: E402
from lvm.likelihoods import BernoulliLikelihood  # noqa: E402
from lvm.model import LatentVariableModel  # noqa: E402
from lvm.networks import ConvDecoder  # noqa: E402
from lvm.priors import TorusPrior  # noqa: E402
from lvm.objectives import QMCObjective  # noqa: E402

LATTICE_SIZES = (610, 2584)


def build(device: torch.device, num_points: int, chunked: bool, batch: int):
    """The vocalization config's model with a fixed lattice (same points in every step) and a batch."""
    torch.manual_seed(0)
    decoder = ConvDecoder(image_size=128, out_channels=1, channels=[64, 64, 32, 32, 16])
    objective = QMCObjective(num_points, points="qmc", chunk_size="auto" if chunked else None)
    model = LatentVariableModel(decoder, BernoulliLikelihood(), TorusPrior(2), objective).to(device)
    x = torch.bernoulli(torch.full((batch, 1, 128, 128), 0.2, device=device))
    return model, x


def step(model, x) -> None:
    model.zero_grad(set_to_none=True)
    model.objective(model, x)["loss"].backward()


def peak_mb_in_fresh_process(num_points: int, chunked: bool) -> float:
    """Peak extra memory of one step in a fresh process (memory the allocator kept from other steps cannot hide it)."""
    command = [sys.executable, __file__, *sys.argv[1:], "--memory-of", f"{num_points}:{int(chunked)}"]
    return float(subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])


def main() -> None:
    parser = benchmark_parser(__doc__, repeats=3, batch=32)
    parser.add_argument("--points", type=int, nargs=2, default=list(LATTICE_SIZES), metavar="M",
                        help="the two lattice sizes")
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)  # internal: "m:chunked" -> one step's peak MB
    args = parser.parse_args()
    sizes = tuple(args.points)
    device = torch.device(args.device)

    if args.memory_of:
        num_points, chunked = (int(part) for part in args.memory_of.split(":"))
        model, x = build(device, num_points, bool(chunked), args.batch)
        model.objective.points_per_chunk(model, model.flatten(x))  # the one-off measurement is not the step
        with PeakMemory(device) as peak:
            step(model, x)
        print(peak.bytes / 2**20)
        return

    figures = {}
    for num_points in sizes:
        for chunked, name in ((True, "chunked"), (False, "single")):
            figures[f"peak_mb_{name}_m{num_points}"] = round(peak_mb_in_fresh_process(num_points, chunked), 1)
            print(f"m = {num_points:5d}  {name:8s} peak {figures[f'peak_mb_{name}_m{num_points}']:9.1f} MB", flush=True)

    chunked_model, x = build(device, sizes[0], True, args.batch)
    single_model, _ = build(device, sizes[0], False, args.batch)
    figures[f"chunk_size_m{sizes[0]}"] = chunked_model.objective.points_per_chunk(chunked_model,
                                                                                  chunked_model.flatten(x))
    chunked_time = median_seconds(lambda: step(chunked_model, x), device, args.repeats)
    single_time = median_seconds(lambda: step(single_model, x), device, args.repeats)
    figures["chunked_over_single_time"] = round(chunked_time / single_time, 3)
    chunked_gradient = torch.cat([p.grad.flatten() for p in chunked_model.parameters()])
    single_gradient = torch.cat([p.grad.flatten() for p in single_model.parameters()])
    figures["gradient_rel_diff"] = ((chunked_gradient - single_gradient).norm() / single_gradient.norm()).item()
    reference_model = copy.deepcopy(single_model).double()
    step(reference_model, x.double())
    reference = torch.cat([p.grad.flatten() for p in reference_model.parameters()])
    for name, gradient in (("single", single_gradient), ("chunked", chunked_gradient)):
        figures[f"{name}_rel_error_vs_float64"] = ((gradient.double() - reference).norm() / reference.norm()).item()
    figures["device"] = str(device)
    print(f"chunked step {chunked_time:.2f} s, single pass {single_time:.2f} s at m = {sizes[0]}; "
          f"gradient relative difference {figures['gradient_rel_diff']:.2e} (float32 error against float64: single "
          f"{figures['single_rel_error_vs_float64']:.2e}, chunked {figures['chunked_rel_error_vs_float64']:.2e})")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
