"""Plain plotting functions for a trained model: call them from a notebook or a callback.

Latent coordinates are named z1, z2, ... on every axis; on the torus they lie in [0, 1) with period 1 (the axis
labels say so), and arrows mark the square's glued edges. A torus view may be re-centred by offsets ``c [d]``
(:func:`lvm.numerics.torus.seam_offsets`: the edges through the emptiest rows and columns, a symmetry of the torus):
the figures that take ``offsets`` draw a latent z at ``u = (z - c) mod 1``, tick the axes with the original
coordinates ``(u + c) mod 1`` and say where the seam is ("z1 (period 1; seam at 0.37)"), so that what a reader reads
off the axes are latent values, as are the titles, the decoded grid's ticks and the modes' coordinates.

Mean-shift modes are numbered 1..K in the order given (densest first) alike on the latent
fields (:func:`plot_latent_field`) and on the decoded modes (:func:`plot_decoded_modes`)."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patheffects import withStroke
from matplotlib.ticker import FuncFormatter
from torchvision.utils import make_grid

from lvm.numerics.torus import translate
from lvm.plotting.axes import ImageAxes
from lvm.priors import InvertiblePrior

__all__ = ["ImageAxes", "subplots", "coordinate_label", "view_coordinates", "latent_axes", "plot_embedding",
           "plot_code_on_data", "latent_grid", "plot_image_grid", "plot_decoded_grid", "plot_reconstructions",
           "plot_decoded_modes", "plot_latent_field", "plot_posterior_comparison"]

MAX_CATEGORIES = 20  # integer labels with at most this many values get a legend, not a colour bar
RECONSTRUCTION_HEADER = ("original", "decoded")  # the column titles over each test image and its reconstruction


def subplots(*grid, figsize: tuple[float, float], layout: str | None = None, **kwargs) -> tuple[Figure, object]:
    """pyplot's ``subplots`` without pyplot: a figure on its own Agg canvas, so drawing never selects or depends on
    matplotlib's backend (a notebook's inline backend stays) and no figure is left in pyplot's registry."""
    figure = Figure(figsize=figsize, layout=layout)
    FigureCanvasAgg(figure)
    return figure, figure.subplots(*grid, **kwargs)


def coordinate_label(i: int, periodic: bool = False, offset: float | None = None) -> str:
    """The axis label of latent coordinate ``i`` (counted from 0): ``"z1"``, on the torus ``"z1 (period 1)"``, in a
    view re-centred by ``offset`` ``"z1 (period 1; seam at 0.37)"``."""
    if not periodic:
        return f"z{i + 1}"
    return f"z{i + 1} (period 1)" if offset is None else f"z{i + 1} (period 1; seam at {float(offset):.2f})"


def view_coordinates(z: np.ndarray, periodic: bool, offsets: np.ndarray | None) -> np.ndarray:
    """Where latents ``z [..., d]`` are drawn: ``u = (z - c) mod 1`` in a torus view re-centred by ``offsets`` ``c
    [d]``, ``z`` itself without offsets."""
    if offsets is None:
        return z
    if not periodic:
        raise ValueError("offsets re-centre a view of the torus, and this latent space is not periodic.")
    return translate(np.asarray(z, dtype=float), -np.asarray(offsets, dtype=float))


def latent_axes(ax, dims: tuple[int, ...], periodic: bool, offsets: np.ndarray | None = None) -> None:
    """Label the x axis (and the y axis, for two ``dims``) of ``ax`` as the latent coordinates ``dims``. On the torus
    each spans one period [0, 1]; in a view re-centred by ``offsets`` ``c [d]`` (drawn at ``u = (z - c) mod 1``,
    :func:`view_coordinates`) its ticks show the original coordinates ``(u + c) mod 1`` and its label the seam."""
    for i, axis, limits in zip(dims, (ax.xaxis, ax.yaxis), (ax.set_xlim, ax.set_ylim)):
        offset = None if offsets is None else float(offsets[i])
        axis.set_label_text(coordinate_label(i, periodic, offset))
        if periodic:
            limits(0, 1)
        if offset is not None:
            axis.set_major_formatter(FuncFormatter(lambda u, _, c=offset: _original_coordinate(u, c)))


