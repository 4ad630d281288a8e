"""Write the interactive explorer of the test set's embedding (:mod:`lvm.tools.explore`) at the end of testing."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from lvm.analysis.embedding import embedding_table
from lvm.runs.files import write_atomically
from lvm.tools.explore import build_explorer

from .figures import guarded, view_offsets, write_metrics_first

__all__ = ["Explorer"]


class Explorer(L.Callback):
    """At the end of testing, writes ``<run dir>/plots/explorer.html``: the test set's embedding with hover images (line
    plots for data without an image shape), metadata and the decoded latent grid, one self-contained file
    (``python -m lvm.tools.explore`` makes the same for any checkpoint and all splits). ``metrics.json`` is written
    first; a failure is skipped with a warning ``"Explorer: explorer.html skipped: <reason>"``. On the torus the view
    is re-centred as the figures of :class:`LatentPlots` and :class:`PosteriorPlots` are
    (:func:`lvm.callbacks.figures.view_offsets`). For a conditional model the embedding is the posterior given each
    example's covariates, and a "Decode the grid as" selector shows the grid decoded under other covariate values
    (:func:`lvm.tools.explore.grid_conditions`; by default the reference covariates).

    Args:
        max_images: test examples that show their image on hover (a seeded subsample; every point is drawn).
        per_side: decoded images per side of each latent grid.
        recentre: re-centre the torus view (``False``: the square with its seams at 0).
        audio: for spectrograms of recordings, a click plays a point's original clip (and offers its reconstruction)
            or a grid cell's decoded sound (:func:`lvm.tools.explore.explorer_audio`); ``False``: no sound.
    """

    def __init__(self, max_images: int = 2000, per_side: int = 24, recentre: bool = True, audio: bool = True):
        self.max_images, self.per_side, self.recentre, self.audio = max_images, per_side, recentre, audio

    @rank_zero_only
    def on_test_end(self, trainer, pl_module):
        write_metrics_first(trainer)
        guarded(type(self).__name__, "explorer.html", self._write, trainer, pl_module)

    def _write(self, trainer, pl_module) -> None:
        table, _ = embedding_table(pl_module, trainer.datamodule, ("test",))
        html = build_explorer(pl_module, trainer.datamodule, table, self.max_images, self.per_side,
                              offsets=view_offsets(trainer, pl_module, self.recentre), audio=self.audio)
        write_atomically(Path(trainer.default_root_dir) / "plots" / "explorer.html",
                         lambda partial: partial.write_text(html, encoding="utf-8"))
