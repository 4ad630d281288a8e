"""Lattice quantization cost (lattice representation learning paper, sections 2 and 3.6).

Measured side by side in one run:

* throughput (vectors/s) of each nearest-point decoder (:mod:`lvm.numerics.quantizers`: rounding for Z^n, the
  coset decoders of A_2 and E_8) against the brute-force reference (the nearest of all lattice vectors
  within the covering distance of the query, by one distance matrix), on points near the origin so the
  reference is exact;
* the training-step time (forward + backward, median of repeats) of each lattice objective against a
  Gaussian VAE step (ELBO) with the same gated networks, D = 784, latent dimension 32, batch 100.

Usage: ``python benchmarks/lattice_quantize.py [--vectors 100000] [--repeats 11]``. The last output
line is one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import median_seconds  # noqa: E402
from lvm.likelihoods import BernoulliLikelihood  # noqa: E402
from lvm.model import LatentVariableModel  # noqa: E402
from lvm.networks import GatedDecoder, GatedEncoder  # noqa: E402
from lvm.posteriors import DiagonalGaussianPosterior, PointMassPosterior  # noqa: E402
from lvm.priors import GaussianProxyLatticePrior, LaplaceLatticePrior, StandardNormalPrior  # noqa: E402
from lvm.numerics.quantizers import E8Lattice, HexagonalLattice, IntegerLattice  # noqa: E402
from lvm.objectives import ELBO, DirectLatticeObjective, GaussianProxyLatticeObjective  # noqa: E402

LATENT = 32
LATTICES = {"Z": (IntegerLattice(1), 3), "Z2": (IntegerLattice(2), 3), "A2": (HexagonalLattice(), 3), "E8": (E8Lattice(), 6)}


def throughput(function, x: torch.Tensor) -> float:
    function(x[:10])  # warm-up
    start = time.perf_counter()
    function(x)
    return len(x) / (time.perf_counter() - start)


def brute_force(lattice, max_norm: int):
    candidates = lattice.short_vectors(max_norm).float()  # every point the nearest one can be
    return lambda x: candidates[torch.cdist(x, candidates).argmin(dim=1)]


def build(objective, prior, posterior) -> LatentVariableModel:
    torch.manual_seed(0)
    encoder = GatedEncoder(posterior.output_size(prior.dim), 300)
    model = LatentVariableModel(GatedDecoder([784], 300), BernoulliLikelihood(), prior, objective, encoder, posterior)
    model.encoder(torch.zeros(1, 784))
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    figures = {"decoders": {}, "step_ms": {}}
    for name, (lattice, max_norm) in LATTICES.items():
        x = torch.rand(args.vectors, lattice.dim) - 0.5
        fast, reference = throughput(lattice.nearest_point, x), throughput(brute_force(lattice, max_norm), x[:10_000])
        figures["decoders"][name] = {"vectors_per_s": fast, "brute_force_vectors_per_s": reference,
                                     "speedup": fast / reference}

    x = torch.bernoulli(torch.full((100, 784), 0.2))
    models = {"gaussian_vae": build(ELBO(), StandardNormalPrior(LATENT), DiagonalGaussianPosterior()),
              "Z_laplace": build(DirectLatticeObjective(), LaplaceLatticePrior(LATENT), PointMassPosterior()),
              **{name: build(GaussianProxyLatticeObjective(), GaussianProxyLatticePrior(LATENT, lattice=name),
                             PointMassPosterior()) for name in ("Z2", "A2", "E8")}}
    for name, model in models.items():
        def step(model=model):
            model.zero_grad(set_to_none=True)
            model.objective(model, x)["loss"].backward()
        figures["step_ms"][name] = median_seconds(step, torch.device("cpu"), args.repeats) * 1e3
    vae = figures["step_ms"]["gaussian_vae"]
    figures["step_over_vae"] = {k: v / vae for k, v in figures["step_ms"].items() if k != "gaussian_vae"}

    print(f"{'lattice':<8}{'decoder (vec/s)':>18}{'brute force (vec/s)':>22}{'speed-up':>10}")
    for name, entry in figures["decoders"].items():
        print(f"{name:<8}{entry['vectors_per_s']:>18.3g}{entry['brute_force_vectors_per_s']:>22.3g}{entry['speedup']:>10.0f}")
    print(f"\n{'training step':<14}{'time (ms)':>10}{'/ VAE':>8}   (D=784, d=32, batch 100, gated nets)")
    for name, value in figures["step_ms"].items():
        print(f"{name:<14}{value:>10.1f}{value / vae:>8.2f}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