def _original_coordinate(u: float, offset: float) -> str:
    """The tick label at ``u`` of a view re-centred by ``offset``: ``(u + c) mod 1``, "1.00" at the right end of an
    unshifted axis."""
    value = u + offset
    return f"{value - 1 if value > 1.005 else value:.2f}"


TORUS_NOTE = "torus: edges with matching arrows are glued\n(a cluster cut by an edge is one cluster)"
RECENTRED_NOTE = "view re-centred (edges moved to the emptiest rows and columns); ticks show original coordinates"


def mark_torus_seams(ax, recentred: bool = False) -> None:
    """Draw the identification of the fundamental square's edges, as topology texts draw a torus: one arrowhead up
    on the left and right edges, two to the right on the bottom and top edges (patches in axes coordinates, on the
    frame), and say under the figure what they mean (and, for a ``recentred`` view, that it is shifted)."""
    from matplotlib.patches import FancyArrowPatch

    def arrow(start, end):
        ax.add_patch(FancyArrowPatch(start, end, transform=ax.transAxes, clip_on=False, arrowstyle="-|>",
                                     color="tab:red", lw=1.5, mutation_scale=12, zorder=5))

    for x in (0.0, 1.0):  # left and right: one arrow up
        arrow((x, 0.44), (x, 0.56))
    for y in (0.0, 1.0):  # bottom and top: two arrows to the right
        for offset in (0.0, 0.06):
            arrow((0.43 + offset, y), (0.53 + offset, y))
    figure = ax.get_figure()
    if not getattr(figure, "_torus_note", False):  # once per figure, below everything (saved with a tight box)
        note = TORUS_NOTE.replace("\n", " ") + ("\n" + RECENTRED_NOTE if recentred else "")
        figure.text(0.5, -0.04, note, ha="center", va="top", fontsize=8, color="tab:red")
        figure._torus_note = True


def _coordinates(z) -> str:
    """A latent point as ``"(0.33, 0.16)"``."""
    return "(" + ", ".join(f"{float(c):.2f}" for c in z) + ")"


def plot_embedding(embedding: np.ndarray, labels: np.ndarray | None = None, periodic: bool = False,
                   title: str = "Posterior-mean embedding", label_names: list[str] | None = None,
                   label_title: str = "label", offsets: np.ndarray | None = None) -> Figure:
    """Scatter an embedding ``[n, d]`` coloured by label: 2-D directly, 3-D as its three pairwise projections
    side by side, higher as its first two coordinates (the title says so: "(z1, z2 of d)"). A 1-D embedding
    is drawn against its labels: one strip per category, z1 against a real-valued label, or without labels
    a histogram. On the torus the axes span exactly one period [0, 1). Categorical labels (integer codes
    named by ``label_names``, or integers with at most ``MAX_CATEGORIES`` values) get a legend titled
    ``label_title``; real-valued ones a colour bar labelled ``label_title``. ``offsets`` ``[d]``: the torus view
    re-centred there (module docstring)."""
    d = embedding.shape[1]
    categories = _categories(labels, label_names)
    embedding = view_coordinates(embedding, periodic, offsets)  # [n, d] where the points are drawn
    if d == 1:
        return _plot_embedding_1d(embedding[:, 0], labels, categories, periodic, title, label_title, offsets)
    pairs = [(0, 1), (0, 2), (1, 2)] if d == 3 else [(0, 1)]
    fig, axes = subplots(1, len(pairs), figsize=(5 * len(pairs), 4.5), squeeze=False)
    for ax, (i, j) in zip(axes[0], pairs):
        if categories is None:
            points = ax.scatter(embedding[:, i], embedding[:, j], c=labels, cmap="viridis", s=6, alpha=0.8)
        else:
            for colour, (code, name) in zip(_category_colours(len(categories)), categories):
                chosen = labels == code
                ax.scatter(embedding[chosen, i], embedding[chosen, j], color=colour, s=6, alpha=0.8, label=name)
        latent_axes(ax, (i, j), periodic, offsets)
        if periodic:
            ax.set_aspect("equal")
            mark_torus_seams(ax, recentred=offsets is not None)
    if categories is not None:
        axes[0, -1].legend(title=label_title, loc="upper left", bbox_to_anchor=(1.02, 1), markerscale=2, fontsize=8)
    elif labels is not None:
        fig.colorbar(points, ax=axes[0].tolist(), label=label_title)
    fig.suptitle(title + (" (pairwise projections)" if d == 3 else f" (z1, z2 of {d})" if d > 3 else ""))
    return fig


