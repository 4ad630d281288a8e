"""Posterior analysis plots of a 2-D or 3-D model at the end of testing (QLVM paper, Figs. 5, A5)."""

from __future__ import annotations

from itertools import islice

import lightning as L
import torch
from rich.progress import track
from lightning.pytorch.utilities import rank_zero_only

from lightning.pytorch.loggers import WandbLogger

from lvm.analysis.landscape import (aggregated_posterior, density_at, density_geodesic, is_flat, jacobian_frobenius_norm,
                          weighted_mean_shift)
from lvm.plotting.figures import (plot_decoded_modes, plot_image_grid, plot_latent_field, plot_posterior_comparison,
                       plot_reconstructions)
from lvm.analysis.embedding import embed_loader
from lvm.batches import batch_data
from lvm.posteriors import DiagonalGaussianPosterior
from lvm.priors import InvertiblePrior

from .figures import Figures, save_and_log, view_offsets, write_metrics_first

__all__ = ["PosteriorPlots"]

DENSITY_LABEL = "density of E_x p(z | x)\n(per unit latent volume)"
JACOBIAN_LABEL = "ln |df/dz|_F (natural log)\n(f in data units, z in latent units)"


class PosteriorPlots(L.Callback):
    """Writes (and logs to W&B) from the test set:

    * ``aggregated_posterior.png``: the density of E_x[p(z | x)] per unit latent volume over the evaluation
      lattice, with the mean-shift modes numbered 1..K, densest first (Fig. 5B/F);
    * ``jacobian_norm.png``: log |d f / d z|_F over the lattice, the numbered modes overlaid (Fig. 5D/H);
    * ``geodesic.png``: the density-ratio geodesic from mode 1 to mode 2, the two densest (Fig. A5);
    * for image data, ``mode_reconstructions.png`` and ``geodesic_reconstructions.png``: the decoded
      modes, each titled with its number and coordinates (Fig. 5C/G), and the decoded points along the
      geodesic; ``samples.png`` and ``reconstructions.png`` (each test image, headed "original", beside its
      reconstruction decode(embed(x)), headed "decoded"; Fig. 2B/C);
    * for models with a Gaussian encoder and a 2-D latent, ``posterior_comparison.png``: the empirical
      posterior on the dense lattice against the variational 3-sigma ellipse (Fig. 3B).

    On the torus the latent fields, their modes and the geodesic are drawn in the re-centred view that
    :class:`LatentPlots` and :class:`Explorer` share (:func:`lvm.callbacks.figures.view_offsets`), ticked with the
    original coordinates; the modes' coordinates (tiles, table) are original coordinates.

    A conditional model (``model.covariates``): the posteriors and reconstructions are given each test example's own
    covariates; samples, decoded modes and the geodesic are decoded under the reference covariates
    (:meth:`lvm.covariates.Covariates.reference`).

    On W&B the modes are also logged as a table of prototypes (number, coordinates, density per unit latent
    volume, decoded image).

    ``metrics.json`` is written first. Each figure is its own step: one that fails, or has nothing to show
    (a flat aggregated posterior has no modes, hence no geodesic), is skipped with a warning
    ``"PosteriorPlots: <figure> skipped: <reason>"`` and the others are still written.

    The analyses are the plain functions of :mod:`lvm.analysis.landscape`; this callback only runs them on rank 0.

    Args:
        num_points: lattice size (``None``: the model's evaluation default).
        bandwidth: mean-shift bandwidth (in latent units; the torus has side 1).
        geodesic_points: decoded points shown along the geodesic.
        max_batches: test batches used for the aggregated posterior (``None``: all).
        per_side: images per side of the sample and reconstruction grids.
        max_modes: the densest modes drawn and numbered on the figures (the titles say when there are more;
            the prototypes table keeps them all).
        recentre: re-centre the torus view (``False``: the square with its seams at 0).
    """

    def __init__(self, num_points: int | None = None, bandwidth: float = 0.1, geodesic_points: int = 10,
                 max_batches: int | None = None, per_side: int = 6, max_modes: int = 16, recentre: bool = True):
        self.num_points, self.bandwidth = num_points, bandwidth
        self.geodesic_points, self.max_batches, self.per_side = geodesic_points, max_batches, per_side
        self.max_modes, self.recentre = max_modes, recentre

    @rank_zero_only
    def on_test_end(self, trainer, pl_module):
        write_metrics_first(trainer)  # the test metrics are on disk before any analysis runs
        if pl_module.prior.dim not in (2, 3) or not isinstance(pl_module.prior, InvertiblePrior):
            return  # the analyses live on the unit-cube lattice
        figures = Figures(type(self).__name__)
        figures.run("posterior analysis", self._analyse, trainer, pl_module, figures)  # whatever the steps left out
        save_and_log(trainer, figures)

    def _analyse(self, trainer, pl_module, figures: Figures) -> None:
        """Each figure in its own guarded step (:class:`lvm.callbacks.figures.Figures`): one failing, or skipped for
        want of what it shows (no modes), leaves the others standing."""
        loader = trainer.datamodule.test_dataloader()
        first_batch = next(iter(loader))
        first = batch_data(first_batch)
        x = first
        covariates = pl_module.batch_covariates(first_batch) if pl_module.covariates is not None else None  # [b, C]
        images = x.dim() == 4
        axes = getattr(trainer.datamodule, "image_axes", None)  # spectrograms: kHz and ms, low rows at the bottom
        if images:
            x = x[: self.per_side**2].to(pl_module.device)
            sampler = pl_module.latent_sampler
            source = (f"the fitted {type(sampler).__name__}" if sampler is not None and sampler.fitted
                      else f"the prior ({type(pl_module.prior).__name__})")
            figures.draw("samples", lambda: plot_image_grid(
                pl_module.sample(self.per_side**2), self.per_side,
                f"Samples: decoded means E[x | z] (not draws of x) of {self.per_side**2} latent draws from {source}",
                axes))
            own = None if covariates is None else covariates[: len(x)]  # each image decoded given its covariates
            figures.draw("reconstructions", lambda: plot_reconstructions(
                x, pl_module.decode(self._codes(pl_module, loader, len(x)), own), self.per_side,
                "Test images beside their reconstructions, decoded from the posterior-mean code", axes))
        if pl_module.prior.dim == 2 and isinstance(pl_module.posterior, DiagonalGaussianPosterior):
            figures.draw("posterior_comparison", self._posterior_comparison, pl_module, first[:4],
                         None if covariates is None else covariates[:4])
        # the whole loader is read from the test pass (LatentVariableModel.results_for); a part is computed here
        batches = loader if self.max_batches is None else track(
            islice(loader, self.max_batches), description="Posterior plots: test batches",
            total=self.max_batches, disable=not trainer.progress_bar_callback)
        aggregated = figures.run("aggregated posterior", aggregated_posterior, pl_module, batches, self.num_points)
        if aggregated is None:
            for name in ("aggregated_posterior", "jacobian_norm", "geodesic") + ("mode_reconstructions",) * images:
                figures.skip(name, "it needs the aggregated posterior, which failed")
            return
        points, density = aggregated  # latent values [m, d], probabilities [m]
        density = density.cpu()
        per_volume = _per_unit_volume(pl_module.prior, points.cpu(), density).numpy()
        # mean-shift and the graph work on the lattice in the unit cube, where every point has equal volume
        # (the torus wraps); modes and paths are mapped back to latent values
        cube = pl_module.lattice_points(self.num_points)
        periodic = pl_module.prior.periodic
        to_latent = lambda c: pl_module.prior.from_unit_cube(c).cpu()  # noqa: E731
        found = figures.run("mean-shift modes", weighted_mean_shift, cube, density, self.bandwidth, periodic)
        modes_cube = found[0] if found is not None else cube[:0]
        modes = to_latent(modes_cube)
        shown = modes[: self.max_modes].numpy()  # numbered 1.. on every figure, densest first
        which = f" (the densest {len(shown)} of {len(modes)})" if len(modes) > len(shown) else ""
        latent = points.cpu().numpy()
        offsets = figures.run("re-centred view", view_offsets, trainer, pl_module, self.recentre, self.num_points)
        figures.draw("aggregated_posterior", plot_latent_field, latent, per_volume,
                     f"Aggregated posterior and its modes, numbered densest first{which}", shown, periodic=periodic,
                     value_label=DENSITY_LABEL, offsets=offsets)
        figures.draw("jacobian_norm", lambda: plot_latent_field(
            latent, jacobian_frobenius_norm(pl_module, points).cpu().numpy(),
            f"Decoder Jacobian norm and the modes{which}", shown, periodic=periodic, log=True,
            value_label=JACOBIAN_LABEL, offsets=offsets))
        path = None
        if len(modes) >= 2:
            spacing = (1.0 / len(cube)) ** (1 / cube.shape[1])
            path = figures.run("geodesic", lambda: to_latent(
                density_geodesic(cube, density, modes_cube[0], modes_cube[1], 2.5 * spacing, periodic)))
            if path is not None:
                figures.draw("geodesic", plot_latent_field, latent, per_volume,
                             "Density-ratio geodesic from mode 1 to mode 2", modes[:2].numpy(), path.numpy(),
                             periodic=periodic, value_label=DENSITY_LABEL, offsets=offsets)
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
        figures.draw("mode_reconstructions", plot_decoded_modes, decoded_modes[: len(shown)], shown,
                     f"Decoded modes, numbered as on aggregated_posterior.png{which}", axes)
        if path is not None:
            along = path[torch.linspace(0, len(path) - 1, self.geodesic_points).round().long()]
            ends = [f"{'mode 1' if i == 0 else 'mode 2' if i == len(along) - 1 else f'step {i}'}\n"
                    f"{', '.join(f'{v:.2f}' for v in point.tolist())}" for i, point in enumerate(along)]
            figures.draw("geodesic_reconstructions", lambda: plot_image_grid(
                pl_module.decode(along.to(pl_module.device, pl_module.dtype)), self.geodesic_points,
                "Decoded along the geodesic from mode 1 to mode 2", axes, ends))
        upright = decoded_modes.flip(-2) if axes is not None else decoded_modes  # W&B draws row 0 at the top
        figures.run("prototypes table", lambda: self._log_prototypes(
            trainer, modes, density_at(cube, torch.as_tensor(per_volume), modes_cube, periodic), upright))

    def _codes(self, pl_module, loader, n: int) -> torch.Tensor:
        """The posterior means of the first ``n`` test examples ``[n, d]``: the test set's embedding that the other
        figures share (read from the test pass where it covered the test set)."""
        embedding, _ = embed_loader(pl_module, loader, "mean", self.num_points)
        return embedding[:n].to(pl_module.device, pl_module.dtype)

    def _posterior_comparison(self, pl_module, x: torch.Tensor, covariates: torch.Tensor | None):
        x = x.to(pl_module.device)
        with pl_module.given(covariates):  # a conditional model's posterior given each example's covariates
            lattice, weights = pl_module.posterior_on_lattice(x, self.num_points)
        mean, log_var = pl_module.posterior.mean_and_log_var(pl_module.encode(x))
        return plot_posterior_comparison(lattice.cpu().numpy(), weights.cpu().numpy(), mean.cpu().numpy(),
                                         (0.5 * log_var).exp().cpu().numpy())

    @staticmethod
    def _log_prototypes(trainer, modes: torch.Tensor, densities: torch.Tensor, decoded: torch.Tensor) -> None:
        """A W&B table with one row per mean-shift mode: its number (1..K, as on the figures), coordinates,
        density per unit latent volume, decoded image."""
        loggers = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        if not loggers or decoded.dim() != 4:
            return
        import wandb

        rows = [[k + 1, *[round(float(c), 4) for c in mode], float(rho), wandb.Image(image.cpu().float().clamp(0, 1))]
                for k, (mode, rho, image) in enumerate(zip(modes, densities, decoded))]
        columns = ["mode", *[f"z{i + 1}" for i in range(modes.shape[1])], "density", "decoded"]
        for logger in loggers:
            logger.log_table(key="prototypes", columns=columns, data=rows)


def _per_unit_volume(prior, points: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
    """The aggregated posterior's probabilities ``[m]`` on the lattice points ``[m, d]`` as a density per unit latent
    volume: each of the m points stands for prior mass 1/m, i.e. the volume 1 / (m p(z_j)), so the density there is
    m p(z_j) times its probability (on the torus m times: 1 everywhere is the uniform density)."""
    return probabilities.double() * len(probabilities) * prior.log_prob(points.double()).exp()
