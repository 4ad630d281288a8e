"""An interactive explorer of a trained model's embedding:
``python -m lvm.tools.explore --ckpt CKPT --out explorer.html [--splits test] [--max_images 2000] [--recentre false]
[--audio false] [--data.init_args.* ...]``.

Writes one self-contained HTML file (:func:`lvm.plotting.explorer.explorer_html`; it opens without a network): the
embedding (posterior means, :mod:`lvm.analysis.embedding`) coloured by any label or metadata field; hovering a point shows
its image or spectrogram (low frequencies at the bottom) and its metadata; hovering empty space shows the model's
decoded mean there (a grid over each latent plane; on the torus the fundamental square). Data without an image shape
(neurons, features) is drawn as line plots of value against feature index, a point's with the decoded mean at its
latent over it. 3-D latents are shown as three linked 2-D projections, the third coordinate of each grid held at the
data's median (circular mean on the torus). On the torus the view is re-centred (``--recentre false``: not): the square
shifted so that its edges run through the emptiest rows and columns of the embedding shown
(:func:`lvm.numerics.torus.seam_offsets`), its ticks and tooltips giving the original coordinates.
For a model of vocalization spectrograms (a datamodule with ``inversion_params``) the page also plays sound
(:func:`explorer_audio`; ``--audio false``: not): a click on a point with a picture plays its original clip, cut from
the recording named in its metadata, and offers the sound of its decoded spectrogram; a click in empty space plays
the decoded sound of that grid cell (at the data set's median duration); a selector slows playback (x0.25, x0.1).
For a conditional model (``model.covariates``) the embedding is the posterior given each example's own covariates,
the points' decoded means and reconstructions are decoded under their own covariates, and the grid under the
reference covariates (:meth:`lvm.covariates.Covariates.reference`); a "Decode the grid as" selector shows the same
grid decoded under other covariate values (:func:`grid_conditions`: each category of a discrete covariate, five
training quantiles of a continuous one, one covariate varied at a time with the others at the reference; the cells'
sounds stay the reference's).
For windows of recordings (data with ``sequence`` and ``time`` metadata, :mod:`lvm.analysis.trajectory`) a "Sequence"
selector draws a recording's path through the embedding and a "Time" slider moves a marker along it, showing that
window's picture (and, with sound, playing it); the page offers the first 30 recordings by id (fewer where their
windows pass ``--max_images`` or 3000: each has its picture), and says so.
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

__all__ = ["plot_bounds", "grid_conditions", "latent_grids", "hover_images", "row_covariates", "audio_folders",
           "original_clips", "explorer_audio", "sequence_paths", "build_explorer", "main"]

HIDDEN_COLUMNS = ("index",)  # positions within a split; ``example`` identifies the row
AUDIO_ITERATIONS = 32  # Griffin-Lim iterations of the page's decoded sounds
AUDIO_BATCH = 256  # spectrograms inverted at once
CONTINUOUS_CONDITIONS = 5  # values of a continuous covariate offered by the grid's condition selector
MAX_CATEGORY_CONDITIONS = 12  # categories of a discrete covariate offered (the first ones, in the training order)
MAX_SEQUENCES = 30  # recordings the sequence selector offers (the first ones by id): each window is a picture
MAX_SEQUENCE_WINDOWS = 3000  # windows of the offered recordings, all of them with their picture in the page


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


def _decoded_pictures(model, z: torch.Tensor, flip: bool, covariates: torch.Tensor | None = None) -> np.ndarray:
    """Decoded means at latents ``z [g, d]`` as the explorer draws them (:func:`_displayable`); a conditional model's
    under the covariate codes ``covariates`` (``[C]``, or ``[g, C]``; None: the reference)."""
    import torch

    with torch.no_grad():
        decoded = model.decode(z.to(model.device, model.dtype), covariates).cpu().float()  # [g, *data_shape]
    return _displayable(decoded, flip)


def grid_conditions(covariates, continuous: int = CONTINUOUS_CONDITIONS,
                    max_categories: int = MAX_CATEGORY_CONDITIONS) -> list[tuple[str, torch.Tensor]]:
    """The covariates a conditional model's decoded grid is offered under, as ``(name, codes [C])``: first the
    reference (each discrete covariate's first category, each continuous one's training mean), then one covariate
    varied at a time with the others at the reference: each other category of a discrete covariate (the first
    ``max_categories``), and ``continuous`` of a continuous one's training quantiles (its quantisation levels, evenly
    picked; without levels the training mean +- 0.5 and 1.3 standard deviations, a normal's 10-90 % quantiles). Few
    grids, not every combination: each is a full grid of pictures in the page."""
    import numpy as np
    import torch

    reference = covariates.reference()[0]  # [C]

    def named(codes: torch.Tensor, keys: list[str]) -> str:
        raw = covariates.describe(codes[None])[0]
        return ", ".join(f"{key} = {raw[key]:.3g}" if isinstance(raw[key], float) else f"{key} = {raw[key]}"
                         for key in keys)

    conditions = [(f"reference ({named(reference, covariates.keys)})", reference)]
    for k, spec in enumerate(covariates.specs):
        if spec["kind"] == "discrete":
            values = np.arange(1, min(len(spec["categories"]), max_categories), dtype=float)
        elif spec.get("values"):
            levels = np.asarray(spec["values"], dtype=float)
            values = levels[np.unique(np.round(np.linspace(0, len(levels) - 1, continuous)).astype(int))]
        else:
            values = np.array([-1.2816, -0.5244, 0.0, 0.5244, 1.2816])  # a standard normal's 10, 30, ..., 90 %
        for value in values:
            if value == float(reference[k]):
                continue
            codes = reference.clone()
            codes[k] = float(value)
            conditions.append((named(codes, [spec["key"]]), codes))
    return conditions


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
                 flip: bool = False, offsets: np.ndarray | None = None,
                 conditions: list[tuple[str, torch.Tensor]] | None = None) -> list[LatentGrid]:
    """Decoded means (images, or vectors for data without an image shape) on a ``per_side``-cell grid over each plane
    shown (z1 alone for a 1-D latent; the pairs of the first three coordinates otherwise), the other coordinates held
    at the data's median (circular mean on the torus). In a torus view re-centred by ``offsets`` ``c [d]`` the cells
    are regular in the view: a cell drawn at ``u`` decodes ``z = (u + c) mod 1``, and its ``coords`` are that ``z``.
    A conditional model decodes the ``images`` under the first of ``conditions`` (``(name, codes [C])``, e.g.
    :func:`grid_conditions`; None: the reference) and each other one into the grid's ``variants``."""
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
        first, *others = conditions or [(None, None)]
        grids.append(LatentGrid(dims=plane, coords=coords.numpy(), images=_decoded_pictures(model, z, flip, first[1]),
                                variants={name: _decoded_pictures(model, z, flip, codes) for name, codes in others}))
    return grids


