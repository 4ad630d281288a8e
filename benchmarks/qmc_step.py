"""QMC training-step cost (QLVM paper, sections 2.2-2.3 and 3.2).

For b = 128 images, m = 2584 lattice points, D = 784 and the MNIST MLP decoder, measured side
by side in one run (forward + backward, median of repeats):

* the QMC step (eq. 5 through ``QMCObjective``) / a decoder-only pass over the same m points
  (target <= 1.3: the [b, m] likelihood table is one matmul, so eq. 5 costs little beyond decoding);
* the naive broadcast implementation (a [b, m, D] tensor) / the QMC step, in time and peak memory
  (target >= 20x faster);
* an IWAE step with the same number of decoder evaluations per batch (k = m / b samples per
  example) / the QMC step.

``--data spectrogram`` times the same steps on 128 x 128 spectrogram-sized data (D = 16384) with the conv decoder of
``configs/qlvm_vocalizations.yaml``; ``--no-naive`` leaves out the naive step (its [b, m, D] tensor is 22 GB at
b = 128, m = 2584 on spectrograms); ``--precision bf16-mixed`` runs every step under bfloat16 autocast (the
``[b, m]`` table stays in float32, :meth:`lvm.model.LatentVariableModel.pairwise_from_params`).

Usage: ``python benchmarks/qmc_step.py [--device cuda] [--repeats 5] [--points 2584] [--data mnist|spectrogram]
[--no-naive] [--precision 32|bf16-mixed]``. The last output line is one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import PeakMemory, benchmark_parser, median_seconds  # noqa: E402
from lvm.numerics.lattices import PointSet  # noqa: E402
from lvm.likelihoods import BernoulliLikelihood  # noqa: E402
from lvm.model import LatentVariableModel  # noqa: E402
from lvm.networks import ConvDecoder, MLPDecoder, MLPEncoder  # noqa: E402
from lvm.posteriors import DiagonalGaussianPosterior  # noqa: E402
from lvm.priors import StandardNormalPrior, TorusPrior  # noqa: E402
from lvm.numerics.logspace import log_mean_exp  # noqa: E402
from lvm.objectives import IWAE, QMCObjective  # noqa: E402


DATA = {  # data shape and decoder: MNIST's MLP decoder (Fig. A2), the vocalization config's conv decoder
    "mnist": ((1, 28, 28), lambda: MLPDecoder([1, 28, 28], [256, 512]), "MLP decoder (256, 512)"),
    "spectrogram": ((1, 128, 128), lambda: ConvDecoder(image_size=128, out_channels=1, channels=[64, 64, 32, 32, 16]),
                    "conv decoder (64, 64, 32, 32, 16)"),
}


def _peak_bytes_in_fresh_process(name: str) -> int:
    """Peak extra memory of one ``name`` step, measured in a fresh process so that memory
    freed by other steps (kept by the CPU allocator) cannot hide it."""
    command = [sys.executable, __file__, *sys.argv[1:], "--memory-of", name]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return int(output.strip().splitlines()[-1])


def build_steps(device: torch.device, b: int, m: int, data: str = "mnist", naive: bool = True,
                precision: str = "32") -> tuple[dict, int]:
    """The steps to compare (the naive one where ``naive``), as closures over models on ``device``, and the IWAE k."""
    torch.manual_seed(0)
    shape, make_decoder, _ = DATA[data]
    qmc = LatentVariableModel(make_decoder(), BernoulliLikelihood(), TorusPrior(2), QMCObjective(m)).to(device)
    iwae = LatentVariableModel(make_decoder(), BernoulliLikelihood(), StandardNormalPrior(2),
                               IWAE(num_samples=max(1, round(m / b))), MLPEncoder(4, [512, 256]),
                               DiagonalGaussianPosterior()).to(device)
    # the QMC objective's points (same size, dimension and kind) for the steps that decode them by hand
    point_set = PointSet(qmc.objective.num_points, qmc.prior.dim, qmc.objective.points)
    x = torch.bernoulli(torch.full((b, *shape), 0.15, device=device))
    iwae.encoder(x)  # materialise the lazy first layer
    x_flat = x.flatten(1)

    def decoder_only():
        z = qmc.prior.from_unit_cube(point_set.draw().to(device, torch.float32))
        qmc.zero_grad(set_to_none=True)
        qmc.decoder_params(z).sum().backward()

    def qmc_step():
        qmc.zero_grad(set_to_none=True)
        qmc.objective(qmc, x)["loss"].backward()

    def naive_step():
        z = qmc.prior.from_unit_cube(point_set.draw().to(device, torch.float32))
        qmc.zero_grad(set_to_none=True)
        log_p = qmc.likelihood.log_prob(x_flat[:, None, :], qmc.decoder_params(z)[None])  # [b, m] via [b, m, D]
        (-log_mean_exp(log_p, dim=1).mean()).backward()

    def iwae_step():
        iwae.zero_grad(set_to_none=True)
        iwae.objective(iwae, x)["loss"].backward()

    steps = {"decoder_only": decoder_only, "qmc": qmc_step, "naive_broadcast": naive_step, "iwae": iwae_step}
    if not naive:
        del steps["naive_broadcast"]
    if precision == "bf16-mixed":
        steps = {name: _autocast(step, device) for name, step in steps.items()}
    return steps, iwae.objective.num_samples


def _autocast(step, device: torch.device):
    """``step`` under bfloat16 autocast (what ``trainer.precision: bf16-mixed`` does to a training step)."""
    def wrapped():
        with torch.autocast(device.type, dtype=torch.bfloat16):
            step()
    return wrapped


def main() -> None:
    parser = benchmark_parser(__doc__, repeats=5, batch=128)
    parser.add_argument("--points", type=int, default=2584)
    parser.add_argument("--data", choices=tuple(DATA), default="mnist",
                        help="MNIST-sized (1 x 28 x 28, MLP decoder) or spectrogram-sized (128 x 128, conv decoder)")
    parser.add_argument("--no-naive", action="store_true", help="leave out the naive [b, m, D] step")
    parser.add_argument("--precision", choices=("32", "bf16-mixed"), default="32")
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)  # internal: one step's peak memory
    args = parser.parse_args()
    device, b, m = torch.device(args.device), args.batch, args.points
    steps, k = build_steps(device, b, m, args.data, not args.no_naive, args.precision)
    shape, _, decoder_name = DATA[args.data]
    data_dim = shape[0] * shape[1] * shape[2]
    if args.memory_of:
        with PeakMemory(device) as peak:
            steps[args.memory_of]()
        print(peak.bytes)
        return

    results = {name: (median_seconds(step, device, args.repeats), _peak_bytes_in_fresh_process(name))
               for name, step in steps.items()}
    print(f"device={device}  b={b}  m={m}  D={data_dim}  {decoder_name}; IWAE k={k}"
          + (f"; {args.precision}" if args.precision != "32" else ""))
    print(f"{'step':<18}{'time (ms)':>12}{'peak memory (MB)':>20}")
    for name, (seconds, peak) in results.items():
        print(f"{name:<18}{seconds * 1e3:>12.1f}{peak / 2**20:>20.1f}")
    qmc_time, qmc_mem = results["qmc"]
    figures = {
        "device": str(device), "batch": b, "points": m, "data_dim": data_dim,
        **({"data": args.data} if args.data != "mnist" else {}),
        **({"precision": args.precision} if args.precision != "32" else {}),
        "time_ms": {k: round(v[0] * 1e3, 3) for k, v in results.items()},
        "peak_memory_mb": {k: round(v[1] / 2**20, 2) for k, v in results.items()},
        "qmc_over_decoder_only": qmc_time / results["decoder_only"][0],
    }
    if "naive_broadcast" in results:
        figures.update(naive_over_qmc_time=results["naive_broadcast"][0] / qmc_time,
                       naive_over_qmc_memory=results["naive_broadcast"][1] / max(qmc_mem, 1))
    figures["iwae_over_qmc_time"] = results["iwae"][0] / qmc_time
    print(f"QMC step / decoder-only: {figures['qmc_over_decoder_only']:.2f} (target <= 1.3)")
    if "naive_broadcast" in results:
        print(f"naive / QMC: {figures['naive_over_qmc_time']:.1f}x time (target >= 20), "
              f"{figures['naive_over_qmc_memory']:.1f}x peak memory")
    print(f"IWAE (same decoder evaluations) / QMC: {figures['iwae_over_qmc_time']:.2f}x time")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
