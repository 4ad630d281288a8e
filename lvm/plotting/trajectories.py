"""A recording's path through the latent space (:mod:`lvm.analysis.trajectory`): the posterior means of its windows in
time order, coloured by time (a colour bar in the data's time unit), over the aggregated posterior of all windows
(grey, darker where denser) and its mean-shift modes (numbered as the export's ``cluster`` column, from 1). On the torus
the path is not drawn across the square's edges (a step shorter the other way round leaves at one edge and enters at
the opposite one). A 1-D latent is drawn against time."""

from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from lvm.plotting.figures import coordinate_label, subplots

__all__ = ["plot_trajectory"]

START_COLOR, END_COLOR, MODE_COLOR = "#2ca02c", "#d62728", "black"


def _segments(path: np.ndarray, periodic: bool) -> tuple[np.ndarray, np.ndarray]:
    """Line segments ``[s, 2, 2]`` between consecutive points of ``path [n, 2]`` and the index of each one's start;
    on the torus without the steps that wrap round (shorter across an edge)."""
    segments = np.stack([path[:-1], path[1:]], axis=1)  # [n - 1, 2, 2]
    starts = np.arange(len(path) - 1)
    if periodic:
        keep = np.all(np.abs(path[1:] - path[:-1]) <= 0.5, axis=1)
        segments, starts = segments[keep], starts[keep]
    return segments, starts


def plot_trajectory(latents, times, *, periodic: bool, points=None, density=None, modes=None, time_unit: str = "s",
                    title: str = "Trajectory", ax=None) -> Figure:
    """Draw one sequence's path ``latents [n, d]`` (posterior means in time order, ``times [n]`` in ``time_unit``)
    over the aggregated posterior ``density [m]`` on the lattice ``points [m, d]`` and its ``modes [K, d]`` (each
    optional). 2-D or more: the z1-z2 plane (the title says so above 2-D); 1-D: z1 against time. Returns the figure
    (a new one on its own Agg canvas unless ``ax`` is given)."""
    z = np.asarray(latents, dtype=float)
    t = np.asarray(times, dtype=float)
    if z.ndim != 2 or len(z) != len(t) or len(z) == 0:
        raise ValueError(f"latents must be [n, d] with one time per row and n >= 1; got {z.shape} and {t.shape}.")
    if ax is None:
        figure, ax = subplots(figsize=(6.4, 5.2))
    else:
        figure = ax.get_figure()
    dim = z.shape[1]
    time_norm = matplotlib.colors.Normalize(t.min(), t.max() if t.max() > t.min() else t.min() + 1.0)
    colours = matplotlib.colormaps["viridis"]
    if dim == 1:
        path = np.stack([t, z[:, 0]], axis=1)  # [n, 2]: time across, z1 up
        wraps = periodic
    else:
        path, wraps = z[:, :2], periodic
        if points is not None and density is not None:
            grid = np.asarray(points, dtype=float)[:, :2]
            weights = np.asarray(density, dtype=float) * len(grid)  # 1 = uniform over the lattice
            shade = ax.scatter(grid[:, 0], grid[:, 1], c=weights, cmap="Greys", s=12, marker="s", linewidths=0,
                               zorder=0, vmin=0.0)
            figure.colorbar(shade, ax=ax, pad=0.02, label="aggregated posterior (1 = uniform over the lattice)")
    segments, starts = _segments(path, wraps if dim > 1 else False)
    lines = LineCollection(segments, colors=colours(time_norm(t[starts])), linewidths=1.6, zorder=2)
    ax.add_collection(lines)
    ax.scatter(path[:, 0], path[:, 1], c=t, cmap=colours, norm=time_norm, s=10, zorder=3, linewidths=0)
    ax.scatter(*path[0], marker="^", s=90, color=START_COLOR, edgecolors="black", zorder=4,
               label=f"start ({t[0]:.3g} {time_unit})")
    ax.scatter(*path[-1], marker="s", s=70, color=END_COLOR, edgecolors="black", zorder=4,
               label=f"end ({t[-1]:.3g} {time_unit})")
    if modes is not None and len(modes) and dim > 1:
        centres = np.asarray(modes, dtype=float)[:, :2]
        ax.scatter(centres[:, 0], centres[:, 1], marker="x", s=70, color=MODE_COLOR, linewidths=2, zorder=5,
                   label="mean-shift modes (cluster)")
        for k, centre in enumerate(centres):
            ax.annotate(str(k + 1), centre, xytext=(5, 5), textcoords="offset points", fontsize=8, zorder=5)
    scale = matplotlib.cm.ScalarMappable(norm=time_norm, cmap=colours)
    figure.colorbar(scale, ax=ax, pad=0.02, label=f"time from the sequence's start ({time_unit})")
    if dim == 1:
        ax.set_xlabel(f"time ({time_unit})")
        ax.set_ylabel(coordinate_label(0, periodic))
        ax.set_xlim(time_norm.vmin, time_norm.vmax)
        ax.set_ylim(*((0.0, 1.0) if periodic else (z.min() - 0.05, z.max() + 0.05)))
    else:
        ax.set_xlabel(coordinate_label(0, periodic))
        ax.set_ylabel(coordinate_label(1, periodic))
        if periodic:
            ax.set_xlim(0.0, 1.0)
            ax.set_ylim(0.0, 1.0)
            ax.set_aspect("equal")
        else:
            ax.autoscale_view()
    ax.legend(loc="upper right", fontsize=7, framealpha=0.8)
    ax.set_title(title if dim <= 2 else f"{title}\n(z1-z2 of {dim} latent coordinates)", fontsize=10)
    return figure
