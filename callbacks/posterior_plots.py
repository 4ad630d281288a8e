"""Posterior analysis plots of a 2-D or 3-D model at the end of testing (QLVM paper, Figs. 5, A5)."""

from __future__ import annotations

from itertools import islice

import lightning as L
import torch
from rich.progress import track
from lightning.pytorch.utilities import rank_zero_only

from lightning.pytorch.loggers import WandbLogger

from lvm.analysis import (aggregated_posterior, density_at, density_geodesic, is_flat, jacobian_frobenius_norm,
                          weighted_mean_shift)
from lvm.plots import plot_image_grid, plot_latent_field, plot_posterior_comparison
from lvm.batches import batch_data
from lvm.posteriors import DiagonalGaussianPosterior
from lvm.priors import InvertiblePrior

from .figures import Figures, save_and_log, write_metrics_first

__all__ = ["PosteriorPlots"]


class PosteriorPlots(L.Callback):
    """Writes (and logs to W&B) from the test set:

    * ``aggregated_posterior.png``: E_x[p(z | x)] over the evaluation lattice with the mean-shift modes
      (Fig. 5B/F);
    * ``jacobian_norm.png``: log |d f / d z|_F over the lattice, modes overlaid (Fig. 5D/H);
    * ``geodesic.png``: the density-ratio geodesic between the two densest modes (Fig. A5);
    * for image data, ``mode_reconstructions.png`` and ``geodesic_reconstructions.png``: the decoded
      modes (Fig. 5C/G) and the decoded points along the geodesic; ``samples.png`` and
      ``reconstructions.png`` (test images above their reconstructions decode(embed(x)); Fig. 2B/C);
    * for models with a Gaussian encoder and a 2-D latent, ``posterior_comparison.png``: the empirical
      posterior on the dense lattice against the variational 3-sigma ellipse (Fig. 3B).

    On W&B the modes are also logged as a table of prototypes (coordinates, density, decoded image).

    ``metrics.json`` is written first. Each figure is its own step: one that fails, or has nothing to show
    (a flat aggregated posterior has no modes, hence no geodesic), is skipped with a warning
    ``"PosteriorPlots: <figure> skipped: <reason>"`` and the others are still written.

    The analyses are the plain functions of :mod:`lvm.analysis`; this callback only runs them on rank 0.

    Args:
        num_points: lattice size (``None``: the model's evaluation default).
        bandwidth: mean-shift bandwidth (in latent units; the torus has side 1).
        geodesic_points: decoded points shown along the geodesic.
        max_batches: test batches used for the aggregated posterior (``None``: all).
        per_side: images per side of the sample and reconstruction grids.
    """

    def __init__(self, num_points: int | None = None, bandwidth: float = 0.1, geodesic_points: int = 10,
                 max_batches: int | None = None, per_side: int = 6):
        self.num_points, self.bandwidth = num_points, bandwidth
        self.geodesic_points, self.max_batches, self.per_side = geodesic_points, max_batches, per_side

    @rank_zero_only
    def on_test_end(self, trainer, pl_module):
        write_metrics_first(trainer)  # the test metrics are on disk before any analysis runs
        if pl_module.prior.dim not in (2, 3) or not isinstance(pl_module.prior, InvertiblePrior):
            return  # the analyses live on the unit-cube lattice
        figures = Figures(type(self).__name__)
        figures.run("posterior analysis", self._analyse, trainer, pl_module, figures)  # whatever the steps left out
        save_and_log(trainer, figures)

    def _analyse(self, trainer, pl_module, figures: Figures) -> None:
        """Each figure in its own guarded step (:class:`callbacks.figures.Figures`): one failing, or skipped for
        want of what it shows (no modes), leaves the others standing."""
        loader = trainer.datamodule.test_dataloader()
        batches = list(track(islice(loader, self.max_batches), description="Posterior plots: test batches",
                             disable=not trainer.progress_bar_callback))
        x = batch_data(batches[0])
        images = x.dim() == 4
        axes = getattr(trainer.datamodule, "image_axes", None)  # spectrograms: kHz and ms, low rows at the bottom
        if images:
            x = x[: self.per_side**2].to(pl_module.device)
            figures.draw("samples", lambda: plot_image_grid(pl_module.sample(self.per_side**2), self.per_side,
                                                            "Samples", axes))
            figures.draw("reconstructions", lambda: plot_image_grid(  # each image above its reconstruction
                torch.stack([x, pl_module.decode(pl_module.embed(x))], dim=1).flatten(0, 1), 2 * self.per_side,
                "Test images and reconstructions", axes))
        if pl_module.prior.dim == 2 and isinstance(pl_module.posterior, DiagonalGaussianPosterior):
            figures.draw("posterior_comparison", self._posterior_comparison, pl_module, batch_data(batches[0])[:4])
        aggregated = figures.run("aggregated posterior", aggregated_posterior, pl_module, batches, self.num_points)
        if aggregated is None:
            for name in ("aggregated_posterior", "jacobian_norm", "geodesic") + ("mode_reconstructions",) * images:
                figures.skip(name, "it needs the aggregated posterior, which failed")
            return
        points, density = aggregated  # latent values [m, d], [m]
        density = density.cpu()
        # mean-shift and the graph work on the lattice in the unit cube, where every point has equal volume
        # (the torus wraps); modes and paths are mapped back to latent values
        cube = pl_module.lattice_points(self.num_points)
        periodic = pl_module.prior.periodic
        to_latent = lambda c: pl_module.prior.from_unit_cube(c).cpu()  # noqa: E731
        found = figures.run("mean-shift modes", weighted_mean_shift, cube, density, self.bandwidth, periodic)
        modes_cube = found[0] if found is not None else cube[:0]
        modes = to_latent(modes_cube)
        latent = points.cpu().numpy()
        figures.draw("aggregated_posterior", plot_latent_field, latent, density.numpy(),
                     "Aggregated posterior and modes", modes.numpy(), periodic=periodic)
        figures.draw("jacobian_norm", lambda: plot_latent_field(
            latent, jacobian_frobenius_norm(pl_module, points).cpu().numpy(), "log |df/dz|_F", modes.numpy(),
            periodic=periodic, log=True))
        path = None
        if len(modes) >= 2:
            spacing = (1.0 / len(cube)) ** (1 / cube.shape[1])
            path = figures.run("geodesic", lambda: to_latent(
                density_geodesic(cube, density, modes_cube[0], modes_cube[1], 2.5 * spacing, periodic)))
            if path is not None:
                figures.draw("geodesic", plot_latent_field, latent, density.numpy(), "Density-ratio geodesic",
                             modes[:2].numpy(), path.numpy(), periodic=periodic)
        else:
            flat = " (the aggregated posterior is flat, as when the decoder ignores z)" if is_flat(density) else ""
            why = ("the mean-shift modes failed" if found is None else
                   f"mean-shift (bandwidth {self.bandwidth:g}) found {len(modes)} mode{'s' * (len(modes) != 1)}{flat}")
            figures.skip("geodesic", f"it joins the two densest modes, and {why}")
            if images and len(modes) == 0:
                figures.skip("mode_reconstructions", f"there are no modes to decode: {why}")
        if not images or len(modes) == 0:
            return
        decoded_modes = figures.run("decoded modes", pl_module.decode, modes.to(pl_module.device, pl_module.dtype))
        if decoded_modes is None:
            return
        figures.draw("mode_reconstructions", plot_image_grid, decoded_modes, max(1, int(len(modes) ** 0.5 + 0.999)),
                     "Decoded modes", axes)
        if path is not None:
            along = path[torch.linspace(0, len(path) - 1, self.geodesic_points).round().long()]
            figures.draw("geodesic_reconstructions", lambda: plot_image_grid(
                pl_module.decode(along.to(pl_module.device, pl_module.dtype)), self.geodesic_points,
                "Decoded geodesic", axes))
        upright = decoded_modes.flip(-2) if axes is not None else decoded_modes  # W&B draws row 0 at the top
        figures.run("prototypes table", lambda: self._log_prototypes(
            trainer, modes, density_at(cube, density, modes_cube, periodic), upright))

    def _posterior_comparison(self, pl_module, x: torch.Tensor):
        x = x.to(pl_module.device)
        lattice, weights = pl_module.posterior_on_lattice(x, self.num_points)
        mean, log_var = pl_module.posterior.mean_and_log_var(pl_module.encode(x))
        return plot_posterior_comparison(lattice.cpu().numpy(), weights.cpu().numpy(), mean.cpu().numpy(),
                                         (0.5 * log_var).exp().cpu().numpy())

    @staticmethod
    def _log_prototypes(trainer, modes: torch.Tensor, densities: torch.Tensor, decoded: torch.Tensor) -> None:
        """A W&B table with one row per mean-shift mode: coordinates, density, decoded image."""
        loggers = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        if not loggers or decoded.dim() != 4:
            return
        import wandb

        rows = [[k, *[round(float(c), 4) for c in mode], float(rho), wandb.Image(image.cpu().float().clamp(0, 1))]
                for k, (mode, rho, image) in enumerate(zip(modes, densities, decoded))]
        columns = ["mode", *[f"z{i + 1}" for i in range(modes.shape[1])], "density", "decoded"]
        for logger in loggers:
            logger.log_table(key="prototypes", columns=columns, data=rows)
