"""Cost of the R-VAE (R-VAE paper, appendix C.3: an R-VAE epoch takes 5.2x a VAE epoch; target <= 3x).

Measured side by side in one run (forward + backward, median of repeats) on MNIST-sized data
(D = 784, batch 100) with d = 2 and the networks of Tables 4-5 (ELU MLPs (300, 300), an RBF precision
network with 350 centres):

* the R-VAE step in its autoencoder phase and in its prior phase, and the VAE step (ELBO, same
  decoder, standard normal prior, its first phase), each training only what its phase trains
  (appendix C.1, :class:`lvm.callbacks.TwoPhaseTraining`); the epoch ratio of the paper's schedule,
  (100 autoencoder epochs + 200 prior epochs) / 300 VAE epochs, at equal steps per epoch;
* geodesic solves per second: batched cubic-spline geodesics (:func:`lvm.numerics.geometry.geodesic`, 6 nodes,
  32 points, up to 20 L-BFGS iterations) between random pairs of latent points under the R-VAE metric.

Usage: ``python benchmarks/rvae_epoch.py [--device cuda] [--repeats 11] [--pairs 64]``.
The last output line is one JSON object with all figures.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import benchmark_parser, median_seconds  # noqa: E402
from lvm.numerics.geometry import geodesic  # noqa: E402
from lvm.likelihoods import HeteroscedasticGaussianLikelihood  # noqa: E402
from lvm.model import LatentVariableModel  # noqa: E402
from lvm.networks import MeanPrecisionDecoder, MLPDecoder, MLPEncoder, RBFPrecision  # noqa: E402
from lvm.posteriors import BrownianStepPosterior, DiagonalGaussianPosterior  # noqa: E402
from lvm.priors import BrownianMotionPrior, StandardNormalPrior  # noqa: E402
from lvm.objectives import ELBO, RiemannianELBO  # noqa: E402

LATENT, D, SWITCH, TOTAL = 2, 784, 100, 300


def build(objective, prior, posterior, device: torch.device) -> LatentVariableModel:
    torch.manual_seed(0)
    decoder = MeanPrecisionDecoder(MLPDecoder([D], [300, 300], "elu"), RBFPrecision(LATENT, D, 350, 0.01))
    encoder = MLPEncoder(posterior.output_size(LATENT), [300, 300], "elu")
    model = LatentVariableModel(decoder, HeteroscedasticGaussianLikelihood(), prior, objective, encoder,
                                posterior).to(device)
    model.encoder(torch.zeros(1, D, device=device))
    return model


def main() -> None:
    parser = benchmark_parser(__doc__, repeats=11, batch=100)
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--curve-points", type=int, default=BrownianMotionPrior().curve_points,
                        help="points on each prior curve (the prior's curve_points)")
    args = parser.parse_args()
    device = torch.device(args.device)
    x = torch.rand(args.batch, D, device=device)
    rvae = build(RiemannianELBO(), BrownianMotionPrior(LATENT, curve_points=args.curve_points), BrownianStepPosterior(),
                 device)
    vae = build(ELBO(), StandardNormalPrior(LATENT), DiagonalGaussianPosterior(), device)
    rvae.decoder.precision.fit_centres(torch.randn(2000, LATENT))

    def step(model):
        model.zero_grad(set_to_none=True)
        model.objective(model, x)["loss"].backward()

    def train_only(model, *modules):  # what lvm.callbacks.TwoPhaseTraining does at each phase
        model.requires_grad_(False)
        for module in modules:
            module.requires_grad_(True)

    train_only(vae, vae.encoder, vae.decoder.mean)
    t_vae = median_seconds(lambda: step(vae), device, args.repeats)
    train_only(rvae, rvae.encoder, rvae.decoder.mean)
    t_autoencoder = median_seconds(lambda: step(rvae), device, args.repeats)
    rvae.prior.placed.fill_(True)
    train_only(rvae, rvae.decoder.precision, rvae.prior)
    t_prior = median_seconds(lambda: step(rvae), device, args.repeats)
    epoch_ratio = (SWITCH * t_autoencoder + (TOTAL - SWITCH) * t_prior) / (TOTAL * t_vae)

    immersion = rvae.immersion()
    z0, z1 = 2 * torch.randn(args.pairs, LATENT, device=device), 2 * torch.randn(args.pairs, LATENT, device=device)
    geodesic(immersion, z0[:2], z1[:2], steps=2)  # warm-up
    start = time.perf_counter()
    curves = geodesic(immersion, z0, z1, steps=20)
    t_geodesic = time.perf_counter() - start
    straight = geodesic(immersion, z0, z1, steps=0)

    figures = {
        "device": str(device), "batch": args.batch, "data_dim": D, "latent_dim": LATENT, "curve_points": args.curve_points,
        "step_ms": {"vae": t_vae * 1e3, "rvae_autoencoder_phase": t_autoencoder * 1e3, "rvae_prior_phase": t_prior * 1e3},
        "prior_phase_over_vae": t_prior / t_vae, "epoch_ratio_paper_schedule": epoch_ratio,
        "geodesic_pairs": args.pairs, "geodesic_solves_per_s": args.pairs / t_geodesic,
        "geodesic_length_over_straight": (curves.length / straight.length).mean().item(),
    }
    print(f"device={device}  batch={args.batch}  D={D}  d={LATENT}; forward + backward, median of {args.repeats}")
    print(f"{'step':<26}{'time (ms)':>12}")
    for name, value in figures["step_ms"].items():
        print(f"{name:<26}{value:>12.1f}")
    print(f"R-VAE prior phase / VAE: {figures['prior_phase_over_vae']:.2f}x per step")
    print(f"R-VAE / VAE epoch time over the paper's schedule ({SWITCH} + {TOTAL - SWITCH} epochs): {epoch_ratio:.2f}x "
          "(paper 5.2x; target <= 3)")
    print(f"geodesics: {figures['geodesic_solves_per_s']:.1f} solves/s ({args.pairs} pairs batched, <= 20 L-BFGS "
          f"iterations), mean length / straight-line length {figures['geodesic_length_over_straight']:.3f}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
