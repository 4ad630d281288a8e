"""Cost of the sampling-free Taylor VAE step (sampling-free VAE paper, sections 3.2 and 4.5).

Measured side by side in one run (forward + backward, median of repeats), MNIST-sized data
(n = 784) and the ReLU MLP encoder/decoder (512, 256) of appendix B.2:

* Taylor step / sampling-VAE step (ELBO, 1 sample, same networks) for d in {2, 16, 64};
* Taylor step / its floor, the VAE step plus the m batched JVPs of the decoder Jacobian
  (forward + backward through them): what is left is the m x m Woodbury algebra;
* at d = 16: the whole Taylor step with the dense computation (Sigma_x = c I + U U^T built as
  n x n, Cholesky, solve) / the Woodbury Taylor step (target >= 50x), and the same ratio for the
  log-density alone.

Usage: ``python benchmarks/taylor_step.py [--device cuda] [--repeats 5] [--batch 64]``.
The last output line is one JSON object with all figures.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import benchmark_parser, median_seconds  # noqa: E402
from lvm.divergences import kl_divergence  # noqa: E402
from lvm.numerics.jacobians import forward_jacobian  # noqa: E402
from lvm.likelihoods import GaussianLikelihood  # noqa: E402
from lvm.numerics.gaussian import lowrank_gaussian_log_prob  # noqa: E402
from lvm.model import LatentVariableModel  # noqa: E402
from lvm.networks import MLPDecoder, MLPEncoder  # noqa: E402
from lvm.posteriors import DiagonalGaussianPosterior  # noqa: E402
from lvm.priors import StandardNormalPrior  # noqa: E402
from lvm.objectives import ELBO, TaylorELBO  # noqa: E402

C, GAMMA, N = 0.5, 0.5, 784



def dense_log_prob(residual: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """The slow way: Sigma = c I_n + U U^T as an n x n matrix per example."""
    n = residual.shape[-1]
    sigma = C * torch.eye(n, dtype=factor.dtype, device=factor.device) + factor @ factor.mT  # [b, n, n]
    cholesky = torch.linalg.cholesky(sigma)
    log_det = 2 * torch.log(torch.diagonal(cholesky, dim1=-2, dim2=-1)).sum(-1)
    solved = torch.cholesky_solve(residual.unsqueeze(-1), cholesky).squeeze(-1)  # Sigma^{-1} r
    quadratic = GAMMA * (residual * solved).sum(-1) + (1 - GAMMA) / C * residual.pow(2).sum(-1)
    return -0.5 * (n * math.log(2 * math.pi) + log_det + quadratic)


def build(latent_dim: int, objective, device):
    torch.manual_seed(0)
    model = LatentVariableModel(MLPDecoder([1, 28, 28], [256, 512]), GaussianLikelihood(C),
                                StandardNormalPrior(latent_dim), objective,
                                MLPEncoder(2 * latent_dim, [512, 256], activation="relu"),
                                DiagonalGaussianPosterior()).to(device)
    model.encoder(torch.zeros(1, 1, 28, 28, device=device))
    return model


def main() -> None:
    parser = benchmark_parser(__doc__, repeats=5, batch=64)
    args = parser.parse_args()
    device = torch.device(args.device)
    x = torch.rand(args.batch, 1, 28, 28, device=device)

    rows, figures = [], {"device": str(device), "batch": args.batch, "data_dim": N, "per_latent_dim": {}}
    for d in (2, 16, 64):
        taylor, vae = build(d, TaylorELBO(GAMMA), device), build(d, ELBO(1), device)

        def step(model):
            model.zero_grad(set_to_none=True)
            model.objective(model, x)["loss"].backward()

        def jacobian_only():
            taylor.zero_grad(set_to_none=True)
            mean, _ = taylor.posterior.mean_and_log_var(taylor.encode(x))
            _, jacobian = forward_jacobian(lambda z: taylor.likelihood.mean(taylor.decoder_params(z)), mean)
            jacobian.sum().backward()

        t_taylor = median_seconds(lambda: step(taylor), device, args.repeats)
        t_vae = median_seconds(lambda: step(vae), device, args.repeats)
        t_jvp = median_seconds(jacobian_only, device, args.repeats)
        entry = {"taylor_ms": t_taylor * 1e3, "vae_ms": t_vae * 1e3, "jvp_ms": t_jvp * 1e3,
                 "taylor_over_vae": t_taylor / t_vae, "taylor_over_floor": t_taylor / (t_vae + t_jvp)}
        figures["per_latent_dim"][str(d)] = entry
        rows.append((d, entry))

    # the whole step with the dense n x n log-density, d = 16
    taylor = build(16, TaylorELBO(GAMMA), device)

    def dense_taylor_step():
        taylor.zero_grad(set_to_none=True)
        params = taylor.encode(x)
        mean, log_var = taylor.posterior.mean_and_log_var(params)
        decoded, jacobian = forward_jacobian(lambda z: taylor.likelihood.mean(taylor.decoder_params(z)), mean)
        factor = jacobian * (0.5 * log_var).exp().unsqueeze(1)
        kl = kl_divergence(taylor.posterior, taylor.prior, params).sum(-1)
        elbo = dense_log_prob(decoded - taylor.flatten(x), factor) - kl
        (-elbo.mean()).backward()

    t_dense_step = median_seconds(dense_taylor_step, device, max(1, args.repeats // 2))
    figures.update(dense_step_ms=t_dense_step * 1e3,
                   dense_step_over_taylor_step=t_dense_step / figures["per_latent_dim"]["16"]["taylor_ms"] * 1e3)

    # the log-density alone: dense n x n against Woodbury on the same residual and factor, d = 16
    torch.manual_seed(0)
    residual = torch.randn(args.batch, N, device=device)
    factor = (0.1 * torch.randn(args.batch, N, 16, device=device)).requires_grad_()

    def loss_step(log_prob):
        factor.grad = None
        log_prob(residual, factor).sum().backward()

    t_woodbury = median_seconds(lambda: loss_step(lambda r, u: lowrank_gaussian_log_prob(r, u, C, GAMMA)), device, args.repeats)
    t_dense = median_seconds(lambda: loss_step(dense_log_prob), device, max(1, args.repeats // 2))
    figures.update(woodbury_ms=t_woodbury * 1e3, dense_ms=t_dense * 1e3, dense_over_woodbury=t_dense / t_woodbury)

    print(f"device={device}  batch={args.batch}  n={N}  ReLU MLP (512, 256); forward + backward")
    print(f"{'d':>4}{'Taylor (ms)':>14}{'VAE (ms)':>12}{'JVPs (ms)':>12}{'Taylor/VAE':>13}{'Taylor/floor':>15}")
    for d, e in rows:
        print(f"{d:>4}{e['taylor_ms']:>14.1f}{e['vae_ms']:>12.1f}{e['jvp_ms']:>12.1f}"
              f"{e['taylor_over_vae']:>13.2f}{e['taylor_over_floor']:>15.2f}")
    print(f"Taylor step at d=16 with the dense n x n log-density: {t_dense_step * 1e3:.1f} ms -> "
          f"{figures['dense_step_over_taylor_step']:.0f}x slower than Woodbury (target >= 50)")
    print(f"log-density alone at d=16: Woodbury {t_woodbury * 1e3:.2f} ms, dense n x n {t_dense * 1e3:.1f} ms -> "
          f"{figures['dense_over_woodbury']:.0f}x")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