def row_covariates(model, datamodule, table: pd.DataFrame, rows: np.ndarray) -> torch.Tensor | None:
    """The covariate codes ``[n, C]`` of the rows ``rows`` of ``table`` (of a conditional model; None otherwise): the
    datamodule's codes of their examples (column ``example``), else the encoding of the table's covariate columns."""
    import numpy as np
    import torch

    if model.covariates is None:
        return None
    codes = getattr(datamodule, "covariate_codes", None)
    if codes is not None and "example" in table:
        return torch.as_tensor(codes)[torch.as_tensor(table["example"].to_numpy()[rows], dtype=torch.long)]
    return model.covariates.encode({key: np.asarray(table[key].to_numpy()[rows]) for key in model.covariates.keys
                                    if key in table}, "the embedding table")


def hover_images(datamodule, table: pd.DataFrame, max_images: int, flip: bool, seed: int = 0,
                 include: np.ndarray | None = None) -> tuple[np.ndarray | None, np.ndarray]:
    """Images (or vectors) of at most ``max_images`` rows of ``table`` and their row positions: the first
    ``max_images`` of the rows ``include`` (e.g. the windows of the sequences the page offers), the rest a seeded
    subsample of the other rows."""
    import numpy as np
    import torch

    chosen = np.zeros(0, dtype=np.int64) if include is None else np.unique(np.asarray(include, dtype=np.int64))
    chosen = chosen[:max_images]
    others = np.setdiff1d(np.arange(len(table)), chosen)
    budget = max_images - len(chosen)
    if len(others) > budget:
        others = np.random.default_rng(seed).choice(others, budget, replace=False)
    rows = np.sort(np.concatenate([chosen, others]))
    if not len(rows):
        return None, rows
    items = []
    for split, position in zip(table["split"].to_numpy()[rows], table["index"].to_numpy()[rows]):
        item = getattr(datamodule, f"{split}_set")[int(position)]
        items.append(torch.as_tensor(item[0] if isinstance(item, (tuple, list)) else item).float())
    return _displayable(torch.stack(items), flip), rows


