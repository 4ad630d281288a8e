"""Plain plotting functions for a trained model: call them from a notebook or a callback."""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from torchvision.utils import make_grid  # noqa: E402

from .priors import InvertiblePrior  # noqa: E402

__all__ = ["ImageAxes", "plot_embedding", "plot_code_on_data", "decoded_grid", "plot_image_grid", "plot_latent_field",
           "plot_posterior_comparison"]

MAX_CATEGORIES = 20  # integer labels with at most this many values get a legend, not a colour bar


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
        for values, set_ticks, set_labels in ((self.columns, ax.set_xticks, ax.set_xticklabels),
                                              (self.rows, ax.set_yticks, ax.set_yticklabels)):
            ticks = MaxNLocator(3).tick_values(values[0], values[-1])
            ticks = ticks[(ticks >= values[0]) & (ticks <= values[-1])]
            set_ticks(np.interp(ticks, values, np.arange(len(values))))
            set_labels([f"{t:g}" for t in ticks])
        ax.tick_params(labelsize=7, length=2, labelleft=left, labelbottom=bottom)


def plot_embedding(embedding: np.ndarray, labels: np.ndarray | None = None, periodic: bool = False,
                   title: str = "Posterior-mean embedding", label_names: list[str] | None = None,
                   label_title: str = "label") -> plt.Figure:
    """Scatter an embedding ``[n, d]`` coloured by label: 1-D against jitter, 2-D directly, 3-D as
    its three 2-D projections, higher as its first two coordinates. On the torus the axes span
    exactly one period [0, 1). Categorical labels (integer codes named by ``label_names``, or integers
    with at most ``MAX_CATEGORIES`` values) get a legend titled ``label_title``; real-valued ones a colour bar."""
    d = embedding.shape[1]
    pairs = [(0, None)] if d == 1 else [(0, 1), (0, 2), (1, 2)] if d == 3 else [(0, 1)]
    fig, axes = plt.subplots(1, len(pairs), figsize=(5 * len(pairs), 4.5), squeeze=False)
    categories = _categories(labels, label_names)
    for ax, (i, j) in zip(axes[0], pairs):
        y = embedding[:, j] if j is not None else np.random.default_rng(0).uniform(-1, 1, len(embedding))
        if categories is None:
            points = ax.scatter(embedding[:, i], y, c=labels, cmap="viridis", s=6, alpha=0.8)
        else:
            colours = plt.get_cmap("tab10" if len(categories) <= 10 else "tab20")
            for k, (code, name) in enumerate(categories):
                chosen = labels == code
                ax.scatter(embedding[chosen, i], y[chosen], color=colours(k % colours.N), s=6, alpha=0.8, label=name)
        ax.set_xlabel(f"z{i + 1}")
        ax.set_ylabel(f"z{j + 1}" if j is not None else "jitter")
        if periodic:
            ax.set_xlim(0, 1)
            if j is not None:
                ax.set_ylim(0, 1)
        ax.set_aspect("equal" if j is not None and periodic else "auto")
    if categories is not None:
        axes[0, -1].legend(title=label_title, loc="upper left", bbox_to_anchor=(1.02, 1), markerscale=2, fontsize=8)
    elif labels is not None:
        fig.colorbar(points, ax=axes[0].tolist(), label=label_title)
    fig.suptitle(title)
    return fig


def _categories(labels: np.ndarray | None, names: list[str] | None) -> list[tuple[int, str]] | None:
    """``[(code, name), ...]`` for categorical labels, ``None`` for real-valued or absent ones."""
    if labels is None or not np.issubdtype(labels.dtype, np.integer):
        return None
    codes = np.unique(labels)
    if names is not None:
        return [(int(c), str(names[c])) for c in codes]
    return [(int(c), str(c)) for c in codes] if len(codes) <= MAX_CATEGORIES else None


