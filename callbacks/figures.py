"""Writing a callback's figures: PNGs in ``<run dir>/plots/`` and images on the W&B dashboard."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from lightning.pytorch.loggers import WandbLogger

__all__ = ["save_and_log"]


def save_and_log(trainer, figures: dict[str, plt.Figure]) -> None:
    """Save each figure as ``plots/<name>.png``, log it to every W&B logger as ``plots/<name>``, close it."""
    out_dir = Path(trainer.default_root_dir) / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, figure in figures.items():
        figure.savefig(out_dir / f"{name}.png", dpi=120, bbox_inches="tight")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                figure.canvas.draw()
                logger.log_image(key=f"plots/{name}", images=[np.asarray(figure.canvas.buffer_rgba())[..., :3]])
        plt.close(figure)