def _dataset_index(datamodule, split: str, position: int) -> int:
    """The position in the whole data set (the order of ``datamodule.metadata``) of example ``position`` of ``split``."""
    from torch.utils.data import Subset

    dataset, index = getattr(datamodule, f"{split}_set"), int(position)
    while isinstance(dataset, Subset):
        index, dataset = int(dataset.indices[index]), dataset.dataset
    return index


def audio_folders(datamodule) -> list:
    """Where the recordings named in the metadata (``audio_filenames``, relative to the preprocessing's
    ``--audio_dir``) may be, in the order tried: the datamodule's ``audio_root`` (or ``audio_dir``) if it has one; the
    ``audio_dir`` recorded in ``preprocess_config.yaml`` beside the spectrograms (as given, i.e. relative to the
    working directory, then relative to the data folder and to its parent); the data folder itself."""
    from pathlib import Path

    import yaml

    folders = [Path(getattr(datamodule, name)) for name in ("audio_root", "audio_dir")
               if getattr(datamodule, name, None) is not None]
    root = Path(getattr(datamodule, "root", "."))
    data_folder = root if root.is_dir() else root.parent
    config = data_folder / "preprocess_config.yaml"
    if config.is_file():
        try:
            recorded = (yaml.safe_load(config.read_text()) or {}).get("audio_dir")
        except yaml.YAMLError:
            recorded = None
        if recorded:
            recorded = Path(recorded)
            folders += [recorded] if recorded.is_absolute() else [recorded, data_folder / recorded,
                                                                  data_folder.parent / recorded]
    folders.append(data_folder)
    unique = []
    for folder in folders:
        if folder not in unique:
            unique.append(folder)
    return unique


def original_clips(datamodule, indices) -> list:
    """The original sound (:class:`lvm.plotting.explorer.Sound`) of the examples ``indices`` (positions in the whole
    data set): cut from the recording named in ``metadata["audio_filenames"]`` at its ``onsets`` and ``offsets``
    (:func:`audio_folders` says where recordings are looked for); None where the metadata names no recording or the
    file is missing or unreadable, with one warning per such file naming it."""
    import warnings

    import numpy as np
    import soundfile

    from lvm.plotting.explorer import Sound

    metadata = getattr(datamodule, "metadata", {}) or {}
    if not all(key in metadata for key in ("audio_filenames", "onsets", "offsets")):
        return [None] * len(indices)
    folders = audio_folders(datamodule)
    found, clips = {}, []
    for index in indices:
        name = metadata["audio_filenames"][index]
        name = name.decode("utf-8") if isinstance(name, bytes) else str(name)
        if name not in found:
            path = next((folder / name for folder in folders if (folder / name).is_file()), None)
            if path is None:
                warnings.warn(f"Explorer: the recording {name} named in the metadata (audio_filenames) was not found "
                              f"(looked in {', '.join(str(folder) for folder in folders)}); its points play only their "
                              "reconstruction. Give the folder as the datamodule's audio_root, or restore the file.",
                              stacklevel=2)
            found[name] = path
        path = found[name]
        if path is None:
            clips.append(None)
            continue
        try:
            rate = soundfile.info(str(path)).samplerate
            start = max(int(round(float(metadata["onsets"][index]) * rate)), 0)
            stop = max(int(round(float(metadata["offsets"][index]) * rate)), start)
            samples = soundfile.read(str(path), start=start, stop=stop, dtype="float64", always_2d=True)[0]
        except (soundfile.SoundFileError, RuntimeError, ValueError) as error:
            warnings.warn(f"Explorer: the recording {path} cannot be read ({error}); its points play only their "
                          "reconstruction.", stacklevel=2)
            found[name] = None
            clips.append(None)
            continue
        clips.append(Sound(samples.mean(axis=1), float(rate)) if len(samples) else None)
    return clips


def _sounds(images: torch.Tensor, params: list[dict], durations: np.ndarray, iterations: int) -> list:
    """The sounds of spectrograms ``images [n, 1, F, T]`` (the preprocessing's orientation), each with its parameters
    and duration; inverted in batches of examples sharing their parameters."""
    import numpy as np

    from lvm.numerics.spectrograms import spectrogram_to_audio
    from lvm.plotting.explorer import Sound

    sounds = [None] * len(images)
    groups = {}
    for i, p in enumerate(params):
        groups.setdefault(tuple(sorted((key, str(value)) for key, value in p.items())), []).append(i)
    for members in groups.values():
        for start in range(0, len(members), AUDIO_BATCH):
            batch = members[start:start + AUDIO_BATCH]
            inverted = spectrogram_to_audio(images[batch], params[batch[0]], np.asarray(durations)[batch],
                                            iterations=iterations)
            waves, lengths = inverted.waveforms.cpu().numpy(), inverted.lengths.cpu().numpy()
            for i, wave, length in zip(batch, waves, lengths):
                sounds[i] = Sound(wave[: int(length)].astype(np.float64), float(inverted.sample_rate))
    return sounds


