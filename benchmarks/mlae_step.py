"""Cost of the MLAE training step (MLAE paper, section 4.1: "about 1.5x to 2x the wall clock time
of our loss compared to reconstruction loss only, independent of the latent dimension").

Measured side by side in one run (forward + backward, median of repeats) on MNIST-sized data, for
d in {2, 16, 64}: the MLAE step (eq. 8, K = 1: one VJP through the encoder, one JVP through the
decoder, the double backward of the VJP) / the plain autoencoder step with the same networks
(beta |x_hat - x|^2 only). Target: <= 2x on this machine, roughly flat in d.

Networks (both by default): ``convnet``, the Pythae MNIST ConvNet of Table 7 (17M parameters; the
architecture the paper times), batch 32 on a CPU; and ``mlp``, ELU MLPs (512, 256), batch 100.

Usage: ``python benchmarks/mlae_step.py [--networks convnet mlp] [--device cuda] [--repeats 5] [--batch B]``.
The last output line is one JSON object with all figures.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import benchmark_parser, median_seconds  # noqa: E402
from lvm.likelihoods import GaussianLikelihood  # noqa: E402
from lvm.model import LatentVariableModel  # noqa: E402
from lvm.networks import MLPDecoder, MLPEncoder, PythaeConvDecoder, PythaeConvEncoder  # noqa: E402
from lvm.posteriors import PointMassPosterior  # noqa: E402
from lvm.priors import StandardNormalPrior  # noqa: E402
from lvm.objectives import MLAEObjective  # noqa: E402

BETA = 10.0


def build(network: str, latent_dim: int, device: torch.device) -> LatentVariableModel:
    torch.manual_seed(0)
    if network == "mlp":
        encoder = MLPEncoder(latent_dim, [512, 256], "elu")
        decoder = MLPDecoder([1, 28, 28], [256, 512], "elu")
    else:
        encoder, decoder = PythaeConvEncoder(latent_dim), PythaeConvDecoder()
    # MLAE's beta is the likelihood's: N(g(z), c I) with c = 1 / (2 beta)
    model = LatentVariableModel(decoder, GaussianLikelihood(1 / (2 * BETA)), StandardNormalPrior(latent_dim),
                                MLAEObjective(BETA), encoder, PointMassPosterior()).to(device)
    model.encoder(torch.zeros(1, 1, 28, 28, device=device))
    return model


def time_network(network: str, device: torch.device, batch: int, repeats: int) -> dict:
    """MLAE and plain autoencoder step times for d = 2, 16, 64 with one network family."""
    x = torch.rand(batch, 1, 28, 28, device=device)
    per_dim = {}
    for d in (2, 16, 64):
        model = build(network, d, device)

        def mlae_step():
            model.zero_grad(set_to_none=True)
            model.objective(model, x)["loss"].backward()

        def autoencoder_step():
            model.zero_grad(set_to_none=True)
            reconstruction = model.decoded_mean(model.latent_code(x)) - model.flatten(x)
            (BETA * reconstruction.pow(2).sum(-1).mean()).backward()

        t_mlae = median_seconds(mlae_step, device, repeats)
        t_ae = median_seconds(autoencoder_step, device, repeats)
        per_dim[str(d)] = {"mlae_ms": t_mlae * 1e3, "autoencoder_ms": t_ae * 1e3, "mlae_over_autoencoder": t_mlae / t_ae}
    ratios = [entry["mlae_over_autoencoder"] for entry in per_dim.values()]
    return {"batch": batch, "per_latent_dim": per_dim, "max_ratio": max(ratios), "ratio_spread": max(ratios) / min(ratios)}


def main() -> None:
    parser = benchmark_parser(__doc__, repeats=None, batch=None, repeats_help="default: 3 for convnet on a CPU, else 21",
                              batch_help="default: 100, or 32 for convnet on a CPU")
    parser.add_argument("--networks", nargs="+", choices=("convnet", "mlp"), default=["convnet", "mlp"])
    args = parser.parse_args()
    device = torch.device(args.device)
    figures = {"device": str(device), "data_dim": 784, "networks": {}}
    for network in args.networks:
        slow = network == "convnet" and device.type == "cpu"
        figures["networks"][network] = time_network(network, device, args.batch or (32 if slow else 100),
                                                    args.repeats or (3 if slow else 21))

    print(f"device={device}  D=784; forward + backward, median of repeats")
    print(f"{'network':<9}{'batch':>6}{'d':>4}{'MLAE (ms)':>12}{'AE (ms)':>10}{'MLAE/AE':>10}")
    for network, result in figures["networks"].items():
        for d, entry in result["per_latent_dim"].items():
            print(f"{network:<9}{result['batch']:>6}{d:>4}{entry['mlae_ms']:>12.1f}{entry['autoencoder_ms']:>10.1f}"
                  f"{entry['mlae_over_autoencoder']:>10.2f}")
        print(f"{network}: max MLAE/AE = {result['max_ratio']:.2f} (target <= 2); max/min over d = "
              f"{result['ratio_spread']:.2f} (flat in d: close to 1)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
