"""Save (and log to W&B) the embedding of the test set and a grid of decoded latent points."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only

from lvm.batches import batch_data, label_columns, label_title
from lvm.analysis.embedding import embed_loader
from lvm.plotting.figures import latent_grid, plot_code_on_data, plot_decoded_grid, plot_embedding

from .figures import Figures, save_and_log, view_offsets, write_metrics_first

__all__ = ["LatentPlots"]


class LatentPlots(L.Callback):
    """At the end of testing, writes ``<run dir>/plots/embedding.png`` (posterior-mean
    embedding of the test set coloured by label: a legend of the datamodule's ``label_names`` for
    categories; a 3-D latent as its three pairwise projections), ``plots/decoded_grid.png`` (image data
    decoded on a grid of the latent plane, whose axes give the latent coordinates of the tile centres;
    spectrograms with the datamodule's ``image_axes``, low frequencies at the bottom; a conditional model's under its
    reference covariates, :meth:`lvm.covariates.Covariates.reference`) and
    ``plots/code_on_data.png`` (2-D vector data coloured by the code, MLAE Fig. 3).

    On the torus the embedding and the decoded grid are drawn in the re-centred view that :class:`PosteriorPlots` and
    :class:`Explorer` share (:func:`lvm.callbacks.figures.view_offsets`: the seams through the emptiest rows and
    columns of the test set's posterior means), ticked with the original coordinates.

    ``metrics.json`` is written first; a figure that fails is skipped with a warning
    ``"LatentPlots: <figure> skipped: <reason>"`` and the others are still written.

    Args:
        num_points: lattice size for the posterior (``None``: the model's evaluation default).
        per_side: images per side of the decoded grid.
        reduce: ``"mean"`` (circular on the torus) or ``"mode"`` of the posterior.
        recentre: re-centre the torus view (``False``: the square with its seams at 0).
    """

    def __init__(self, num_points: int | None = None, per_side: int = 12, reduce: str = "mean",
                 recentre: bool = True):
        self.num_points, self.per_side, self.reduce, self.recentre = num_points, per_side, reduce, recentre

    @rank_zero_only
    def on_test_end(self, trainer, pl_module):
        write_metrics_first(trainer)  # the test metrics are on disk before any plot is drawn
        figures = Figures(type(self).__name__)
        figures.run("latent plots", self._draw, trainer, pl_module, figures)  # the embedding itself failing
        save_and_log(trainer, figures)

    def _draw(self, trainer, pl_module, figures: Figures) -> None:
        loader = trainer.datamodule.test_dataloader()
        embedding, labels = embed_loader(pl_module, loader, self.reduce, self.num_points)
        data = torch.cat([batch_data(batch) for batch in loader]).numpy()
        embedding, labels = embedding.numpy(), None if labels is None else labels.numpy()
        periodic, datamodule = pl_module.prior.periodic, trainer.datamodule
        offsets = view_offsets(trainer, pl_module, self.recentre, self.num_points)  # [d] or None
        title = f"Posterior-{self.reduce} embedding of the test set"
        if labels is not None and labels.ndim == 2:  # ground-truth factors (3dShapes): one panel each (Fig. 6)
            for name, values in label_columns(labels, datamodule).items():
                figures.draw(f"embedding_{name}", plot_embedding, embedding, values, periodic=periodic,
                             title=f"{title} coloured by {name}", label_title=name, offsets=offsets)
        else:
            figures.draw("embedding", plot_embedding, embedding, labels, periodic=periodic, title=title,
                         label_names=getattr(datamodule, "label_names", None),
                         label_title=label_title(datamodule), offsets=offsets)
        if data.ndim == 2 and data.shape[1] == 2:  # 2-D vector data: the data coloured by the code (MLAE Fig. 3)
            figures.draw("code_on_data", plot_code_on_data, data, embedding, periodic=periodic)
        if data.ndim == 4:  # images [n, C, H, W]; vector data has no picture grid
            figures.draw("decoded_grid", self._decoded_grid, pl_module, torch.as_tensor(embedding),
                         getattr(datamodule, "image_axes", None), offsets)

    @torch.no_grad()
    def _decoded_grid(self, pl_module, embedding: torch.Tensor, axes, offsets):
        """The images decoded on :func:`lvm.plotting.figures.latent_grid`, on the latent plane (of the view)."""
        grid = latent_grid(pl_module.prior, self.per_side, embedding, offsets)
        images = pl_module.decode(grid.to(pl_module.device, pl_module.dtype))
        return plot_decoded_grid(images, grid.numpy(), self.per_side, axes=axes, periodic=pl_module.prior.periodic,
                                 offsets=offsets)
