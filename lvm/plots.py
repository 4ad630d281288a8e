"""Plain plotting functions for a trained model: call them from a notebook or a callback."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torchvision.utils import make_grid  # noqa: E402

from .priors import InvertiblePrior  # noqa: E402

__all__ = ["plot_embedding", "plot_code_on_data", "decoded_grid", "plot_image_grid", "plot_latent_field",
           "plot_posterior_comparison"]


def plot_embedding(embedding: np.ndarray, labels: np.ndarray | None = None, periodic: bool = False,
                   title: str = "Posterior-mean embedding") -> plt.Figure:
    """Scatter an embedding ``[n, d]`` coloured by label: 1-D against jitter, 2-D directly, 3-D as
    its three 2-D projections, higher as its first two coordinates. On the torus the axes span
    exactly one period [0, 1)."""
    d = embedding.shape[1]
    pairs = [(0, None)] if d == 1 else [(0, 1), (0, 2), (1, 2)] if d == 3 else [(0, 1)]
    fig, axes = plt.subplots(1, len(pairs), figsize=(5 * len(pairs), 4.5), squeeze=False)
    for ax, (i, j) in zip(axes[0], pairs):
        y = embedding[:, j] if j is not None else np.random.default_rng(0).uniform(-1, 1, len(embedding))
        points = ax.scatter(embedding[:, i], y, c=labels, cmap=_colormap(labels), s=6, alpha=0.8)
        ax.set_xlabel(f"z{i + 1}")
        ax.set_ylabel(f"z{j + 1}" if j is not None else "jitter")
        if periodic:
            ax.set_xlim(0, 1)
            if j is not None:
                ax.set_ylim(0, 1)
        ax.set_aspect("equal" if j is not None and periodic else "auto")
    if labels is not None:
        fig.colorbar(points, ax=axes[0].tolist(), label="label" if labels.ndim == 1 else "")
    fig.suptitle(title)
    return fig


def _colormap(labels: np.ndarray | None) -> str:
    """Categorical colours for integer labels (digits), a continuous map for real-valued ones."""
    return "tab10" if labels is None or np.issubdtype(labels.dtype, np.integer) else "viridis"


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


def plot_image_grid(images: torch.Tensor, per_side: int, title: str = "Decoded latent grid") -> plt.Figure:
    """Tile images ``[per_side**2, C, H, W]`` (C = 1 or 3) into one figure."""
    tiles = make_grid(images.detach().cpu().float().clamp(0, 1), nrow=per_side, padding=1, pad_value=1.0)
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(tiles.permute(1, 2, 0).numpy())  # [H, W, 3]
    ax.set_axis_off()
    ax.set_title(title)
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