def _plot_embedding_1d(z: np.ndarray, labels: np.ndarray | None, categories: list[tuple[int, str]] | None,
                       periodic: bool, title: str, label_title: str, offsets: np.ndarray | None) -> Figure:
    """A 1-D embedding ``[n]`` (where drawn): a strip of z1 per category, z1 against a real-valued label, or a
    histogram."""
    fig, ax = subplots(figsize=(6, 4.5))
    if labels is None:
        ax.hist(z, bins=int(np.clip(np.sqrt(len(z)), 10, 50)), range=(0, 1) if periodic else None, color="tab:blue")
        ax.set_ylabel("number of examples")
    elif categories is None:
        ax.scatter(z, labels, s=6, alpha=0.8)
        ax.set_ylabel(label_title)
    else:
        jitter = np.random.default_rng(0).uniform(-0.3, 0.3, len(z))  # spreads each strip to show its density
        for row, (colour, (code, _)) in enumerate(zip(_category_colours(len(categories)), categories)):
            chosen = labels == code
            ax.scatter(z[chosen], row + jitter[chosen], color=colour, s=6, alpha=0.8)
        ax.set_yticks(range(len(categories)), [name for _, name in categories])
        ax.set_ylabel(label_title)
    latent_axes(ax, (0,), periodic, offsets)
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


def _category_colours(count: int) -> list:
    """Distinct colours for ``count`` categories (tab10, or tab20 above ten, repeating beyond)."""
    colours = matplotlib.colormaps["tab10" if count <= 10 else "tab20"]
    return [colours(k % colours.N) for k in range(count)]


def plot_code_on_data(data: np.ndarray, code: np.ndarray, title: str = "Data coloured by their latent code",
                      periodic: bool = False) -> Figure:
    """2-D data ``[n, 2]`` coloured by the first latent coordinate of each point (MLAE paper, Fig. 3):
    which direction of the data the code follows. On the torus the colour map is cyclic (0 and 1 alike)."""
    fig, ax = subplots(figsize=(5.5, 4.5))
    colours = {"cmap": "twilight", "vmin": 0, "vmax": 1} if periodic else {"cmap": "viridis"}
    points = ax.scatter(data[:, 0], data[:, 1], c=code[:, 0], s=6, **colours)
    fig.colorbar(points, ax=ax, label=f"latent code {coordinate_label(0, periodic)}")
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.set_title(title)
    return fig