def plot_code_on_data(data: np.ndarray, code: np.ndarray, title: str = "Data coloured by their latent code") -> plt.Figure:
    """2-D data ``[n, 2]`` coloured by the first latent coordinate of each point (MLAE paper, Fig. 3):
    which direction of the data the code follows."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    points = ax.scatter(data[:, 0], data[:, 1], c=code[:, 0], cmap="viridis", s=6)
    fig.colorbar(points, ax=ax, label="z1")
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.set_title(title)
    return fig


@torch.no_grad()
def decoded_grid(model, per_side: int = 10, codes: torch.Tensor | None = None) -> torch.Tensor:
    """Decode a regular ``per_side x per_side`` grid of cell centres of the unit square mapped into the latent
    space (a 2-D latent, or the first two coordinates with the rest at the centre). A prior reached from the unit
    cube maps the square by inversion; any other prior needs ``codes`` ``[n, d]`` (e.g. the test embedding), whose
    bounding box the square is stretched over (the rest at their mean).
    Returns images ``[per_side**2, *data_shape]``, row-major with z2 increasing upward."""
    centres = (torch.arange(per_side, dtype=torch.float64) + 0.5) / per_side
    z2, z1 = torch.meshgrid(centres.flip(0), centres, indexing="ij")  # top row = largest z2
    dim = model.prior.dim
    cube = torch.full((per_side**2, dim), 0.5, dtype=torch.float64)
    cube[:, 0] = z1.reshape(-1)
    if dim > 1:
        cube[:, 1] = z2.reshape(-1)
    if isinstance(model.prior, InvertiblePrior):
        z = model.prior.from_unit_cube(cube)
    elif codes is None:
        raise ValueError(f"decoded_grid over a {type(model.prior).__name__} needs the codes whose range it spans.")
    else:
        codes = torch.as_tensor(codes, dtype=torch.float64)
        low, high = codes.min(0).values, codes.max(0).values
        z = low + cube * (high - low)
        z[:, 2:] = codes[:, 2:].mean(0)
    return model.decode(z.to(device=model.device, dtype=model.dtype))


def plot_image_grid(images: torch.Tensor, per_side: int, title: str = "Decoded latent grid",
                    axes: ImageAxes | None = None) -> plt.Figure:
    """Tile images ``[n, C, H, W]`` (C = 1 or 3), ``per_side`` to a row, into one figure. With ``axes``
    (single-channel images such as spectrograms), each tile is drawn row 0 at the bottom with ticks in
    the axes' units on the outer tiles."""
    if axes is not None:
        return _labelled_grid(images.detach().cpu().float().clamp(0, 1)[:, 0].numpy(), per_side, title, axes)
    tiles = make_grid(images.detach().cpu().float().clamp(0, 1), nrow=per_side, padding=1, pad_value=1.0)
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(tiles.permute(1, 2, 0).numpy())  # [H, W, 3]
    ax.set_axis_off()
    ax.set_title(title)
    return fig