def explorer_audio(model, datamodule, table: pd.DataFrame, rows: np.ndarray, grids: list[LatentGrid], flip: bool,
                   iterations: int = AUDIO_ITERATIONS):
    """The page's sounds (:class:`lvm.plotting.explorer.ExplorerAudio`) for a model of vocalization spectrograms:
    of each row ``rows`` of ``table`` its original clip (:func:`original_clips`) and the sound of the spectrogram
    decoded at its latent (the posterior mean in ``table``) at its own duration; of each grid cell the sound of its
    decoded spectrogram at the data set's median duration (:func:`lvm.numerics.spectrograms.spectrogram_to_audio`,
    ``iterations`` of Griffin-Lim), with the parameters all files share (where they differ, e.g. recordings at
    several sample rates, those of the most common recording among the picture rows). None (no sound) for other data; a warning and None when the files lack what the
    inversion needs (e.g. the sample rate ``fs``) or the data set records no durations."""
    import warnings

    import numpy as np
    import torch

    from lvm.analysis.embedding import latent_columns
    from lvm.plotting.explorer import ExplorerAudio

    if not hasattr(datamodule, "inversion_params"):
        return None
    durations = getattr(datamodule, "durations", None)
    try:
        if durations is None or not len(durations):
            raise ValueError("the data set records no syllable durations (onsets and offsets, or duration)")
        indices = [_dataset_index(datamodule, split, position)
                   for split, position in zip(table["split"].to_numpy()[rows], table["index"].to_numpy()[rows])]
        params = [datamodule.inversion_params(index) for index in indices]
        try:
            shared = datamodule.inversion_params()
        except ValueError:  # files that differ, e.g. in their sample rate: the grid sounds as the most common one
            keys = [tuple(sorted((key, str(value)) for key, value in p.items())) for p in params]
            shared = params[max(range(len(keys)), key=lambda i: (keys.count(keys[i]), -i))]
    except ValueError as error:
        warnings.warn(f"Explorer: no sound on the page: {error}", stacklevel=2)
        return None
    z = torch.as_tensor(table[latent_columns(model.prior.dim)].to_numpy()[rows])
    with torch.no_grad():  # a conditional model's reconstructions under each example's covariates
        decoded = model.decode(z.to(model.device, model.dtype), row_covariates(model, datamodule, table, rows)
                               ).float().clamp(0, 1)  # [n, 1, F, T]
    reconstructions = _sounds(decoded, params, np.asarray(durations, dtype=float)[indices], iterations)
    median = float(np.median(durations))
    grid_sounds = []
    for grid in grids:
        images = torch.as_tensor(np.ascontiguousarray(grid.images), dtype=torch.float32, device=model.device)
        if images.dim() != 3:  # RGB or vectors: not spectrograms
            return None
        images = (images.flip(-2) if flip else images)[:, None]  # back to the preprocessing's orientation
        grid_sounds.append(_sounds(images, [shared] * len(images), np.full(len(images), median), iterations))
    return ExplorerAudio(originals=original_clips(datamodule, indices), reconstructions=reconstructions,
                         grids=grid_sounds)


def sequence_paths(table: pd.DataFrame, time_unit: str = "s", max_sequences: int = MAX_SEQUENCES,
                   max_windows: int = MAX_SEQUENCE_WINDOWS):
    """The recordings an explorer page offers (:class:`lvm.plotting.explorer.SequencePaths`) where ``table`` has the
    ``sequence`` and ``time`` columns of windowed data (:mod:`lvm.analysis.trajectory`), else None: the first
    ``max_sequences`` sequences by id, fewer where their windows would pass ``max_windows`` (at least one), each with
    its rows in time order."""
    import numpy as np

    from lvm.analysis.trajectory import SEQUENCE_FIELD, TIME_FIELD
    from lvm.plotting.explorer import SequencePaths

    if SEQUENCE_FIELD not in table or TIME_FIELD not in table or not len(table):
        return None
    ids = table[SEQUENCE_FIELD].astype(str).to_numpy()
    times = table[TIME_FIELD].to_numpy(dtype=float)
    order = np.lexsort((times, ids))  # by sequence, then time
    names, starts = np.unique(ids[order], return_index=True)
    groups = np.split(order, starts[1:])
    offered, windows = [], 0
    for name, rows in zip(names, groups):
        if len(offered) == max_sequences or (offered and windows + len(rows) > max_windows):
            break
        offered.append((str(name), rows))
        windows += len(rows)
    return SequencePaths(names=[name for name, _ in offered], rows=[rows for _, rows in offered],
                         times=[times[rows] for _, rows in offered], time_unit=time_unit, total=len(names))


