"""The transition graph of a sequence of states (:mod:`lvm.analysis.sequences`), as keypoint-MoSeq draws it: states
as nodes (on a circle, or at given 2-D positions such as the modes' latent coordinates), an arrow ``i -> j`` for each
between-state transition with width and colour by its probability ``P_ij`` (scaled to the largest ``P_ij, i != j``,
which the colour bar shows), and the self-transition probability ``P_ii`` as the node's size and label (the expected
dwell is ``1 / (1 - P_ii)`` steps)."""

from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch
from matplotlib.patheffects import withStroke

from lvm.plotting.figures import subplots

__all__ = ["plot_transition_graph"]

MAX_ARROW_WIDTH = 6.0  # points, for the largest P_ij (i != j)
NODE_AREA = (300.0, 2000.0)  # marker area (points^2) for P_ii = 0 and P_ii = 1


def plot_transition_graph(matrix, positions=None, state_names=None, min_probability: float = 0.02,
                          title: str = "Transition graph", axis_labels: tuple[str, str] = ("z1", "z2"),
                          ax=None) -> Figure:
    """Draw the transition matrix ``P [K, K]`` (with self-transitions; rows of NaN, states never left, get no
    arrows) as a graph. ``positions [K, 2]`` places the nodes (axes labelled ``axis_labels``); without them the
    nodes lie on a circle (no axes). Arrows below ``min_probability`` are left out (the figure says so).
    Returns the figure (a new one on its own Agg canvas unless ``ax`` is given)."""
    p = np.asarray(matrix, dtype=float)
    if p.ndim != 2 or p.shape[0] != p.shape[1] or p.shape[0] == 0:
        raise ValueError(f"the transition matrix must be square [K, K], got shape {p.shape}.")
    k = p.shape[0]
    names = [str(i + 1) for i in range(k)] if state_names is None else [str(name) for name in state_names]
    if len(names) != k:
        raise ValueError(f"{len(names)} state names for {k} states; give one name per state.")
    if positions is None:
        angles = np.pi / 2 - 2 * np.pi * np.arange(k) / k
        xy = np.stack([np.cos(angles), np.sin(angles)], axis=1)  # [K, 2]
    else:
        xy = np.asarray(positions, dtype=float)
        if xy.shape != (k, 2):
            raise ValueError(f"positions must be [K, 2] = [{k}, 2], got shape {xy.shape}.")
    if ax is None:
        figure, ax = subplots(figsize=(7.0, 5.4), layout="constrained")  # the title, caption and colour bar inside
    else:
        figure = ax.get_figure()
    colours = matplotlib.colormaps["viridis"]
    off = np.where(np.eye(k, dtype=bool), np.nan, p)  # [K, K]
    top = np.nanmax(off) if np.any(np.isfinite(off) & (off > 0)) else 1.0  # the largest P_ij, i != j
    norm = matplotlib.colors.Normalize(0.0, top)
    node_size = NODE_AREA[0] + (NODE_AREA[1] - NODE_AREA[0]) * np.nan_to_num(np.diag(p))  # [K]
    for i in range(k):
        for j in range(k):
            if i != j and np.isfinite(off[i, j]) and off[i, j] >= min_probability:
                ax.add_patch(FancyArrowPatch(
                    xy[i], xy[j], arrowstyle="-|>", mutation_scale=10 + 8 * off[i, j] / top,
                    connectionstyle="arc3,rad=0.2",  # curved: i -> j and j -> i do not overlap
                    lw=0.5 + MAX_ARROW_WIDTH * off[i, j] / top, color=colours(norm(off[i, j])), zorder=1,
                    shrinkA=np.sqrt(node_size[i]) / 2, shrinkB=np.sqrt(node_size[j]) / 2))
    ax.scatter(xy[:, 0], xy[:, 1], s=node_size, color="lightgrey", edgecolors="black", zorder=2)
    for i in range(k):
        label = f"{names[i]}\nself {p[i, i]:.2f}" if np.isfinite(p[i, i]) else f"{names[i]}\nnever left"
        ax.annotate(label, xy[i], ha="center", va="center", fontsize=7, zorder=3,
                    path_effects=[withStroke(linewidth=2, foreground="white")])
    scale = matplotlib.cm.ScalarMappable(norm=norm, cmap=colours)
    figure.colorbar(scale, ax=ax, label="transition probability P_ij, i ≠ j (arrows)")
    span = np.ptp(xy, axis=0).max() if k > 1 else 1.0
    margin = 0.25 * (span if span > 0 else 1.0)
    ax.set_xlim(xy[:, 0].min() - margin, xy[:, 0].max() + margin)
    ax.set_ylim(xy[:, 1].min() - margin, xy[:, 1].max() + margin)
    legend = f"(node size and label: self-transition P_ii; arrows with P_ij >= {min_probability:g})"
    if positions is None:
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(f"states on a circle\n{legend}")
    else:
        ax.set_xlabel(f"{axis_labels[0]}\n{legend}")
        ax.set_ylabel(axis_labels[1])
    ax.set_title(title)
    return figure