def _labelled_grid(images: np.ndarray, per_row: int, title: str, axes: ImageAxes) -> plt.Figure:
    """Images ``[n, H, W]`` as a grid of tiles, low rows at the bottom, ticks on the left and bottom tiles."""
    rows = -(-len(images) // per_row)
    fig, grid = plt.subplots(rows, per_row, figsize=(0.9 * per_row + 0.8, 0.9 * rows + 0.8), squeeze=False,
                             gridspec_kw={"wspace": 0.06, "hspace": 0.06})
    for k, ax in enumerate(grid.flat):
        if k >= len(images):
            ax.set_axis_off()
            continue
        ax.imshow(images[k], origin="lower", cmap="magma", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
        axes.ticks(ax, left=k % per_row == 0, bottom=k + per_row >= len(images))
    fig.supxlabel(axes.column_label, fontsize=9)
    fig.supylabel(axes.row_label, fontsize=9)
    fig.suptitle(title)
    return fig


def plot_latent_field(points: np.ndarray, values: np.ndarray, title: str, markers: np.ndarray | None = None,
                      path: np.ndarray | None = None, periodic: bool = False, log: bool = False) -> plt.Figure:
    """A scalar field over latent points ``[m, d]`` (a density, a Jacobian norm), drawn as 2-D
    histograms weighted by ``values`` (averaged per cell): the plane for d = 2, the three coordinate
    pairs for d = 3. ``markers`` (modes) as red dots, ``path`` (a geodesic) as a white line."""
    d = points.shape[1]
    pairs = [(0, 1)] if d == 2 else [(0, 1), (0, 2), (1, 2)]
    fig, axes = plt.subplots(1, len(pairs), figsize=(5 * len(pairs), 4.5), squeeze=False)
    for ax, (i, j) in zip(axes[0], pairs):
        bins = max(8, int(0.7 * np.sqrt(len(points))))  # coarse enough that every cell holds lattice points
        limits = [[0, 1], [0, 1]] if periodic else None
        total, xedges, yedges = np.histogram2d(points[:, i], points[:, j], bins, range=limits, weights=values)
        counts, _, _ = np.histogram2d(points[:, i], points[:, j], bins, range=limits)
        field = np.where(counts > 0, total / np.maximum(counts, 1), np.nan)
        if log:
            field = np.log(np.maximum(field, 1e-12))
        image = ax.imshow(field.T, origin="lower", extent=[xedges[0], xedges[-1], yedges[0], yedges[-1]],
                          aspect="auto", cmap="magma")
        fig.colorbar(image, ax=ax)
        if markers is not None and len(markers):
            ax.scatter(markers[:, i], markers[:, j], c="red", s=18, edgecolors="white", linewidths=0.5)
        if path is not None:
            xs, ys = path[:, i].astype(float), path[:, j].astype(float)
            if periodic:  # break the line where the path wraps around the torus
                wraps = np.flatnonzero((np.abs(np.diff(xs)) > 0.5) | (np.abs(np.diff(ys)) > 0.5)) + 1
                xs, ys = np.insert(xs, wraps, np.nan), np.insert(ys, wraps, np.nan)
            ax.plot(xs, ys, "w-", lw=1.5)
        ax.set_xlabel(f"z{i + 1}")
        ax.set_ylabel(f"z{j + 1}")
    fig.suptitle(title)
    return fig


def plot_posterior_comparison(points: np.ndarray, weights: np.ndarray, means: np.ndarray, stds: np.ndarray,
                              title: str = "Empirical posterior vs variational 3-sigma ellipse") -> plt.Figure:
    """For each example: its posterior over lattice points ``points [m, 2]`` (``weights [b, m]``, the
    99 % most probable points shown) against the variational Gaussian's mean and 3-sigma ellipse
    (``means``, ``stds``: ``[b, 2]``), as in the QLVM paper's Fig. 3B."""
    from matplotlib.patches import Ellipse

    fig, axes = plt.subplots(1, len(weights), figsize=(3.2 * len(weights), 3.2), squeeze=False)
    for ax, w, mean, std in zip(axes[0], weights, means, stds):
        order = np.argsort(w)[::-1]
        keep = order[: np.searchsorted(np.cumsum(w[order]), 0.99) + 1]
        ax.scatter(points[keep, 0], points[keep, 1], c=w[keep], cmap="Blues", s=8)
        ax.add_patch(Ellipse(mean, 6 * std[0], 6 * std[1], fill=False, color="red", lw=1.2))
        ax.scatter(*mean, c="red", s=12)
        span = np.concatenate([points[keep], [mean - 3 * std, mean + 3 * std]])
        ax.set_xlim(span[:, 0].min() - 0.1, span[:, 0].max() + 0.1)
        ax.set_ylim(span[:, 1].min() - 0.1, span[:, 1].max() + 0.1)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    return fig