def latent_grid(prior, per_side: int = 10, codes: torch.Tensor | None = None,
                offsets: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
    """The latent points ``[per_side**2, d]`` (float64) of the decoded grid: the cell centres of a regular
    ``per_side x per_side`` grid on the unit square, row-major with z2 decreasing down the rows (the top row has
    the largest z2), mapped into the latent space on the first two coordinates; a 1-D latent gets one row of
    ``per_side`` points along z1. A prior reached from the unit cube maps the square by inversion, the other
    coordinates at the cube's centre (0.5 on the torus, 0 under a standard normal); any other prior needs
    ``codes`` ``[n, d]`` (e.g. the test embedding), whose range the square is stretched over, the other
    coordinates at their mean. On the torus, ``offsets`` ``c [d]`` re-centre the view: the grid's cells sit at ``u``
    in the view, so the latents are ``(u + c) mod 1`` (the coordinates not shown at ``(0.5 + c) mod 1``)."""
    centres = (torch.arange(per_side, dtype=torch.float64) + 0.5) / per_side
    if prior.dim == 1:
        cube = centres[:, None]
    else:
        z2, z1 = torch.meshgrid(centres.flip(0), centres, indexing="ij")  # top row = largest z2
        cube = torch.full((per_side**2, prior.dim), 0.5, dtype=torch.float64)
        cube[:, 0], cube[:, 1] = z1.reshape(-1), z2.reshape(-1)
    if offsets is not None:
        if not prior.periodic:
            raise ValueError(f"offsets re-centre a view of the torus, and a {type(prior).__name__} is not periodic.")
        cube = translate(cube, torch.as_tensor(offsets, dtype=torch.float64))
    if isinstance(prior, InvertiblePrior):
        return prior.from_unit_cube(cube)
    if codes is None:
        raise ValueError(f"A latent grid over a {type(prior).__name__} needs the codes whose range it spans.")
    codes = torch.as_tensor(codes, dtype=torch.float64)
    low, high = codes.min(0).values, codes.max(0).values
    z = low + cube * (high - low)
    z[:, 2:] = codes[:, 2:].mean(0)
    return z


def _pictures(images: torch.Tensor) -> np.ndarray:
    """Images ``[n, C, H, W]`` (C = 1 or 3) clamped to [0, 1] for ``imshow``: ``[n, H, W]`` or ``[n, H, W, 3]``."""
    images = images.detach().cpu().float().clamp(0, 1)
    return images[:, 0].numpy() if images.shape[1] == 1 else images.permute(0, 2, 3, 1).numpy()


def _mosaic(images: torch.Tensor, per_row: int) -> np.ndarray:
    """Images ``[n, C, H, W]`` tiled ``per_row`` to a row with one white pixel between tiles: ``[H', W', 3]``."""
    tiles = make_grid(images.detach().cpu().float().clamp(0, 1), nrow=per_row, padding=1, pad_value=1.0)
    return tiles.permute(1, 2, 0).numpy()


def plot_image_grid(images: torch.Tensor, per_side: int, title: str = "Images", axes: ImageAxes | None = None,
                    tile_titles: list[str] | None = None) -> Figure:
    """Tile images ``[n, C, H, W]`` (C = 1 or 3), ``per_side`` to a row, into one figure. With ``axes``
    (single-channel images such as spectrograms), each tile is drawn row 0 at the bottom with ticks in
    the axes' units on the outer tiles. ``tile_titles`` title the first ``len(tile_titles)`` tiles: one
    per tile, or a header over the first row."""
    if axes is None and not tile_titles:
        fig, ax = subplots(figsize=(6, 6))
        ax.imshow(_mosaic(images, per_side))
        ax.set_axis_off()
        ax.set_title(title)
        return fig
    return _tile_grid(images, per_side, title, axes, tile_titles or [])[0]


def _tile_grid(images: torch.Tensor, per_row: int, title: str, axes: ImageAxes | None, tile_titles: list[str],
               top: float = 0.0, right: float = 0.0) -> tuple[Figure, np.ndarray]:
    """Images ``[n, C, H, W]`` as a grid of tiles, one subplot each, and the subplots ``[rows, per_row]``. With
    ``axes``: low rows at the bottom, ticks in the axes' units on the left and bottom tiles; else grey or colour
    tiles without ticks. The first tiles carry ``tile_titles``. ``top`` and ``right``: extra margins (inches)."""
    pictures = _pictures(images)
    rows = -(-len(pictures) // per_row)
    title_lines = max((t.count("\n") + 1 for t in tile_titles), default=0)
    widest = max((len(line) for t in tile_titles for line in t.split("\n")), default=0)
    width = max(0.9 if axes is not None else 0.6, 0.065 * widest)  # inches: room for the widest title at 8 pt
    height = width if axes is not None else width * pictures.shape[1] / pictures.shape[2]
    title_height = 0.16 * title_lines  # inches over each titled tile
    gap = 0.06 + (title_height if len(tile_titles) > per_row else 0.0)  # between rows: titles past the first
    margin = 0.7 if axes is not None else 0.1  # left and bottom: the tiles' tick labels and axis labels
    top += 0.45 + title_height
    figure_width = 2 * margin + per_row * width + (per_row - 1) * 0.06 + right
    figure_height = top + margin + rows * height + (rows - 1) * gap
    fig, grid = subplots(rows, per_row, figsize=(figure_width, figure_height), squeeze=False)
    fig.subplots_adjust(left=margin / figure_width, right=1 - (margin + right) / figure_width,
                        bottom=margin / figure_height, top=1 - top / figure_height,
                        wspace=0.06 / width, hspace=gap / height)
    for k, ax in enumerate(grid.flat):
        if k >= len(pictures):
            ax.set_axis_off()
            continue
        if axes is not None:
            ax.imshow(pictures[k], origin="lower", cmap="magma", vmin=0, vmax=1, aspect="auto",
                      interpolation="nearest")
            axes.ticks(ax, left=k % per_row == 0, bottom=k + per_row >= len(pictures))
        else:
            ax.imshow(pictures[k], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_axis_off()
        if k < len(tile_titles):
            ax.set_title(tile_titles[k], fontsize=8, pad=3)
    if axes is not None:
        fig.supxlabel(axes.column_label, fontsize=9)
        fig.supylabel(axes.row_label, fontsize=9)
    fig.suptitle(title, y=1 - 0.08 / figure_height, va="top")
    return fig, grid


def plot_decoded_grid(images: torch.Tensor, grid: np.ndarray, per_side: int, title: str = "Decoded latent grid",
                      axes: ImageAxes | None = None, periodic: bool = False,
                      offsets: np.ndarray | None = None) -> Figure:
    """The images ``[n, C, H, W]`` decoded from the latent points ``grid`` ``[n, d]`` of :func:`latent_grid`,
    laid out on the latent plane: z1 along the columns, z2 up the rows, each axis ticked at the tile centres
    with their latent coordinates (a 1-D latent: one row along z1). Coordinates held fixed (z3 and above) are
    named in the title. With ``axes`` (spectrograms) the tiles keep their own ticks in the axes' units at the
    bottom and left, and the latent coordinates move to the top and right. A grid of a re-centred torus view
    (:func:`latent_grid` with ``offsets``) is laid out as that view, ticked with the latents decoded there; pass the
    same ``offsets`` for the axis labels to say where the seam is."""
    grid = np.asarray(grid, dtype=float)
    dim = grid.shape[1]
    z1 = grid[:per_side, 0]
    z2 = grid[::per_side, 1] if dim > 1 else np.empty(0)  # the top row first
    if dim > 2:  # the coordinates the plane leaves out
        title += f" (z3 = {grid[0, 2]:.2f})" if dim == 3 else f" (z3-z{dim} held fixed)"
    if axes is not None:
        fig, tiles = _tile_grid(images, per_side, f"{title}\neach tile: {axes.row_label} against {axes.column_label}",
                                axes, [], top=0.6, right=0.55 if dim > 1 else 0.0)
        first, last = tiles[0, 0].get_position(), tiles[-1, -1].get_position()
        latent = fig.add_axes((first.x0, last.y0, last.x1 - first.x0, first.y1 - last.y0), frameon=False)
        latent.set_xlim(0, per_side)
        latent.set_ylim(0, len(z2) or 1)
        latent.xaxis.tick_top()
        latent.xaxis.set_label_position("top")
        latent.yaxis.tick_right()
        latent.yaxis.set_label_position("right")
        x_centres, y_centres = np.arange(per_side) + 0.5, len(z2) - 0.5 - np.arange(len(z2))
    else:
        height, width = images.shape[-2:]
        fig, latent = subplots(figsize=(6, 6))
        latent.imshow(_mosaic(images, per_side))
        for spine in latent.spines.values():
            spine.set_visible(False)
        latent.set_title(title)
        if images.shape[1] == 1:  # grey tiles: the scale of the decoded values
            scale = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0.0, 1.0), cmap="gray")
            fig.colorbar(scale, ax=latent, fraction=0.04, pad=0.02).set_label("decoded mean E[x | z] (clamped to 0-1)")
        x_centres = 1 + np.arange(per_side) * (width + 1) + (width - 1) / 2  # pixel columns of the tile centres
        y_centres = 1 + np.arange(len(z2)) * (height + 1) + (height - 1) / 2
    latent.set_xticks(x_centres, [f"{v:.2f}" for v in z1], rotation=90 if per_side > 12 else 0)
    latent.set_yticks(y_centres, [f"{v:.2f}" for v in z2])
    latent.tick_params(labelsize=7, length=2)
    seams = [None] * dim if offsets is None else [float(c) for c in offsets]
    latent.set_xlabel(coordinate_label(0, periodic, seams[0]))
    if dim > 1:
        latent.set_ylabel(coordinate_label(1, periodic, seams[1]))
    return fig


def plot_reconstructions(originals: torch.Tensor, reconstructions: torch.Tensor, pairs_per_row: int,
                         title: str = "Test images and their reconstructions",
                         axes: ImageAxes | None = None) -> Figure:
    """Each image of ``originals`` ``[n, C, H, W]`` beside its reconstruction, ``pairs_per_row`` pairs to a row,
    under a header naming the columns (``RECONSTRUCTION_HEADER``: "original", "decoded")."""
    pairs = torch.stack([originals.detach().cpu(), reconstructions.detach().cpu()], dim=1).flatten(0, 1)
    return plot_image_grid(pairs, 2 * pairs_per_row, title, axes, list(RECONSTRUCTION_HEADER) * pairs_per_row)


def plot_decoded_modes(images: torch.Tensor, modes: np.ndarray, title: str = "Decoded modes",
                       axes: ImageAxes | None = None) -> Figure:
    """The images ``[K, C, H, W]`` decoded from the modes ``[K, d]`` in a near-square grid, each tile titled
    "mode k" (k = 1..K in the given order, as :func:`plot_latent_field` numbers its markers) and the mode's
    latent coordinates."""
    per_row = max(1, math.ceil(math.sqrt(len(modes))))
    titles = [f"mode {k + 1}\n{_coordinates(mode)}" for k, mode in enumerate(np.asarray(modes))]
    return plot_image_grid(images, per_row, title, axes, titles)


def plot_latent_field(points: np.ndarray, values: np.ndarray, title: str, markers: np.ndarray | None = None,
                      path: np.ndarray | None = None, periodic: bool = False, log: bool = False, *,
                      value_label: str, offsets: np.ndarray | None = None) -> Figure:
    """A scalar field over latent points ``[m, d]`` (a density, a Jacobian norm), drawn as 2-D
    histograms weighted by ``values`` (averaged per cell; ``log``: their natural log): the plane for d = 2,
    the three coordinate pairs for d = 3, each panel's colour bar then naming the coordinate averaged out.
    ``value_label`` labels the colour bars: what is drawn (after ``log``) and in which unit.
    ``markers`` (modes, densest first) as red dots numbered 1..K, ``path`` (a geodesic) as a white line.
    ``offsets`` ``[d]``: the torus view re-centred there (module docstring); points, markers and path are latents."""
    d = points.shape[1]
    points, markers, path = (None if z is None else view_coordinates(z, periodic, offsets)
                             for z in (points, markers, path))  # where they are drawn
    pairs = [(0, 1)] if d == 2 else [(0, 1), (0, 2), (1, 2)]
    fig, axes = subplots(1, len(pairs), figsize=(5.5 * len(pairs), 4.5), squeeze=False, layout="constrained")
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
        hidden = [f"z{k + 1}" for k in range(d) if k not in (i, j)]
        fig.colorbar(image, ax=ax, label=value_label + (f"\naveraged over {hidden[0]}" if hidden else ""))
        if markers is not None and len(markers):
            ax.scatter(markers[:, i], markers[:, j], c="red", s=18, edgecolors="white", linewidths=0.5)
            _number(ax, markers[:, [i, j]], xedges[[0, -1]])
        if path is not None:
            xs, ys = path[:, i].astype(float), path[:, j].astype(float)
            if periodic:  # break the line where the path wraps around the torus
                wraps = np.flatnonzero((np.abs(np.diff(xs)) > 0.5) | (np.abs(np.diff(ys)) > 0.5)) + 1
                xs, ys = np.insert(xs, wraps, np.nan), np.insert(ys, wraps, np.nan)
            ax.plot(xs, ys, "w-", lw=1.5)
        latent_axes(ax, (i, j), periodic, offsets)
        if periodic:
            mark_torus_seams(ax, recentred=offsets is not None)
    fig.suptitle(title)
    return fig


def _number(ax, markers: np.ndarray, x_range: np.ndarray) -> None:
    """Write 1..K beside the markers ``[K, 2]`` in white with a dark outline, to the left of those near the
    right edge (``x_range``: the axes' first and last x) so that the numbers stay inside the axes."""
    right_edge = x_range[0] + 0.88 * (x_range[1] - x_range[0])
    for k, (x, y) in enumerate(markers):
        left = x > right_edge
        ax.annotate(str(k + 1), (x, y), xytext=(-5 if left else 5, 4), textcoords="offset points",
                    ha="right" if left else "left", color="white", fontsize=9, fontweight="bold",
                    path_effects=[withStroke(linewidth=2, foreground="black")])


def plot_posterior_comparison(points: np.ndarray, weights: np.ndarray, means: np.ndarray, stds: np.ndarray,
                              title: str = "Empirical posterior vs variational 3-sigma ellipse") -> Figure:
    """For each example: its posterior over lattice points ``points [m, 2]`` (``weights [b, m]``, the
    99 % most probable points shown, darker where more probable) against the variational Gaussian's mean
    and 3-sigma ellipse (``means``, ``stds``: ``[b, 2]``), as in the QLVM paper's Fig. 3B."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Ellipse

    fig, axes = subplots(1, len(weights), figsize=(3.2 * len(weights), 3.6), squeeze=False, layout="constrained")
    for k, (ax, w, mean, std) in enumerate(zip(axes[0], weights, means, stds)):
        order = np.argsort(w)[::-1]
        keep = order[: np.searchsorted(np.cumsum(w[order]), 0.99) + 1]
        ax.scatter(points[keep, 0], points[keep, 1], c=w[keep], cmap="Blues", s=8)
        ax.add_patch(Ellipse(mean, 6 * std[0], 6 * std[1], fill=False, color="red", lw=1.2))
        ax.scatter(*mean, c="red", s=12)
        span = np.concatenate([points[keep], [mean - 3 * std, mean + 3 * std]])
        ax.set_xlim(span[:, 0].min() - 0.1, span[:, 0].max() + 0.1)
        ax.set_ylim(span[:, 1].min() - 0.1, span[:, 1].max() + 0.1)
        ax.tick_params(labelsize=7, length=2)
        ax.set_xlabel("z1")
        ax.set_ylabel("z2" if k == 0 else "")
        ax.set_title(f"test example {k + 1}", fontsize=9)
    lattice = Line2D([], [], ls="", marker="o", color="tab:blue", label="p(z | x) on the lattice (99 % of its mass)")
    variational = Line2D([], [], color="red", marker="o", label="q(z | x): mean and 3-sigma ellipse")
    fig.legend(handles=[lattice, variational],
               loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(title)
    return fig
