"""The cost of conditioning a QMC step on covariates (issue 28; :mod:`lvm.covariates`).

A conditional decoder ``params(z, c) = f(z) (1 + gain(c)) + offset(c)`` keeps the lattice decoded once per step: the
examples are grouped by covariate row and each row modulates the lattice's outputs, so a step should cost about what
the unconditional one does (target: conditional / unconditional <= 2). Measured side by side in one run (forward +
backward of ``QMCObjective``, median of repeats), b = 128 examples, m = 2584 lattice points, the MNIST MLP decoder
(256, 512) and Bernoulli likelihood on 28 x 28 images (``--data mocap``: the mocap config's MLP decoder (256, 512)
and Gaussian likelihood on 10 x 97 windows):

* ``discrete``: one discrete covariate with 8 values, all present in the batch (the examples cycle through them);
* ``continuous``: one continuous covariate (uniform values, ``--levels`` quantisation levels, default the library's
  32), so up to min(b, levels) rows per batch;
* ``both``: the two together.

Usage: ``python benchmarks/conditional_qmc.py [--device cuda] [--repeats 5] [--points 2584] [--data mnist|mocap]
[--levels 32]``. The last output line is one JSON object with all figures.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import benchmark_parser, median_seconds  # noqa: E402
from lvm.likelihoods import BernoulliLikelihood, GaussianLikelihood  # noqa: E402
from lvm.model import LatentVariableModel  # noqa: E402
from lvm.networks import MLPDecoder  # noqa: E402
from lvm.objectives import QMCObjective  # noqa: E402
from lvm.priors import TorusPrior  # noqa: E402

DATA = {"mnist": ((1, 28, 28), BernoulliLikelihood), "mocap": ((10, 97), lambda: GaussianLikelihood(0.1, "identity"))}


def _model(shape, likelihood, m: int, covariates=None) -> LatentVariableModel:
    torch.manual_seed(0)
    return LatentVariableModel(MLPDecoder(list(shape), [256, 512]), likelihood(), TorusPrior(2), QMCObjective(m),
                               covariates=covariates, covariate_warmup_steps=0)


def main() -> None:
    parser = benchmark_parser(__doc__, repeats=5, batch=128)
    parser.add_argument("--points", type=int, default=2584)
    parser.add_argument("--data", choices=tuple(DATA), default="mnist")
    parser.add_argument("--levels", type=int, default=32)
    args = parser.parse_args()
    device, b, m = torch.device(args.device), args.batch, args.points
    shape, likelihood = DATA[args.data]
    rng = np.random.default_rng(0)
    columns = {"animal": np.array([f"animal{k}" for k in range(8)])[np.arange(b) % 8],
               "duration": rng.uniform(0.05, 0.5, b)}
    specs = {"discrete": [{"key": "animal", "kind": "discrete"}],
             "continuous": [{"key": "duration", "kind": "continuous", "levels": args.levels}],
             "both": [{"key": "animal", "kind": "discrete"},
                      {"key": "duration", "kind": "continuous", "levels": args.levels}]}
    x = (torch.rand(b, *shape) < 0.15).float() if args.data == "mnist" else torch.randn(b, *shape)
    x = x.to(device)
    models = {"unconditional": _model(shape, likelihood, m).to(device)}
    codes, rows = {}, {}
    for name, spec in specs.items():
        model = _model(shape, likelihood, m, spec)
        model.covariates.fit(columns)
        with torch.no_grad():  # rows that differ, as after training
            for parameter in model.covariates.parameters():
                parameter.normal_(0, 0.1)
        models[name] = model.to(device)
        codes[name] = model.covariates.encode(columns).to(device)
        rows[name] = len(model.covariates.rows(codes[name])[0])

    def step(name):
        model = models[name]

        def run():
            model.zero_grad(set_to_none=True)
            with model.given(codes.get(name)):
                model.objective(model, x)["loss"].backward()
        return run

    seconds = {name: median_seconds(step(name), device, args.repeats) for name in models}
    print(f"device={device}  b={b}  m={m}  data={args.data} {list(shape)}  levels={args.levels}")
    print(f"{'step':<16}{'rows':>6}{'time (ms)':>12}{'/ unconditional':>18}")
    for name, value in seconds.items():
        print(f"{name:<16}{rows.get(name, 1):>6}{value * 1e3:>12.1f}{value / seconds['unconditional']:>18.2f}")
    figures = {"device": str(device), "batch": b, "points": m, "data": args.data, "levels": args.levels,
               "rows_per_batch": rows, "time_ms": {k: round(v * 1e3, 3) for k, v in seconds.items()},
               **{f"{name}_over_unconditional": seconds[name] / seconds["unconditional"] for name in specs}}
    print("targets: discrete and continuous <= 2x the unconditional step")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