def build_explorer(model, datamodule, table: pd.DataFrame, max_images: int = 2000, per_side: int = 24,
                   title: str | None = None, offsets: np.ndarray | None = None, audio: bool = True) -> str:
    """The explorer's HTML for ``table`` (from :func:`lvm.analysis.embedding.embedding_table`) of ``model`` and
    ``datamodule``; on the torus in the view re-centred by ``offsets`` ``[d]`` (:func:`lvm.numerics.torus.seam_offsets`
    of an embedding; ``None``: the square as it is). For spectrograms of recordings the page plays sound
    (:func:`explorer_audio`) unless ``audio`` is False. For windows of sequences (``sequence`` and ``time`` columns)
    the page draws a chosen recording's path and steps through its windows (:func:`sequence_paths`)."""
    import numpy as np
    import torch

    from lvm.analysis.embedding import latent_columns
    from lvm.plotting.explorer import explorer_html

    dim, periodic = model.prior.dim, model.prior.periodic
    columns = latent_columns(dim)
    embedding = table[columns].to_numpy()  # [n, d]
    flip = getattr(datamodule, "image_axes", None) is not None
    bounds = plot_bounds(embedding, periodic)
    from lvm.analysis.trajectory import time_unit

    sequences = sequence_paths(table, time_unit(datamodule), max_windows=min(MAX_SEQUENCE_WINDOWS, max_images))
    images, rows = hover_images(datamodule, table, max_images, flip,
                                include=None if sequences is None else np.concatenate(sequences.rows))
    decoded = None  # vectors: the decoded mean at each point's latent, drawn over the point's own vector
    if images is not None and images.ndim == 2:
        decoded = _decoded_pictures(model, torch.as_tensor(embedding[rows]), flip,
                                    row_covariates(model, datamodule, table, rows))
    shown = table.drop(columns=[c for c in table.columns if c in HIDDEN_COLUMNS or c.startswith(("mode", "spread"))])
    first = columns + [c for c in ("label_name", "label") if c in shown]  # the label colours the first view
    shown = shown[first + [c for c in shown.columns if c not in first]]
    conditions = None if model.covariates is None else grid_conditions(model.covariates)
    grids = latent_grids(model, embedding, bounds, per_side, flip, offsets, conditions)
    sounds = explorer_audio(model, datamodule, table, rows, grids, flip) if audio and images is not None else None
    return explorer_html(shown, columns, periodic=periodic, images=images, image_rows=rows, decoded=decoded,
                         grids=grids, audio=sounds, grid_conditions=None if conditions is None else
                         [name for name, _ in conditions],
                         cmap="magma" if flip else "gray", bounds=None if periodic else bounds, offsets=offsets,
                         sequences=sequences,
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
    parser.add_argument("--audio", type=yes_or_no, default=True,
                        help="for spectrograms of recordings, play the points' original clips, their reconstructions "
                             "and the grid's decoded sounds on click (true/false)")
    args, rest = parser.parse_known_args(argv)

    def explore() -> None:
        from lvm.analysis.embedding import latent_columns  # (after the options: --help stays fast)
        from lvm.numerics.torus import seam_offsets
        from lvm.runs.files import write_atomically

        model, datamodule, table, _ = checkpoint_embedding(args, rest)
        recentred = args.recentre and model.prior.periodic
        offsets = seam_offsets(table[latent_columns(model.prior.dim)].to_numpy()) if recentred else None
        html = build_explorer(model, datamodule, table, args.max_images, args.per_side, offsets=offsets,
                              audio=args.audio)
        out = write_atomically(args.out, lambda partial: partial.write_text(html, encoding="utf-8"))
        print(f"Wrote {out} ({len(table)} points); open it in a browser (it needs no network).")

    run_command(explore)


if __name__ == "__main__":
    main()
