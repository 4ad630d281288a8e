"""Writing a callback's figures: PNGs in ``<run dir>/plots/`` and images on the W&B dashboard; and running
the analyses behind them so that one failing analysis skips only itself, with a warning, never the run.

An analysis or figure that raises (an ``Exception``: interrupts still stop the run) is skipped with the
warning ``"<Callback>: <analysis> skipped: <reason>"`` and the callback goes on with the others;
:func:`write_metrics_first` writes ``metrics.json`` before any of it runs."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, TypeVar

from matplotlib.figure import Figure
import numpy as np
from lightning.pytorch.loggers import WandbLogger

from lvm.analysis.embedding import embed_loader
from lvm.numerics.torus import seam_offsets
from lvm.runs.metrics_file import MetricsFile

__all__ = ["Figures", "guarded", "save_and_log", "view_offsets", "warn_skipped", "write_metrics_first"]

T = TypeVar("T")


def write_metrics_first(trainer) -> None:
    """Have every :class:`lvm.runs.metrics_file.MetricsFile` of the trainer rewrite ``metrics.json`` now, so the
    file holds the test metrics before a callback's plots start, whatever the order of the callbacks."""
    for callback in getattr(trainer, "callbacks", ()):
        if isinstance(callback, MetricsFile):
            callback.update(trainer)


def view_offsets(trainer, pl_module, recentre: bool, num_points: int | None = None) -> np.ndarray | None:
    """The offsets ``[d]`` of the re-centred torus view that every figure of a run shares
    (:func:`lvm.numerics.torus.seam_offsets` of the test set's posterior means, which :func:`embed_loader` computes
    once for all the callbacks); ``None`` (the square as it is) off the torus or without ``recentre``."""
    if not (recentre and pl_module.prior.periodic):
        return None
    embedding, _ = embed_loader(pl_module, trainer.datamodule.test_dataloader(), "mean", num_points)
    return seam_offsets(embedding.numpy())


def warn_skipped(owner: str, analysis: str, reason: str) -> None:
    """Warn ``"<owner>: <analysis> skipped: <reason>"``."""
    warnings.warn(f"{owner}: {analysis} skipped: {reason}", UserWarning, stacklevel=3)


def guarded(owner: str, analysis: str, compute: Callable[..., T], *args, **kwargs) -> T | None:
    """``compute(*args, **kwargs)``; if it raises, ``None`` and a warning naming ``owner``, ``analysis`` and
    the error."""
    try:
        return compute(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 (an analysis must never cost the run its metrics)
        warn_skipped(owner, analysis, f"{type(error).__name__}: {error}")
        return None


class Figures(dict):
    """A callback's figures by name, each drawn by :meth:`draw` in its own guarded step.

    Args:
        owner: the callback's name, for the warnings.
    """

    def __init__(self, owner: str):
        super().__init__()
        self.owner = owner

    def run(self, analysis: str, compute: Callable[..., T], *args, **kwargs) -> T | None:
        """:func:`guarded` for this callback: the result, or ``None`` with a warning."""
        return guarded(self.owner, analysis, compute, *args, **kwargs)

    def draw(self, name: str, draw: Callable[..., Figure], *args, **kwargs) -> None:
        """Add ``draw(*args, **kwargs)`` as figure ``name``, or warn and leave it out if drawing raises."""
        figure = self.run(name, draw, *args, **kwargs)
        if figure is not None:
            self[name] = figure

    def skip(self, name: str, reason: str) -> None:
        """Leave figure or analysis ``name`` out with a warning saying why."""
        warn_skipped(self.owner, name, reason)


def save_and_log(trainer, figures: dict[str, Figure]) -> None:
    """Save each figure as ``plots/<name>.png`` and log it to every W&B logger as ``plots/<name>``.
    A figure that cannot be written is skipped with a warning; the others are still written."""
    owner = getattr(figures, "owner", "save_and_log")
    out_dir = Path(trainer.default_root_dir) / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, figure in figures.items():
        guarded(owner, f"{name} (writing the figure)", _save_and_log_one, trainer, out_dir, name, figure)


def _save_and_log_one(trainer, out_dir: Path, name: str, figure: Figure) -> None:
    figure.savefig(out_dir / f"{name}.png", dpi=120, bbox_inches="tight")
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            figure.canvas.draw()
            logger.log_image(key=f"plots/{name}", images=[np.asarray(figure.canvas.buffer_rgba())[..., :3]])
