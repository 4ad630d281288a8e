"""An interactive explorer of a trained model's embedding:
``python -m lvm.tools.explore --ckpt CKPT --out explorer.html [--splits test] [--max_images 2000] [--recentre false]
[--data.init_args.* ...]``.

Writes one self-contained HTML file (:func:`lvm.plotting.explorer.explorer_html`; it opens without a network): the
embedding (posterior means, :mod:`lvm.analysis.embedding`) coloured by any label or metadata field; hovering a point shows
its image or spectrogram (low frequencies at the bottom) and its metadata; hovering empty space shows the model's
decoded mean there (a grid over each latent plane; on the torus the fundamental square). Data without an image shape
(neurons, features) is drawn as line plots of value against feature index, a point's with the decoded mean at its
latent over it. 3-D latents are shown as three linked 2-D projections, the third coordinate of each grid held at the
data's median (circular mean on the torus). On the torus the view is re-centred (``--recentre false``: not): the square
shifted so that its edges run through the emptiest rows and columns of the embedding shown
(:func:`lvm.numerics.torus.seam_offsets`), its ticks and tooltips giving the original coordinates.
:class:`lvm.callbacks.Explorer` writes the same file for the test set as ``plots/explorer.html``.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from lvm.tools.arguments import yes_or_no, checkpoint_embedding, checkpoint_parser, run_command

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

    from lvm.plotting.explorer import LatentGrid

# NumPy, PyTorch, Bokeh and the model's modules are imported inside the functions that use them, so that ``--help``
# (argument parsing) imports none of them; importing this module as a library stays cheap until a function runs.

__all__ = ["plot_bounds", "latent_grids", "hover_images", "build_explorer", "main"]

HIDDEN_COLUMNS = ("index",)  # positions within a split; ``example`` identifies the row


def _centre(values: np.ndarray, periodic: bool) -> float:
    """The circular mean on the unit torus, the median otherwise."""
    import numpy as np
    import torch

    from lvm.numerics.torus import circular_mean

    if periodic:
        return float(circular_mean(torch.tensor(np.asarray(values, dtype=np.float64))))
    return float(np.median(values))


def plot_bounds(embedding: np.ndarray, periodic: bool, margin: float = 0.05) -> list[tuple[float, float]]:
    """The latent ranges shown: the fundamental square ``[0, 1]`` on the torus, the data's range widened by
    ``margin`` of its width otherwise."""
    import numpy as np

    if periodic:
        return [(0.0, 1.0)] * embedding.shape[1]
    low, high = embedding.min(axis=0), embedding.max(axis=0)
    pad = margin * np.maximum(high - low, 1e-6)
    return [(float(lo), float(hi)) for lo, hi in zip(low - pad, high + pad)]


def _decoded_pictures(model, z: torch.Tensor, flip: bool) -> np.ndarray:
    """Decoded means at latents ``z [g, d]`` as the explorer draws them (:func:`_displayable`)."""
    import torch

    with torch.no_grad():
        decoded = model.decode(z.to(model.device, model.dtype)).cpu().float()  # [g, *data_shape]
    return _displayable(decoded, flip)


def _displayable(examples: torch.Tensor, flip: bool) -> np.ndarray:
    """Examples ``[n, *data_shape]`` as the explorer draws them: images ``[n, C, H, W]`` (C = 1 or 3) as ``[n, H, W]``
    (grey) or ``[n, H, W, 3]`` in [0, 1], the right way up; anything else as vectors ``[n, D]`` (flattened)."""
    if examples.dim() != 4 or examples.shape[1] not in (1, 3):
        return examples.flatten(start_dim=1).numpy()
    images = examples.clamp(0, 1)
    if flip:  # spectrograms: row 0 is the lowest frequency, drawn at the bottom
        images = images.flip(-2)
    images = images.permute(0, 2, 3, 1).numpy()  # [n, H, W, C]
    return images[..., 0] if images.shape[-1] == 1 else images


def latent_grids(model, embedding: np.ndarray, bounds: list[tuple[float, float]], per_side: int = 24,
                 flip: bool = False, offsets: np.ndarray | None = None) -> list[LatentGrid]:
    """Decoded means (images, or vectors for data without an image shape) on a ``per_side``-cell grid over each plane
    shown (z1 alone for a 1-D latent; the pairs of the first three coordinates otherwise), the other coordinates held
    at the data's median (circular mean on the torus). In a torus view re-centred by ``offsets`` ``c [d]`` the cells
    are regular in the view: a cell drawn at ``u`` decodes ``z = (u + c) mod 1``, and its ``coords`` are that ``z``."""
    import numpy as np
    import torch

    from lvm.numerics.torus import translate
    from lvm.plotting.explorer import LatentGrid

    dim, periodic = embedding.shape[1], model.prior.periodic
    centre = torch.tensor([_centre(embedding[:, k], periodic) for k in range(dim)], dtype=torch.float64)
    planes = [(0,)] if dim == 1 else list(itertools.combinations(range(min(dim, 3)), 2))
    grids = []
    for plane in planes:
        axes = [torch.linspace(bounds[k][0], bounds[k][1], per_side + 1, dtype=torch.float64) for k in plane]
        centres = [(edges[:-1] + edges[1:]) / 2 for edges in axes]  # cell centres per varying coordinate
        coords = torch.cartesian_prod(*centres).reshape(-1, len(plane))  # [g, len(plane)]
        if offsets is not None:  # from the view to the latents decoded
            coords = translate(coords, torch.as_tensor(np.asarray(offsets)[list(plane)], dtype=torch.float64))
        z = centre.repeat(len(coords), 1)  # [g, d]
        z[:, list(plane)] = coords
        grids.append(LatentGrid(dims=plane, coords=coords.numpy(), images=_decoded_pictures(model, z, flip)))
    return grids


def hover_images(datamodule, table: pd.DataFrame, max_images: int, flip: bool,
                 seed: int = 0) -> tuple[np.ndarray | None, np.ndarray]:
    """Images (or vectors) of a seeded subsample of at most ``max_images`` rows of ``table`` and their row positions."""
    import numpy as np
    import torch

    rows = np.arange(len(table))
    if len(rows) > max_images:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_images, replace=False))
    if not len(rows):
        return None, rows
    items = []
    for split, position in zip(table["split"].to_numpy()[rows], table["index"].to_numpy()[rows]):
        item = getattr(datamodule, f"{split}_set")[int(position)]
        items.append(torch.as_tensor(item[0] if isinstance(item, (tuple, list)) else item).float())
    return _displayable(torch.stack(items), flip), rows


def build_explorer(model, datamodule, table: pd.DataFrame, max_images: int = 2000, per_side: int = 24,
                   title: str | None = None, offsets: np.ndarray | None = None) -> str:
    """The explorer's HTML for ``table`` (from :func:`lvm.analysis.embedding.embedding_table`) of ``model`` and
    ``datamodule``; on the torus in the view re-centred by ``offsets`` ``[d]`` (:func:`lvm.numerics.torus.seam_offsets`
    of an embedding; ``None``: the square as it is)."""
    import torch

    from lvm.analysis.embedding import latent_columns
    from lvm.plotting.explorer import explorer_html

    dim, periodic = model.prior.dim, model.prior.periodic
    columns = latent_columns(dim)
    embedding = table[columns].to_numpy()  # [n, d]
    flip = getattr(datamodule, "image_axes", None) is not None
    bounds = plot_bounds(embedding, periodic)
    images, rows = hover_images(datamodule, table, max_images, flip)
    decoded = None  # vectors: the decoded mean at each point's latent, drawn over the point's own vector
    if images is not None and images.ndim == 2:
        decoded = _decoded_pictures(model, torch.as_tensor(embedding[rows]), flip)
    shown = table.drop(columns=[c for c in table.columns if c in HIDDEN_COLUMNS or c.startswith(("mode", "spread"))])
    first = columns + [c for c in ("label_name", "label") if c in shown]  # the label colours the first view
    shown = shown[first + [c for c in shown.columns if c not in first]]
    return explorer_html(shown, columns, periodic=periodic, images=images, image_rows=rows, decoded=decoded,
                         grids=latent_grids(model, embedding, bounds, per_side, flip, offsets),
                         cmap="magma" if flip else "gray", bounds=None if periodic else bounds, offsets=offsets,
                         title=title or f"{type(datamodule).__name__}: {dim}-D embedding, {len(table)} examples")


def main(argv: list[str] | None = None) -> None:
    parser = checkpoint_parser("python -m lvm.tools.explore", __doc__)
    parser.add_argument("--out", required=True, help="the HTML file to write")
    parser.add_argument("--max_images", type=int, default=2000,
                        help="data points that show their image on hover (a seeded subsample; all points are drawn)")
    parser.add_argument("--per_side", type=int, default=24, help="decoded images per side of each latent grid")
    parser.add_argument("--recentre", type=yes_or_no, default=True,
                        help="on the torus, shift the view so that its edges run through the emptiest rows and "
                             "columns of the embedding (true/false; ticks and tooltips keep the original coordinates)")
    args, rest = parser.parse_known_args(argv)

    def explore() -> None:
        from lvm.analysis.embedding import latent_columns  # (after the options: --help stays fast)
        from lvm.numerics.torus import seam_offsets
        from lvm.runs.files import write_atomically

        model, datamodule, table, _ = checkpoint_embedding(args, rest)
        recentred = args.recentre and model.prior.periodic
        offsets = seam_offsets(table[latent_columns(model.prior.dim)].to_numpy()) if recentred else None
        html = build_explorer(model, datamodule, table, args.max_images, args.per_side, offsets=offsets)
        out = write_atomically(args.out, lambda partial: partial.write_text(html, encoding="utf-8"))
        print(f"Wrote {out} ({len(table)} points); open it in a browser (it needs no network).")

    run_command(explore)


if __name__ == "__main__":
    main()
