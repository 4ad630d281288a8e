"""Posterior analysis plots of a 2-D or 3-D model at the end of testing (QLVM paper, Figs. 5, A5)."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only

from lvm.analysis import aggregated_posterior, density_geodesic, jacobian_frobenius_norm, weighted_mean_shift
from lvm.plots import plot_image_grid, plot_latent_field

from .figures import save_and_log

__all__ = ["PosteriorPlots"]


class PosteriorPlots(L.Callback):
    """Writes (and logs to W&B) from the test set:

    * ``aggregated_posterior.png``: E_x[p(z | x)] over the evaluation lattice with the mean-shift modes
      (Fig. 5B/F);
    * ``jacobian_norm.png``: log |d f / d z|_F over the lattice, modes overlaid (Fig. 5D/H);
    * ``geodesic.png``: the density-ratio geodesic between the two densest modes (Fig. A5);
    * for image data, ``mode_reconstructions.png`` and ``geodesic_reconstructions.png``: the decoded
      modes (Fig. 5C/G) and the decoded points along the geodesic.

    The analyses are the plain functions of :mod:`lvm.analysis`; this callback only runs them on rank 0.

    Args:
        num_points: lattice size (``None``: the model's evaluation default).
        bandwidth: mean-shift bandwidth (in latent units; the torus has side 1).
        geodesic_points: decoded points shown along the geodesic.
        max_batches: test batches used for the aggregated posterior (``None``: all).
    """

    def __init__(self, num_points: int | None = None, bandwidth: float = 0.1, geodesic_points: int = 10,
                 max_batches: int | None = None):
        self.num_points, self.bandwidth = num_points, bandwidth
        self.geodesic_points, self.max_batches = geodesic_points, max_batches

    @rank_zero_only
    def on_test_end(self, trainer, pl_module):
        if pl_module.latent.dim not in (2, 3):
            return
        batches = [b for i, b in zip(range(self.max_batches or 10**9), trainer.datamodule.test_dataloader())]
        points, density = aggregated_posterior(pl_module, batches, self.num_points)
        cube = points.cpu()
        periodic = pl_module.latent.periodic
        modes, _ = weighted_mean_shift(cube, density.cpu(), self.bandwidth, periodic)
        norms = jacobian_frobenius_norm(pl_module, points).cpu()
        spacing = (1.0 / len(cube)) ** (1 / cube.shape[1])
        figures = {
            "aggregated_posterior": plot_latent_field(cube.numpy(), density.cpu().numpy(), "Aggregated posterior and modes",
                                                      modes.numpy(), periodic=periodic),
            "jacobian_norm": plot_latent_field(cube.numpy(), norms.numpy(), "log |df/dz|_F", modes.numpy(),
                                               periodic=periodic, log=True),
        }
        path = None
        if len(modes) >= 2:
            path = density_geodesic(cube, density.cpu(), modes[0], modes[1], radius=2.5 * spacing, periodic=periodic)
            figures["geodesic"] = plot_latent_field(cube.numpy(), density.cpu().numpy(), "Density-ratio geodesic",
                                                    modes[:2].numpy(), path.numpy(), periodic=periodic)
        decoded_modes = pl_module.decode(modes.to(pl_module.device, pl_module.dtype))
        if decoded_modes.dim() == 4:  # images
            figures["mode_reconstructions"] = plot_image_grid(decoded_modes, max(1, int(len(modes) ** 0.5 + 0.999)),
                                                              "Decoded modes")
            if path is not None:
                along = path[torch.linspace(0, len(path) - 1, self.geodesic_points).round().long()]
                figures["geodesic_reconstructions"] = plot_image_grid(
                    pl_module.decode(along.to(pl_module.device, pl_module.dtype)), self.geodesic_points,
                    "Decoded geodesic")
        save_and_log(trainer, figures)
