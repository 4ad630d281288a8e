"""The units of an image's rows and columns (:class:`ImageAxes`), e.g. a spectrogram's frequency and time.

A datamodule describes its images with it and the figures of :mod:`lvm.plotting.figures` draw them with it; it
imports no matplotlib until ticks are drawn, so a datamodule that names its image axes does not load pyplot or
switch matplotlib's backend."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ImageAxes"]


@dataclass
class ImageAxes:
    """What the rows and columns of single-channel images measure, e.g. a spectrogram's frequency per row
    and time per column. Images with axes are drawn with row 0 at the bottom and ticks in these units.

    Args:
        rows: the value of each row ``[H]``, increasing; columns: the value of each column ``[W]``.
        row_label, column_label: axis labels with units, e.g. ``"frequency (kHz)"``, ``"time (ms)"``.
    """

    rows: np.ndarray
    columns: np.ndarray
    row_label: str
    column_label: str

    def ticks(self, ax, left: bool, bottom: bool) -> None:
        """Ticks in the axes' units on an ``imshow(origin="lower")`` of one image, numbered on the left and
        bottom tiles of a grid."""
        from matplotlib.ticker import MaxNLocator  # here, not at import: the datamodules import this module

        for values, set_ticks, set_labels in ((self.columns, ax.set_xticks, ax.set_xticklabels),
                                              (self.rows, ax.set_yticks, ax.set_yticklabels)):
            ticks = MaxNLocator(3).tick_values(values[0], values[-1])
            ticks = ticks[(ticks >= values[0]) & (ticks <= values[-1])]
            set_ticks(np.interp(ticks, values, np.arange(len(values))))
            set_labels([f"{t:g}" for t in ticks])
        ax.tick_params(labelsize=7, length=2, labelleft=left, labelbottom=bottom)
