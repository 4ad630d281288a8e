"""The QMC training step with each likelihood for a scientist's own data / the Bernoulli step on the same decoder.

Every likelihood's pairwise ``[b, m]`` table is one or two matrix products plus row and column terms
(:mod:`lvm.likelihoods`), so eq. 5 of the QLVM paper should cost about the same whatever the likelihood. For b = 128
examples, m = 2584 lattice points and D = 784 values (the MNIST MLP decoder, 256-512), forward + backward through
``QMCObjective``, median of repeats, measured side by side in one run:

* Poisson (log-rate output), negative binomial (dispersion learned per feature), Gaussian with a learned variance
  per feature and the fixed-variance Gaussian, each / Bernoulli (target <= 1.2); the steps take turns, median of
  the rounds.

Usage: ``python benchmarks/likelihood_step.py [--device cuda] [--repeats 5]``. The last output line is one JSON
object with all figures.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import benchmark_parser, median_seconds  # noqa: E402
from lvm.likelihoods import (BernoulliLikelihood, GaussianLikelihood, NegativeBinomialLikelihood,  # noqa: E402
                             PoissonLikelihood)
from lvm.model import LatentVariableModel  # noqa: E402
from lvm.networks import MLPDecoder  # noqa: E402
from lvm.objectives import QMCObjective  # noqa: E402
from lvm.priors import TorusPrior  # noqa: E402

LIKELIHOODS = {
    "bernoulli": lambda: BernoulliLikelihood(),
    "poisson": lambda: PoissonLikelihood(),
    "negative_binomial": lambda: NegativeBinomialLikelihood(),
    "gaussian_learned_variance": lambda: GaussianLikelihood(1.0, "identity", "per_feature"),
    "gaussian_fixed_variance": lambda: GaussianLikelihood(0.1, "identity"),
}


def build_steps(device: torch.device, b: int, m: int) -> dict:
    """One QMC training step per likelihood, each on its own copy of the same decoder (same initial weights)."""
    torch.manual_seed(0)
    decoder = MLPDecoder([1, 28, 28], [256, 512])
    decoder(torch.zeros(1, 4))  # materialise the lazy first layer, so every copy starts from these weights
    counts = torch.poisson(torch.full((b, 1, 28, 28), 2.0, device=device))
    steps = {}
    for name, make in LIKELIHOODS.items():
        copy = MLPDecoder([1, 28, 28], [256, 512])
        copy(torch.zeros(1, 4))
        copy.load_state_dict(decoder.state_dict())
        model = LatentVariableModel(copy, make(), TorusPrior(2), QMCObjective(m, chunk_size=None)).to(device)
        x = (counts > 1).float() if name == "bernoulli" else counts

        def step(model=model, x=x):
            model.zero_grad(set_to_none=True)
            model.objective(model, x)["loss"].backward()

        steps[name] = step
    return steps


def main() -> None:
    parser = benchmark_parser(__doc__, repeats=5, batch=128)
    parser.add_argument("--points", type=int, default=2584)
    args = parser.parse_args()
    device, b, m = torch.device(args.device), args.batch, args.points
    steps = build_steps(device, b, m)
    for step in steps.values():  # warm up every step before timing any
        step()
    rounds = {name: [] for name in steps}  # round-robin, so that a slow spell of the machine hits every step alike
    for _ in range(args.repeats):
        for name, step in steps.items():
            rounds[name].append(median_seconds(step, device, 3))
    seconds = {name: sorted(values)[len(values) // 2] for name, values in rounds.items()}
    base = seconds["bernoulli"]
    print(f"device={device}  b={b}  m={m}  D=784  MLP decoder (256, 512)")
    for name, value in seconds.items():
        print(f"{name:<28}{value * 1e3:>10.1f} ms  {value / base:>5.2f} x Bernoulli")
    figures = {"device": str(device), "batch": b, "points": m, "data_dim": 784,
               "time_ms": {name: round(value * 1e3, 3) for name, value in seconds.items()},
               **{f"{name}_over_bernoulli": value / base for name, value in seconds.items() if name != "bernoulli"},
               "target": 1.2}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
