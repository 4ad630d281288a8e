"""Interactive HTML explorer of a latent embedding: one self-contained file built with Bokeh.

``explorer_html`` turns a table of embedded examples (latent coordinates plus any metadata), pictures of a
subsample of them and decoded grids over latent planes into the text of one HTML page. Write it to a file and
open that in any browser (double-click it, or ``python -m webbrowser explorer.html``): BokehJS and the pictures
are inlined, so the page needs no server and no network. A picture is an image, or for data without an image shape
(neurons, features) a small line plot of value against feature index: every line plot of a page shares one value
range, which the page's header and each tooltip state.

In the page you can
- hover a point to see its metadata and, when it is in the picture subsample, its picture (for vectors with the
  decoded mean at its latent drawn over it); where points overlap, one tooltip lists the nearest three and says
  how many more are there;
- hover empty space to see what the decoder generates there (the latent grid layer, drawn as faint cells); one
  tooltip at a time, the points' over the cell's;
- on the torus, read the original latent coordinates off a re-centred view (``offsets``: the square shifted so that
  its edges run through the emptiest rows and columns, :func:`lvm.numerics.torus.seam_offsets`): points and cells are
  drawn at ``u = (z - c) mod 1``, while the ticks, the tooltips and the table give ``z``;
- recolour the points by any metadata field with the "Colour by" selector;
- for a conditional model, pick the covariates the grid is decoded under with the "Decode the grid as" selector
  (``grid_conditions``: counterfactual decoding, the same latent points as another animal or duration; each choice's
  grid is decoded when the page is built, so switching only swaps pictures);
- pan, zoom, box-select (selections are linked across the projections of a 3-D latent), reset and save a PNG;
- with sound (``audio``, :class:`ExplorerAudio`: spectrograms of vocalizations), click a point of the picture
  subsample to hear its original recording (the "reconstruction" button then plays the sound of its decoded
  spectrogram), or empty space to hear the decoded sound of that grid cell; the "Playback speed" selector slows
  playback (x0.25, x0.1) with the pitch falling by the same factor (time expansion, for ultrasonic calls). The
  clips are inlined as Ogg/Opus data URIs (:func:`audio_data_uri`) and played by an HTML ``Audio`` element;
- for windows of recordings (``sequences``, :class:`SequencePaths`: data with ``sequence`` and ``time`` metadata),
  pick a recording with the "Sequence" selector to draw its path through the embedding (its windows' posterior means
  in time order), and move the "Time" slider to move a marker along it and show that window's picture (and, with
  sound, play it with the "window" button).
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field as dataclass_field

import matplotlib.colors
import matplotlib.image
import numpy as np
import pandas as pd
from bokeh.embed import file_html
from bokeh.layouts import column, gridplot
from bokeh.events import Tap
from bokeh.models import (BoxAnnotation, Button, BoxSelectTool, ColorBar, ColumnDataSource, CustomJS, CustomJSTickFormatter,
                          Div, HoverTool, Legend, LegendItem, LinearColorMapper, PanTool, Range1d, ResetTool, SaveTool,
                          Select, Slider, Tooltip, WheelZoomTool)
from bokeh.palettes import Category10, Category20, Turbo256, Viridis256, linear_palette
from bokeh.plotting import figure
from bokeh.resources import INLINE

from lvm.numerics.torus import translate

__all__ = ["LatentGrid", "Sound", "ExplorerAudio", "SequencePaths", "audio_data_uri", "explorer_html"]

MAX_COLOR_CATEGORIES = 50  # by default a non-numeric column is a colour field if it has at most this many values
MAX_INTEGER_CATEGORIES = 20  # integer columns with at most this many values are categorical, as in lvm.plotting.figures
THUMBNAIL_WIDTH_PX = 112
LINE_PLOT_HEIGHT_PX = 56  # line plots of vectors are THUMBNAIL_WIDTH_PX wide and this high, drawn pixel for pixel
MAX_TOOLTIP_POINTS = 3  # a tooltip over overlapping points lists the nearest this many and counts the others
MISSING_COLOR = "#bbbbbb"
DATA_LINE_COLOR, MEAN_LINE_COLOR, ZERO_LINE_COLOR = "#999999", "#1f77b4", "#e4e4e4"
IMAGE_COLUMN = "__explorer_image"  # <img> tag of a row's picture, "" for rows without one
ROW_COLUMN = "__explorer_row"  # row position: the y axis of a 1-D latent without a log-likelihood column
CELL_COLUMN = "__explorer_cell"  # latent coordinates of a grid cell, as text
CONDITION_COLUMN_PREFIX = "__explorer_condition:"  # <img> tags of a grid's cells decoded under condition k >= 1
CODE_COLUMN_PREFIX = "__explorer_code:"  # integer codes 0..k-1 of a categorical colour field, -1 where missing
VIEW_COLUMN_PREFIX = "__explorer_view:"  # where a latent is drawn in a re-centred torus view, (z - c) mod 1
AUDIO_COLUMN = "__explorer_audio"  # data URI of a row's original clip (of a cell's decoded sound), "" for none
RECONSTRUCTION_COLUMN = "__explorer_reconstruction"  # data URI of the sound of a row's decoded spectrogram, or ""
SPEED_SUFFIX = ":speed"  # the playback rate at which a clip of that column plays at its true speed (see audio_data_uri)
PLAYBACK_SPEEDS = {"x1": 1.0, "x0.25": 0.25, "x0.1": 0.1}  # the playback-rate selector's options
OPUS_RATES = (8_000, 12_000, 16_000, 24_000, 48_000)  # the sample rates Opus encodes
OPUS_COMPRESSION = 0.85  # libsndfile's compression level for Opus (0: best quality, 1: smallest)
TAP_RADIUS_PX = 8  # a click this close (screen pixels) to a point with sound plays it
PROJECTIONS = {1: [(0,)], 2: [(0, 1)], 3: [(0, 1), (0, 2), (1, 2)]}  # latent dims plotted, by number of latents
PATH_COLOR, MARKER_COLOR = "#222222", "#d62728"  # a sequence's path and the slider's window on it


@dataclass
class LatentGrid:
    """Decoded means on a regular grid over one plane of the latent space."""

    dims: tuple[int, ...]  # the latent coordinates that vary: (i, j) for a plane, (i,) for a 1-D latent (0-based)
    coords: np.ndarray  # [g, len(dims)] grid coordinates, cell centres of a regular grid
    images: np.ndarray  # [g, H, W] (grey) or [g, H, W, 3] (RGB), floats in [0, 1], row 0 at the top; or [g, D] vectors
    # the same cells decoded under other conditions (a conditional model's counterfactual covariates), by the name
    # the page's "Decode the grid as" selector gives them: {name: images like ``images``}
    variants: dict[str, np.ndarray] = dataclass_field(default_factory=dict)


@dataclass
class Sound:
    """A mono sound: samples (floats, full scale 1) at ``sample_rate`` Hz."""

    waveform: np.ndarray  # [n]
    sample_rate: float


@dataclass
class ExplorerAudio:
    """The sounds of an explorer page: of each picture row (in the order of ``image_rows``) its original recording
    and the sound of its decoded spectrogram (None where there is none, e.g. the recording is missing), and of each
    grid (in the order of ``grids``) the decoded sound of each cell."""

    originals: list[Sound | None]
    reconstructions: list[Sound | None]
    grids: list[list[Sound]] = ()


def audio_data_uri(sound: Sound | None) -> tuple[str, float]:
    """``(uri, speed)``: the sound as an Ogg/Opus ``data:`` URI, peak-normalised to 0.9 of full scale, and the
    ``playbackRate`` that plays it at its true speed; ``("", 1.0)`` for None or an empty sound. Opus encodes only
    8, 12, 16, 24 and 48 kHz: a sound at up to 48 kHz is resampled (polyphase) to the lowest of these at or above
    its rate (speed 1); one at a higher rate (ultrasound) is stored sample for sample as if at 48 kHz, i.e. slowed
    down by ``rate / 48000``, and played back at ``speed = rate / 48000`` (Opus keeps up to 20 kHz of the stored
    48 kHz, so up to ``20 kHz * rate / 48 kHz`` of the original)."""
    import soundfile
    from scipy.signal import resample_poly

    if sound is None or len(sound.waveform) == 0:
        return "", 1.0
    wave = np.asarray(sound.waveform, dtype=np.float64)
    rate = float(sound.sample_rate)
    speed = 1.0
    if rate > OPUS_RATES[-1]:
        stored, speed = OPUS_RATES[-1], rate / OPUS_RATES[-1]
    else:
        stored = next(r for r in OPUS_RATES if r >= rate - 1e-6)
        if abs(stored - rate) > 1e-6:
            up, down = _rational(stored / rate)
            wave = resample_poly(wave, up, down)
    peak = np.abs(wave).max()
    wave = np.zeros_like(wave) if not peak > 0 else 0.9 * wave / peak
    buffer = io.BytesIO()
    soundfile.write(buffer, wave.astype(np.float32), stored, format="OGG", subtype="OPUS",
                    compression_level=OPUS_COMPRESSION)
    return "data:audio/ogg;codecs=opus;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), speed


def _rational(ratio: float) -> tuple[int, int]:
    from fractions import Fraction

    fraction = Fraction(ratio).limit_denominator(1000)
    return fraction.numerator, fraction.denominator


def _audio_columns(sounds: list[Sound | None], column: str, rows: np.ndarray | None, n_rows: int) -> dict:
    """The data URI and speed columns of ``sounds``, placed at ``rows`` of ``n_rows`` (all rows when None)."""
    uris, speeds = [""] * n_rows, np.ones(n_rows, dtype=np.float32)
    for position, sound in zip(range(n_rows) if rows is None else rows, sounds):
        uris[position], speeds[position] = audio_data_uri(sound)
    return {column: uris, column + SPEED_SUFFIX: speeds}


@dataclass
class SequencePaths:
    """The recordings the page's "Sequence" selector offers: for each, its ``name``, the ``rows`` (positions in the
    table) of its windows in time order and their ``times`` (in ``time_unit``); ``total``: how many sequences the
    data have (the page says how many it offers of them)."""

    names: list[str]
    rows: list[np.ndarray]
    times: list[np.ndarray]
    time_unit: str = "s"
    total: int = 0


@dataclass
class _ColorField:
    """Colouring the points by one table column: the data column that ``mapper`` maps to colours, and for a
    categorical column the names of its codes and the codes of each row."""

    name: str
    data_column: str
    mapper: LinearColorMapper
    categories: list[str] | None = None
    codes: np.ndarray | None = None


@dataclass
class _Axis:
    label: str
    data_column: str
    range: Range1d
    offset: float | None = None  # the seam of a re-centred torus view: drawn at u, ticked with (u + offset) mod 1


@dataclass
class _LinePlots:
    """How vectors are drawn: value (y, ``low`` to ``high``, shared by every line plot of the page) against feature
    index (x, 1 to ``size``)."""

    low: float
    high: float
    size: int

    def caption(self, lines: str) -> str:
        return f"{lines} against feature index 1–{self.size} (x); values {self.low:.3g} to {self.high:.3g} (y)"


def explorer_html(table: pd.DataFrame, latent_columns: list[str], *, periodic: bool,
                  images: np.ndarray | None = None, image_rows: np.ndarray | None = None,
                  decoded: np.ndarray | None = None, grids: list[LatentGrid] = (),
                  color_fields: list[str] | None = None, categories: dict[str, list[str]] | None = None,
                  cmap: str = "gray", title: str = "Embedding explorer",
                  bounds: list[tuple[float, float]] | None = None, offsets: np.ndarray | None = None,
                  audio: ExplorerAudio | None = None, grid_conditions: list[str] | None = None,
                  sequences: SequencePaths | None = None) -> str:
    """The text of a self-contained HTML page exploring an embedding.

    Args:
        table: one row per example: the latent coordinates ``latent_columns`` and any metadata columns, all
            shown when hovering the example (numbers to 4 significant digits).
        latent_columns: the latent coordinate columns, in order. One latent is plotted as x = z1 against the
            ``log_likelihood`` column (or else the row position); two as one z1–z2 plot; three or more as the
            three linked projections z1–z2, z1–z3, z2–z3 of the first three.
        periodic: the latent space is the torus [0, 1)^d: every latent axis spans exactly one period.
        images: ``[n_img, H, W]`` or ``[n_img, H, W, 3]`` floats in [0, 1], row 0 at the top, or ``[n_img, D]``
            vectors (data without an image shape, drawn as line plots), shown when hovering the rows
            ``image_rows`` (row positions in ``table``, e.g. a random subsample of a large table);
            ``images=None`` with ``image_rows`` None or empty: no pictures.
        decoded: ``[n_img, D]`` decoded means at the latents of the rows ``image_rows``, drawn over their
            vectors ``images`` (vectors only).
        grids: decoded images (or vectors) on regular grids over the plotted planes ((0, 1), (0, 2), (1, 2) or
            (0,)), drawn as faint cells under the points and shown when hovering them.
        color_fields: the columns offered by the colour selector, the first one shown initially; default:
            every metadata column that is numeric or has at most 50 distinct values.
        categories: the category names of integer-coded columns, e.g. ``{"label": ["zero", "one", ...]}``
            (or the order of a string column's values). These columns, string columns and integer columns with
            at most 20 values are coloured by category with a legend, the others on a colour bar.
        cmap: matplotlib colour map of grey images.
        title: the page's title.
        bounds: the axis range ``(lo, hi)`` of each latent when not ``periodic``; default: the data's range.
        offsets: ``[len(latent_columns)]`` the seams of a re-centred torus view (``periodic`` only;
            :func:`lvm.numerics.torus.seam_offsets`): the points and the grid cells (whose ``coords`` are the latents
            decoded) are drawn at ``u = (z - c) mod 1``, the axes ticked with the original ``(u + c) mod 1`` and
            labelled with the seam; tooltips show original coordinates. ``None``: the square as it is.
        audio: the sounds of the picture rows (their original clips and the sounds of their decoded
            spectrograms) and of the grid cells (:class:`ExplorerAudio`): a click on a point plays its clip, a click
            in a cell its decoded sound, at the speed of the page's "Playback speed" selector. ``None``: no sound.
        grid_conditions: the options of the "Decode the grid as" selector (a conditional model's covariates, e.g.
            ``["reference (animal = a)", "animal = b"]``): the first names what every grid's ``images`` were decoded
            under, each other one a key of every grid's ``variants``; choosing one swaps the cells' pictures in the
            page. ``None`` (or one name): no selector.
        sequences: the recordings whose paths the "Sequence" selector draws and whose windows the "Time" slider
            steps through (:class:`SequencePaths`; the first is drawn when the page opens). ``None``: neither.
    """
    _check_table(table, latent_columns, periodic, bounds, offsets)
    conditions = _check_conditions(grid_conditions, grids)
    table = table.reset_index(drop=True)
    projections = PROJECTIONS[min(len(latent_columns), 3)]
    grids_by_projection = _grids_by_projection(grids, projections)
    fields = _color_fields(table, latent_columns, color_fields, categories or {})
    line_plots = _line_plots(images, decoded, grids)
    data = {name: _column_values(table[name]) for name in table.columns}
    data[IMAGE_COLUMN] = _point_image_tags(len(table), images, image_rows, decoded, cmap, line_plots)
    grid_sounds = _check_audio(audio, image_rows, grids)
    if audio is not None:
        rows = np.asarray(image_rows)
        data.update(_audio_columns(audio.originals, AUDIO_COLUMN, rows, len(table)))
        data.update(_audio_columns(audio.reconstructions, RECONSTRUCTION_COLUMN, rows, len(table)))
    for field in fields:
        if field.codes is not None:
            data[field.data_column] = field.codes

    latent_ranges = _latent_ranges(table, latent_columns, periodic, bounds, grids)
    latent_axes = [_Axis(name, name, latent_range) for name, latent_range in zip(latent_columns, latent_ranges)]
    if offsets is not None:  # the plotted latents drawn in the view, shown (tooltips) as they are
        for axis, offset in zip(latent_axes[:3], offsets):
            axis.data_column, axis.offset = VIEW_COLUMN_PREFIX + axis.label, float(offset)
            drawn = translate(table[axis.label].to_numpy(dtype=float), -axis.offset)
            data[axis.data_column] = drawn.astype(np.float32)  # as the table's floats
    value_axis = None  # the y axis of a 1-D latent
    if len(projections[0]) == 1:
        if "log_likelihood" in table and _is_numeric(table["log_likelihood"]):
            label, data_column = "log_likelihood", "log_likelihood"
        else:
            label, data_column = "row", ROW_COLUMN
            data[ROW_COLUMN] = np.arange(len(table))
        value_axis = _Axis(label, data_column, Range1d(*_padded_range(np.asarray(data[data_column], dtype=float))))
    points = ColumnDataSource(data)

    tooltip_columns = list(latent_columns) + [name for name in table.columns if name not in latent_columns]
    point_caption, cell_caption = _line_plot_captions(line_plots, decoded is not None)
    shared_hover = dict(points=points, columns=tooltip_columns,
                        formats=[_value_format(table[name]) for name in tooltip_columns], image_column=IMAGE_COLUMN,
                        cell_column=CELL_COLUMN, point_caption=point_caption, cell_caption=cell_caption,
                        max_points=MAX_TOOLTIP_POINTS)
    plots, renderers, cell_sources, tooltips = [], [], [], []
    for dims in projections:
        x_axis = latent_axes[dims[0]]
        y_axis = latent_axes[dims[1]] if len(dims) == 2 else value_axis
        side = 560 if len(projections) == 1 else 340
        frame = (side, side if len(dims) == 2 else 300)  # frame width and height, pixels
        plot = _projection_figure(x_axis, y_axis, periodic, frame, square=len(dims) == 2)
        cells = [_draw_grid(plot, grid, latent_axes, cmap, line_plots,
                            strip_range=None if len(dims) == 2 else y_axis.range, sounds=grid_sounds.get(id(grid)),
                            conditions=conditions)
                 for grid in grids_by_projection[dims]]
        renderer = _draw_points(plot, points, x_axis, y_axis, fields, len(table))
        tooltips.append(_add_hover(plot, renderer, cells, x_axis, y_axis, frame, shared_hover))
        plots.append(plot)
        renderers.append(renderer)
        cell_sources.append([cell.data_source for cell in cells])

    legend, color_bar, legend_items = _color_keys(plots[-1], fields, renderers[-1])
    n_images = 0 if images is None else len(images)
    header = Div(text=_header_html(title, len(table), n_images, sum(len(grid.coords) for grid in grids), periodic,
                                   latent_axes, line_plots, audio is not None, conditions))
    controls = []
    if fields:
        selector = Select(title="Colour by", name="colour-selector", value=fields[0].name,
                          options=[field.name for field in fields], width=220)
        selector.js_on_change("value", CustomJS(
            args=dict(selector=selector, renderers=renderers, mappers=[field.mapper for field in fields],
                      data_columns=[field.data_column for field in fields], legend=legend, color_bar=color_bar,
                      legend_items=legend_items),
            code=_RECOLOUR_JS))
        controls.append(selector)
    if len(conditions) > 1:
        controls.append(_condition_selector(conditions, [source for sources in cell_sources for source in sources],
                                            tooltips))
    playback = None
    if audio is not None:
        audio_row, playback = _audio_controls(plots, points, cell_sources, latent_axes, value_axis, projections)
        controls.append(audio_row)
    if sequences is not None and sequences.names:
        axes = [(latent_axes[dims[0]], latent_axes[dims[1]] if len(dims) == 2 else value_axis,
                 (periodic, periodic and len(dims) == 2)) for dims in projections]  # (x, y, which wrap round)
        controls.append(_sequence_controls(sequences, plots, axes, points, playback))
    page = column(header, *controls, gridplot([plots], toolbar_location="right", toolbar_options=dict(logo=None)))
    return file_html(page, resources=INLINE, title=title)


_RECOLOUR_JS = """
const chosen = selector.options.indexOf(selector.value)
const color = {field: data_columns[chosen], transform: mappers[chosen]}
for (const renderer of renderers) {
    for (const glyph of [renderer.glyph, renderer.selection_glyph, renderer.nonselection_glyph]) {
        glyph.fill_color = color
        glyph.line_color = color
    }
}
const categorical = legend_items[chosen] != null
if (legend != null) {
    legend.visible = categorical
    if (categorical) {
        legend.items = legend_items[chosen]
        legend.title = selector.value
    }
}
if (color_bar != null) {
    color_bar.visible = !categorical
    if (!categorical) {
        color_bar.color_mapper = mappers[chosen]
        color_bar.title = selector.value
    }
}
"""

_HOVER_JS = """
// One tooltip for the plot: the hovered points, nearest to the cursor first (at most max_points, then how many
// more), else the hovered grid cell. The hover tool inspects all its renderers, then calls this once per renderer:
// the call for the points reads every inspection and does the work.
if (cb_data.renderer !== points_renderer)
    return
const {x, y, sx, sy} = cb_data.geometry
const inside = Number.isFinite(sx + sy)
const hits = inside ? Array.from(points.inspected.indices) : []
const pixels_per_unit = [frame[0] / (x_range.end - x_range.start), frame[1] / (y_range.end - y_range.start)]
const xs = points.data[x_column], ys = points.data[y_column]
const distance = (i) => Math.hypot((xs[i] - x) * pixels_per_unit[0], (ys[i] - y) * pixels_per_unit[1])
const nearest = hits.map((i) => [distance(i), i]).sort((a, b) => a[0] - b[0] || a[1] - b[1])
    .slice(0, max_points).map(([, i]) => i)
const cell = hits.length || !inside ? null
    : cells.map((source, k) => [k, source.inspected.indices[0]]).find(([, i]) => i != null) ?? null

const element = (tag, style, text) => {
    const el = document.createElement(tag)
    el.style.cssText = style
    if (text != null)
        el.textContent = text  // metadata is text, never markup
    return el
}
const significant = (value) => {  // printf's %.4g
    if (!Number.isFinite(value) || value == 0)
        return String(value)
    const exponent = Math.floor(Math.log10(Math.abs(value)))
    const text = exponent < -4 || exponent >= 4 ? value.toExponential(3) : value.toPrecision(4)
    const [mantissa, power] = text.split("e")
    const trimmed = mantissa.includes(".") ? mantissa.replace(/\\.?0+$/, "") : mantissa
    return power == null ? trimmed : `${trimmed}e${power}`
}
const picture = (box, tag, caption) => {
    if (!tag)
        return
    box.insertAdjacentHTML("beforeend", tag)  // an <img> of an inline PNG that this page was built with
    if (caption)
        box.append(element("div", "font-size: 11px; color: #555; max-width: 240px", caption))
}
const point_entry = (i) => {
    const entry = element("div", "max-width: 240px; overflow-wrap: anywhere")
    entry.className = "explorer-point"
    picture(entry, points.data[image_column][i], point_caption)
    const table = element("table", "border-spacing: 0")
    columns.forEach((name, k) => {
        const value = points.data[name][i]
        const row = table.insertRow()
        row.append(element("th", "text-align: left; padding-right: 8px", name))
        row.append(element("td", "", formats[k] == "float" ? significant(value) : String(value)))
    })
    entry.append(table)
    return entry
}
const points_content = () => {
    const content = element("div", "")
    const entries = element("div", "display: flex; gap: 12px; align-items: flex-start")
    entries.append(...nearest.map(point_entry))
    content.append(entries)
    if (hits.length > nearest.length) {
        const count = hits.length - nearest.length
        const more = element("div", "margin-top: 4px; font-style: italic", `and ${count} more here`)
        more.className = "explorer-more"
        content.append(more)
    }
    return content
}
const cell_content = ([k, i]) => {
    const content = element("div", "")
    content.className = "explorer-cell"
    picture(content, cells[k].data[image_column][i], cell_caption)
    content.append(element("div", "", `decoded at ${cells[k].data[cell_column][i]}`))
    return content
}

const key = hits.length ? `points ${nearest} of ${hits.length}` : cell != null ? `cell ${cell}` : null
if (key == null) {
    tooltip.clear()
} else {
    if (key !== tooltip.explorer_key) {  // rebuilt only when what it shows changes
        tooltip.content = hits.length ? points_content() : cell_content(cell)
        tooltip.explorer_key = key
    }
    tooltip.show({x: sx, y: sy})
}
"""


def _check_audio(audio: ExplorerAudio | None, image_rows: np.ndarray | None, grids: list[LatentGrid]) -> dict:
    """The sounds of each grid's cells by ``id(grid)``; errors for sounds that do not match the rows or cells."""
    if audio is None:
        return {}
    count = 0 if image_rows is None else len(image_rows)
    if len(audio.originals) != count or len(audio.reconstructions) != count:
        raise ValueError(f"audio needs one original and one reconstruction (or None) per picture row: got "
                         f"{len(audio.originals)} and {len(audio.reconstructions)} for {count} image_rows")
    if len(audio.grids) not in (0, len(grids)):
        raise ValueError(f"audio.grids has the sounds of {len(audio.grids)} grids for {len(grids)} grids")
    sounds = {}
    for grid, cell_sounds in zip(grids, audio.grids):
        if len(cell_sounds) != len(grid.coords):
            raise ValueError(f"the grid over dims {tuple(grid.dims)} has {len(grid.coords)} cells but "
                             f"{len(cell_sounds)} sounds")
        sounds[id(grid)] = cell_sounds
    return sounds


def _audio_controls(plots: list, points: ColumnDataSource, cell_sources: list[list[ColumnDataSource]],
                    latent_axes: list[_Axis], value_axis: _Axis | None, projections: list[tuple[int, ...]]):
    """The playback-speed selector, the buttons replaying a clicked point's original and reconstruction, a status
    line, and on each plot the click (tap) handler that plays a point's clip or a grid cell's decoded sound."""
    from bokeh.layouts import row

    speed = Select(title="Playback speed (pitch falls with it)", name="playback-speed", value=next(iter(PLAYBACK_SPEEDS)),
                   options=list(PLAYBACK_SPEEDS), width=220)
    original = Button(label="\u25b6 original", name="play-original", width=110, disabled=True)
    reconstruction = Button(label="\u25b6 reconstruction", name="play-reconstruction", width=140, disabled=True)
    status = Div(text="Click a point to hear it, or empty space to hear the decoded sound there.",
                 name="audio-status", width=520)
    shared = dict(speed=speed, speeds=PLAYBACK_SPEEDS, status=status, original_button=original,
                  reconstruction_button=reconstruction)
    speed.js_on_change("value", CustomJS(args=shared, code=_PLAY_JS + _SPEED_JS))
    original.js_on_event("button_click", CustomJS(args=dict(shared, which="original"), code=_PLAY_JS + _REPLAY_JS))
    reconstruction.js_on_event("button_click", CustomJS(args=dict(shared, which="reconstruction"),
                                                        code=_PLAY_JS + _REPLAY_JS))
    for plot, dims, cells in zip(plots, projections, cell_sources):
        x_axis = latent_axes[dims[0]]
        y_axis = latent_axes[dims[1]] if len(dims) == 2 else value_axis
        plot.js_on_event(Tap, CustomJS(code=_PLAY_JS + _TAP_JS, args=dict(
            shared, plot=plot, points=points, cells=cells, x_column=x_axis.data_column, y_column=y_axis.data_column,
            x_range=x_axis.range, y_range=y_axis.range, audio_column=AUDIO_COLUMN,
            reconstruction_column=RECONSTRUCTION_COLUMN, speed_suffix=SPEED_SUFFIX, cell_column=CELL_COLUMN,
            radius=TAP_RADIUS_PX)))
    return row(speed, original, reconstruction, status), shared


# the one Audio element playing at a time, in window.explorer_audio with the clicked point's clips
_PLAY_JS = """
const state = (window.explorer_audio ??= {element: null, point: null})
const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
const play = (uri, clip_speed, what) => {
    if (state.element != null)
        state.element.pause()
    state.element = null
    if (!uri) {
        status.text = escape(`No sound: ${what}`)
        return
    }
    const audio = new Audio(uri)
    audio.preservesPitch = false  // slower playback lowers the pitch: time expansion
    audio.mozPreservesPitch = false
    audio.webkitPreservesPitch = false
    audio.explorer_speed = clip_speed
    audio.defaultPlaybackRate = audio.playbackRate = clip_speed * speeds[speed.value]
    state.element = audio
    status.text = escape(`Playing ${what} at ${speed.value}`)
    audio.play().catch((error) => {
        if (error.name === "AbortError" || state.element !== audio)
            return  // paused for the next clip before it started
        status.text = escape(`Cannot play ${what}: ${error.message}`)
        console.warn(`explorer: cannot play ${what}: ${error.message}`)
    })
}
"""

_SPEED_JS = """
if (state.element != null)
    state.element.playbackRate = state.element.explorer_speed * speeds[speed.value]
"""

_REPLAY_JS = """
if (state.point == null)
    status.text = "Click a point first."
else
    play(...state.point[which], `the ${which} of ${state.point.label}`)
"""

_TAP_JS = """
const {x, y} = cb_obj
const pixels_per_unit = [plot.frame_width / (x_range.end - x_range.start),
                         plot.frame_height / (y_range.end - y_range.start)]
const xs = points.data[x_column], ys = points.data[y_column]
const originals = points.data[audio_column], reconstructions = points.data[reconstruction_column]
let nearest = -1, best = radius
for (let i = 0; i < xs.length; i++) {
    if (!originals[i] && !reconstructions[i])
        continue
    const distance = Math.hypot((xs[i] - x) * pixels_per_unit[0], (ys[i] - y) * pixels_per_unit[1])
    if (distance <= best) {
        best = distance
        nearest = i
    }
}
if (nearest >= 0) {
    const i = nearest
    state.point = {original: [originals[i], points.data[audio_column + speed_suffix][i]],
                   reconstruction: [reconstructions[i], points.data[reconstruction_column + speed_suffix][i]],
                   label: `point ${i + 1}`}
    original_button.disabled = !originals[i]
    reconstruction_button.disabled = !reconstructions[i]
    if (originals[i])
        play(...state.point.original, `the original of point ${i + 1}`)
    else
        play(...state.point.reconstruction, `the reconstruction of point ${i + 1} (its recording is missing)`)
} else {
    for (const source of cells) {
        const d = source.data
        const clips = d[audio_column]
        if (clips == null)
            continue
        const k = d.x.findIndex((cx, j) => Math.abs(x - cx) <= d.width[j] / 2 && Math.abs(y - d.y[j]) <= d.height[j] / 2)
        if (k >= 0) {
            play(clips[k], d[audio_column + speed_suffix][k], `the decoded sound at ${d[cell_column][k]}`)
            break
        }
    }
}
"""


def _path_xy(xs: np.ndarray, ys: np.ndarray, rows: np.ndarray, wraps: tuple[bool, bool]) -> dict[str, list]:
    """The line through the points ``rows`` (``xs``, ``ys`` where they are drawn), broken (NaN) where a step wraps
    round the torus (more than half a period along an axis that ``wraps``) -- ``_PATH_JS`` does the same."""
    x, y = [], []
    for i, row in enumerate(rows):
        if i and any(wrap and abs(values[row] - values[rows[i - 1]]) > 0.5
                     for wrap, values in zip(wraps, (xs, ys))):
            x.append(float("nan"))
            y.append(float("nan"))
        x.append(float(xs[row]))
        y.append(float(ys[row]))
    return {"x": x, "y": y}


def _slider_range(times: np.ndarray) -> dict[str, float]:
    """The time slider's ``start``, ``end`` and ``step`` for one sequence's window ``times`` (end > start)."""
    steps = np.diff(times)
    step = float(np.median(steps[steps > 0])) if np.any(steps > 0) else 1.0
    start, end = float(times[0]), float(times[-1])
    return {"start": start, "end": end if end > start else start + step, "step": step}


def _sequence_controls(sequences: SequencePaths, plots: list, axes: list[tuple[_Axis, _Axis, tuple[bool, bool]]],
                       points: ColumnDataSource, playback: dict | None):
    """The "Sequence" selector, the "Time" slider and the window's picture; on each plot the chosen sequence's path
    and a marker at the slider's window."""
    from bokeh.layouts import row

    names = [str(name) for name in sequences.names]
    rows = [np.asarray(r, dtype=np.int64) for r in sequences.rows]
    times = [np.asarray(t, dtype=float) for t in sequences.times]
    paths, markers, columns, wraps = [], [], [], []
    for plot, (x_axis, y_axis, wrap) in zip(plots, axes):
        xs, ys = points.data[x_axis.data_column], points.data[y_axis.data_column]
        path = ColumnDataSource(_path_xy(xs, ys, rows[0], wrap), name=f"trajectory-path {x_axis.label}-{y_axis.label}")
        marker = ColumnDataSource({"x": [float(xs[rows[0][0]])], "y": [float(ys[rows[0][0]])]},
                                  name=f"trajectory-marker {x_axis.label}-{y_axis.label}")
        plot.line(x="x", y="y", source=path, line_color=PATH_COLOR, line_width=2, line_alpha=0.8)
        plot.scatter(x="x", y="y", source=marker, size=16, marker="circle", fill_color=MARKER_COLOR,
                     line_color="white", line_width=2)
        paths.append(path)
        markers.append(marker)
        columns.append([x_axis.data_column, y_axis.data_column])
        wraps.append(list(wrap))
    unit = sequences.time_unit
    selector = Select(title=f"Sequence ({len(names)} of {max(sequences.total, len(names))})",
                      name="sequence-selector", value=names[0], options=names,
                      width=max(220, min(420, 9 * max(len(name) for name in names))))
    slider = Slider(title=f"Time ({unit})", name="time-slider", value=float(times[0][0]), width=420,
                    format="0[.]000", **_slider_range(times[0]))
    window = Div(name="sequence-window", width=360, text="")
    args = dict(selector=selector, slider=slider, window_div=window, points=points, paths=paths, markers=markers,
                columns=columns, wraps=wraps, sequence_rows=[r.tolist() for r in rows],
                sequence_times=[t.tolist() for t in times], image_column=IMAGE_COLUMN, unit=unit,
                audio_column=AUDIO_COLUMN, speed_suffix=SPEED_SUFFIX)
    controls = [selector, slider]
    if playback is not None:
        play = Button(label="\u25b6 window", name="play-window", width=110)
        play.js_on_event("button_click", CustomJS(args=dict(playback, **args), code=_PLAY_JS + _WINDOW_JS
                                                  + _PLAY_WINDOW_JS))
        controls.append(play)
    selector.js_on_change("value", CustomJS(args=args, code=_WINDOW_JS + _PATH_JS))
    slider.js_on_change("value", CustomJS(args=args, code=_WINDOW_JS + "show(chosen(), slider.value)"))
    window.text = _initial_window_text(points, rows[0], times[0], names[0], unit)
    offered = (f"the first {len(names)} of {sequences.total} sequences (by id)" if sequences.total > len(names)
               else f"all {len(names)} sequences")
    note = Div(name="sequence-note", width=720, text=html.escape(
        f"Paths through the embedding: {offered}; pick one to draw its windows' posterior means in time order, move "
        f"the time slider to follow it (the red marker) and see the window."))
    return column(note, row(*controls), window)


def _initial_window_text(points: ColumnDataSource, rows: np.ndarray, times: np.ndarray, name: str, unit: str) -> str:
    """What ``_WINDOW_JS``'s ``show`` writes for the first window of the first sequence."""
    tag = points.data[IMAGE_COLUMN][int(rows[0])]
    text = f"sequence {name}, time {times[0]:.4g} {unit}, window 1 of {len(rows)}"
    return f'{tag}<div class="sequence-window-text">{html.escape(text)}</div>'


# the chosen sequence (k) and show(k, t): the marker at its window nearest time t, the window's picture and place
_WINDOW_JS = """
const chosen = () => selector.options.indexOf(selector.value)
const escape_text = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
const significant = (value) => String(Number(value.toPrecision(4)))  // about printf's %.4g
const nearest = (k, t) => {
    const times = sequence_times[k]
    let best = 0
    for (let i = 1; i < times.length; i++)
        if (Math.abs(times[i] - t) < Math.abs(times[best] - t))
            best = i
    return best
}
const show = (k, t) => {
    const i = nearest(k, t), row = sequence_rows[k][i]
    markers.forEach((marker, p) => {
        marker.data = {x: [points.data[columns[p][0]][row]], y: [points.data[columns[p][1]][row]]}
    })
    const text = `sequence ${selector.value}, time ${significant(sequence_times[k][i])} ${unit}, ` +
                 `window ${i + 1} of ${sequence_times[k].length}`
    window_div.text = (points.data[image_column][row] || "") +  // an <img> of an inline PNG that this page was built with
                  `<div class="sequence-window-text">${escape_text(text)}</div>`
    return row
}
"""

# the chosen sequence's path on every plot, the slider over its times, the marker at its start
_PATH_JS = """
const k = chosen(), rows = sequence_rows[k], times = sequence_times[k]
paths.forEach((path, p) => {
    const xs = points.data[columns[p][0]], ys = points.data[columns[p][1]]
    const x = [], y = []
    rows.forEach((row, i) => {
        const previous = rows[i - 1]
        if (i && ((wraps[p][0] && Math.abs(xs[row] - xs[previous]) > 0.5) ||
                  (wraps[p][1] && Math.abs(ys[row] - ys[previous]) > 0.5))) {
            x.push(NaN)
            y.push(NaN)
        }
        x.push(xs[row])
        y.push(ys[row])
    })
    path.data = {x, y}
})
const steps = times.slice(1).map((t, i) => t - times[i]).filter((step) => step > 0).sort((a, b) => a - b)
const step = steps.length ? steps[Math.floor((steps.length - 1) / 2)] : 1
const end = times[times.length - 1] > times[0] ? times[times.length - 1] : times[0] + step
slider.setv({start: times[0], end, step, value: times[0]})
show(k, times[0])
"""

_PLAY_WINDOW_JS = """
const row = show(chosen(), slider.value)
play(points.data[audio_column][row], points.data[audio_column + speed_suffix][row],
     `the window at ${significant(slider.value)} ${unit} of ${selector.value}`)
"""


def _check_table(table: pd.DataFrame, latent_columns: list[str], periodic: bool,
                 bounds: list[tuple[float, float]] | None, offsets: np.ndarray | None) -> None:
    if not latent_columns:
        raise ValueError("latent_columns is empty: name the table's latent coordinate columns")
    missing = [name for name in latent_columns if name not in table.columns]
    if missing:
        raise ValueError(f"latent columns {missing} not in the table (columns: {list(table.columns)})")
    not_numeric = [name for name in latent_columns if not _is_numeric(table[name])]
    if not_numeric:
        raise ValueError(f"latent columns {not_numeric} are not numeric")
    if periodic and bounds is not None:
        raise ValueError("bounds conflict with periodic=True, whose axes span [0, 1]: pass one of them")
    if bounds is not None and len(bounds) != len(latent_columns):
        raise ValueError(f"bounds has {len(bounds)} ranges for {len(latent_columns)} latent columns")
    if offsets is not None and not periodic:
        raise ValueError("offsets re-centre a view of the torus: pass periodic=True, or no offsets")
    if offsets is not None and len(offsets) != len(latent_columns):
        raise ValueError(f"offsets has {len(offsets)} values for {len(latent_columns)} latent columns")


def _is_numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _column_values(values: pd.Series) -> np.ndarray | list[str]:
    """A table column as Bokeh serializes it compactly: numbers as a typed array, anything else as strings."""
    if pd.api.types.is_float_dtype(values) or (_is_numeric(values) and not isinstance(values.dtype, np.dtype)):
        return values.to_numpy(dtype=np.float32, na_value=np.nan)  # 4 significant digits shown, half the bytes
    if _is_numeric(values):
        return values.to_numpy()
    return ["" if pd.isna(value) else str(value) for value in values]


def _value_format(values: pd.Series) -> str:
    """How the tooltip shows a column's values: "int", "float" (4 significant digits) or "text"."""
    if pd.api.types.is_integer_dtype(values):
        return "int"
    return "float" if _is_numeric(values) else "text"


def _checked_images(images: np.ndarray, what: str) -> np.ndarray:
    """Images clipped to [0, 1], or vectors ``[n, D]`` as they are."""
    images = np.asarray(images, dtype=float)
    if images.ndim == 2:
        return images
    if not (images.ndim == 3 or (images.ndim == 4 and images.shape[-1] == 3)):
        raise ValueError(f"{what} must be [n, H, W] (grey) or [n, H, W, 3] (RGB) images or [n, D] vectors, got "
                         f"shape {images.shape}")
    return np.clip(images, 0.0, 1.0)


def _line_plots(images: np.ndarray | None, decoded: np.ndarray | None, grids: list[LatentGrid]) -> _LinePlots | None:
    """How the page draws vectors, with one value range for all of them; None for images."""
    if decoded is not None and images is None:
        raise ValueError("decoded given without images: pass the vectors of the image rows too")
    pictures = [picture for grid in grids for picture in (grid.images, *grid.variants.values())]
    given = [np.asarray(array, dtype=float) for array in [images, decoded, *pictures] if array is not None]
    vectors = [array for array in given if array.ndim == 2]
    if not vectors:
        if decoded is not None:
            raise ValueError("decoded is drawn over vectors: pass images as [n, D] vectors, or no decoded")
        return None
    if len(vectors) < len(given):
        raise ValueError("images and the grids' images are a mix of images and [n, D] vectors: pass one kind")
    sizes = sorted({array.shape[1] for array in vectors})
    if len(sizes) > 1:
        raise ValueError(f"vectors of different lengths {sizes}: images, decoded and the grids must agree")
    low, high = _padded_range(np.concatenate([array.ravel() for array in vectors]))
    return _LinePlots(low, high, sizes[0])


def _line_plot(vectors: np.ndarray, colors: list[str], line_plots: _LinePlots) -> np.ndarray:
    """A ``[H, W, 3]`` picture of vectors ``[k, D]`` as lines of value against feature index, the last on top, over
    a faint line at 0: pixel column c spans the values of the features it covers (of feature ``c D // W`` when
    ``D <= W``, of several when ``D > W``, so no peak is lost) and reaches to its neighbour on the left."""
    height, width = LINE_PLOT_HEIGHT_PX, THUMBNAIL_WIDTH_PX
    picture = np.ones((height, width, 3))
    rows = np.arange(height)[:, None]  # [H, 1]

    def to_row(value: np.ndarray) -> np.ndarray:
        return np.round((line_plots.high - value) / (line_plots.high - line_plots.low) * (height - 1))

    if line_plots.low < 0 < line_plots.high:
        picture[int(to_row(0.0))] = matplotlib.colors.to_rgb(ZERO_LINE_COLOR)
    starts = np.arange(width) * vectors.shape[1] // width  # [W] first feature of each pixel column
    for vector, color in zip(vectors, colors):
        top, bottom = to_row(np.maximum.reduceat(vector, starts)), to_row(np.minimum.reduceat(vector, starts))
        top[1:], bottom[1:] = np.minimum(top[1:], bottom[:-1]), np.maximum(bottom[1:], top[:-1])  # joined
        picture[(rows >= top) & (rows <= bottom)] = matplotlib.colors.to_rgb(color)  # [H, W] mask
    return picture


def _image_tag(image: np.ndarray, cmap: str) -> str:
    """An ``<img>`` tag holding the image as a PNG data URI at its own resolution, scaled up without blurring."""
    buffer = io.BytesIO()
    matplotlib.image.imsave(buffer, image, cmap=cmap, vmin=0.0, vmax=1.0, format="png")
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (f'<img src="data:image/png;base64,{encoded}" width="{THUMBNAIL_WIDTH_PX}" '
            f'style="image-rendering: pixelated; display: block; border: 1px solid #ccc">')


def _picture_tags(pictures: np.ndarray, cmap: str, line_plots: _LinePlots | None, colors: list[str]) -> list[str]:
    """The ``<img>`` tag of each image ``[n, H, W(, 3)]``, or of each line plot of vectors ``[n, k, D]`` drawn in
    ``colors``."""
    if line_plots is None:
        return [_image_tag(image, cmap) for image in pictures]
    return [_image_tag(_line_plot(vectors, colors, line_plots), cmap) for vectors in pictures]


def _point_image_tags(n_rows: int, images: np.ndarray | None, image_rows: np.ndarray | None,
                      decoded: np.ndarray | None, cmap: str, line_plots: _LinePlots | None) -> list[str]:
    """The ``<img>`` tag of each table row, "" for rows without a picture; vectors in grey, their decoded means
    drawn over them."""
    tags = [""] * n_rows
    if images is None:
        if image_rows is not None and len(image_rows):
            raise ValueError("image_rows given without images: pass the images of those rows too")
        return tags
    if image_rows is None:
        raise ValueError("images given without image_rows: pass the table row position of each image")
    image_rows = np.asarray(image_rows)
    if image_rows.ndim != 1 or len(image_rows) != len(images):
        raise ValueError(f"image_rows must list one table row per image: got shape {image_rows.shape} "
                         f"for {len(images)} images")
    if len(image_rows) and (image_rows.min() < 0 or image_rows.max() >= n_rows):
        raise ValueError(f"image_rows must be row positions in [0, {n_rows}) of the table")
    if len(np.unique(image_rows)) != len(image_rows):
        raise ValueError("image_rows repeats a row: give each row at most one image")
    pictures = _checked_images(images, "images")
    if line_plots is not None:
        if decoded is not None and np.shape(decoded) != pictures.shape:
            raise ValueError(f"decoded must match images: got shape {np.shape(decoded)} for {pictures.shape}")
        pictures = np.stack([pictures] + ([] if decoded is None else [np.asarray(decoded, dtype=float)]), axis=1)
    for position, tag in zip(image_rows, _picture_tags(pictures, cmap, line_plots,
                                                        [DATA_LINE_COLOR, MEAN_LINE_COLOR])):
        tags[position] = tag
    return tags


def _grids_by_projection(grids: list[LatentGrid], projections: list[tuple[int, ...]]) -> dict:
    by_projection = {dims: [] for dims in projections}
    for grid in grids:
        if tuple(grid.dims) not in by_projection:
            raise ValueError(f"a LatentGrid over latent dims {tuple(grid.dims)} matches no plot; the plots show "
                             f"dims {projections}")
        by_projection[tuple(grid.dims)].append(grid)
    return by_projection


def _color_fields(table: pd.DataFrame, latent_columns: list[str], requested: list[str] | None,
                  categories: dict[str, list[str]]) -> list[_ColorField]:
    unknown = [name for name in list(requested or []) + list(categories) if name not in table.columns]
    if unknown:
        raise ValueError(f"colour fields or categories {unknown} not in the table (columns: {list(table.columns)})")
    if requested is None:
        requested = [name for name in table.columns if name not in latent_columns
                     and (_is_numeric(table[name]) or table[name].nunique() <= MAX_COLOR_CATEGORIES)]
    fields = []
    for name in requested:
        categorical = _category_codes(table[name], categories.get(name))
        if categorical is None:
            values = table[name].to_numpy(dtype=float, na_value=np.nan)
            finite = values[np.isfinite(values)]
            low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
            mapper = LinearColorMapper(palette=Viridis256, low=low, high=high if high > low else low + 1,
                                       nan_color=MISSING_COLOR)
            fields.append(_ColorField(name, name, mapper))
        else:
            names, codes = categorical
            mapper = LinearColorMapper(palette=_category_palette(len(names)), low=-0.5, high=len(names) - 0.5,
                                       low_color=MISSING_COLOR, nan_color=MISSING_COLOR)
            fields.append(_ColorField(name, CODE_COLUMN_PREFIX + name, mapper, names, codes))
    return fields


def _category_codes(values: pd.Series, names: list[str] | None) -> tuple[list[str], np.ndarray] | None:
    """The category names of a categorical column and its integer codes 0..k-1 (-1 where missing); None for a
    numeric column. ``names`` name the codes of an integer-coded column, or order a string column's values."""
    if names is not None and _is_numeric(values):
        codes = values.to_numpy(dtype=float, na_value=-1).astype(np.int64)
        if codes.max(initial=-1) >= len(names):
            raise ValueError(f"column {values.name!r} has code {codes.max()} but only {len(names)} category names")
    else:
        if names is None:
            if _is_numeric(values) and not (pd.api.types.is_integer_dtype(values)
                                            and values.nunique() <= MAX_INTEGER_CATEGORIES):
                return None
            names = ([str(value) for value in sorted(values.dropna().unique())] if _is_numeric(values)
                     else sorted({str(value) for value in values.dropna()}))
        code_of = {str(name): code for code, name in enumerate(names)}
        labels = ["" if pd.isna(value) else str(value) for value in values]
        unnamed = sorted({label for label in labels if label and label not in code_of})
        if unnamed:
            raise ValueError(f"column {values.name!r} has values {unnamed[:5]} missing from its category names")
        codes = np.array([code_of.get(label, -1) for label in labels], dtype=np.int64)
    return [str(name) for name in names], codes.astype(np.int16 if len(names) < 2**15 else np.int32)


def _category_palette(count: int) -> list[str]:
    if count <= 10:
        return list(Category10[10][:max(count, 1)])
    if count <= 20:
        return list(Category20[20][:count])
    return list(linear_palette(Turbo256, count))


def _padded_range(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return 0.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    pad = 0.05 * (high - low) if high > low else 0.5
    return low - pad, high + pad


def _latent_ranges(table: pd.DataFrame, latent_columns: list[str], periodic: bool,
                   bounds: list[tuple[float, float]] | None, grids: list[LatentGrid]) -> list[Range1d]:
    """One range per latent, shared by the projections, so that they pan and zoom together: [0, 1] on the
    torus, else ``bounds`` or the range of the data and the grid cells."""
    if periodic:
        return [Range1d(0.0, 1.0) for _ in latent_columns]
    if bounds is not None:
        return [Range1d(float(low), float(high)) for low, high in bounds]
    ranges = []
    for dim, name in enumerate(latent_columns):
        values = [table[name].to_numpy(dtype=float, na_value=np.nan)]
        for grid in grids:
            if dim in grid.dims and len(grid.coords):
                centres = np.asarray(grid.coords, dtype=float)[:, list(grid.dims).index(dim)]
                half = _cell_width(centres) / 2
                values.append(np.array([centres.min() - half, centres.max() + half]))
        ranges.append(Range1d(*_padded_range(np.concatenate(values))))
    return ranges


def _cell_width(centres: np.ndarray) -> float:
    """The spacing of a regular grid's cell centres along one axis (1 for a single cell)."""
    distinct = np.unique(np.round(centres, 12))
    return float(np.diff(distinct).min()) if len(distinct) > 1 else 1.0


def _projection_figure(x_axis: _Axis, y_axis: _Axis, periodic: bool, frame: tuple[int, int], square: bool):
    """An empty plot of two axes, its frame ``frame`` pixels wide and high; on the torus with the fundamental square
    (or, when not ``square``, the strip of a 1-D latent) outlined."""
    tools = [PanTool(), WheelZoomTool(), BoxSelectTool(), ResetTool(), SaveTool()]
    plot_title = f"{x_axis.label} – {y_axis.label}" + (" (torus: edges identified)" if periodic else "")
    plot = figure(name=f"projection {x_axis.label}-{y_axis.label}", title=plot_title, tools=tools,
                  active_scroll=tools[1], frame_width=frame[0], frame_height=frame[1],
                  x_range=x_axis.range, y_range=y_axis.range, x_axis_label=_axis_title(x_axis),
                  y_axis_label=_axis_title(y_axis), output_backend="webgl")
    for axes, axis in ((plot.xaxis, x_axis), (plot.yaxis, y_axis)):
        if axis.offset is not None:
            axes.formatter = CustomJSTickFormatter(args=dict(offset=axis.offset), code=_ORIGINAL_COORDINATE_JS)
    if periodic:
        plot.add_layout(BoxAnnotation(left=0, right=1, bottom=0 if square else None, top=1 if square else None,
                                      fill_alpha=0, line_color="black", line_alpha=0.8, line_width=1.5))
    return plot


# the tick at u of a view re-centred by offset: (u + offset) mod 1, 1.00 at the right end of an unshifted axis (as
# lvm.plotting.figures ticks its matplotlib axes)
_ORIGINAL_COORDINATE_JS = """
const value = tick + offset
return (value > 1.005 ? value - 1 : value).toFixed(2)
"""


def _axis_title(axis: _Axis) -> str:
    """An axis's label, with the seam of a re-centred view: "z1 (seam at 0.37)"."""
    return axis.label if axis.offset is None else f"{axis.label} (seam at {axis.offset:.2f})"


def _draw_points(plot, points: ColumnDataSource, x_axis: _Axis, y_axis: _Axis, fields: list[_ColorField],
                 count: int):
    """All ``count`` points, coloured by the first colour field."""
    if fields:
        color = {"field": fields[0].data_column, "transform": fields[0].mapper}
    else:
        color = Category10[10][0]
    size, alpha = _marker_style(count)
    renderer = plot.scatter(x=x_axis.data_column, y=y_axis.data_column, source=points, size=size,
                            fill_color=color, line_color=color, fill_alpha=alpha, line_alpha=alpha,
                            nonselection_fill_alpha=0.05, nonselection_line_alpha=0.05)
    renderer.nonselection_glyph.update(fill_color=color, line_color=color)
    renderer.selection_glyph = renderer.glyph.clone()
    return renderer


def _add_hover(plot, points_renderer, cells: list, x_axis: _Axis, y_axis: _Axis, frame: tuple[int, int],
               shared: dict) -> Tooltip:
    """One hover tool over the points and grid cells of ``plot`` and the one tooltip it shows (``_HOVER_JS``);
    ``shared``: the arguments of ``_HOVER_JS`` that are the same in every plot."""
    tooltip = Tooltip(content="", position=None, attachment="horizontal", interactive=False)
    plot.elements.append(tooltip)
    callback = CustomJS(code=_HOVER_JS, args=dict(
        shared, points_renderer=points_renderer, cells=[cell.data_source for cell in cells], tooltip=tooltip,
        x_column=x_axis.data_column, y_column=y_axis.data_column, x_range=x_axis.range, y_range=y_axis.range,
        frame=list(frame)))
    plot.add_tools(HoverTool(renderers=[*cells, points_renderer], tooltips=None, callback=callback,
                             description="Hover: points, else the decoded grid"))
    return tooltip


def _marker_style(count: int) -> tuple[float, float]:
    """Marker size (screen pixels) and opacity readable for ``count`` points."""
    if count <= 2_000:
        return 7.0, 0.8
    if count <= 20_000:
        return 4.0, 0.6
    return 3.0, 0.4


def _draw_grid(plot, grid: LatentGrid, latent_axes: list[_Axis], cmap: str, line_plots: _LinePlots | None,
               strip_range: Range1d | None, sounds: list[Sound] | None = None, conditions: list[str] = ()):
    """Faint cells centred on the grid's coordinates (where the view draws them), holding the decoded images (or line
    plots of the decoded vectors), and those decoded under each further condition (``conditions[1:]``, the grid's
    ``variants``) for the condition selector to swap in; for a 1-D latent vertical strips spanning ``strip_range``."""
    coords = np.asarray(grid.coords, dtype=float)
    grid_images = _checked_images(grid.images, "LatentGrid.images")
    if coords.ndim != 2 or coords.shape[1] != len(grid.dims) or len(coords) != len(grid_images):
        raise ValueError(f"a LatentGrid over dims {tuple(grid.dims)} needs coords [g, {len(grid.dims)}] and "
                         f"images [g, ...] with the same g, got {coords.shape} and {grid_images.shape}")
    axes = [latent_axes[dim] for dim in grid.dims]
    drawn = np.stack([coords[:, k] if axis.offset is None else translate(coords[:, k], -axis.offset)
                      for k, axis in enumerate(axes)], axis=1)  # [g, len(dims)]
    cells = {"x": drawn[:, 0], "width": np.full(len(coords), _cell_width(drawn[:, 0]))}
    if strip_range is None:
        cells["y"] = drawn[:, 1]
        cells["height"] = np.full(len(coords), _cell_width(drawn[:, 1]))
    else:
        cells["y"] = np.full(len(coords), (strip_range.start + strip_range.end) / 2)
        cells["height"] = np.full(len(coords), strip_range.end - strip_range.start)
    cells[IMAGE_COLUMN] = _cell_tags(grid_images, cmap, line_plots)
    for k, name in enumerate(conditions[1:], start=1):
        cells[CONDITION_COLUMN_PREFIX + str(k)] = _cell_tags(
            _checked_images(grid.variants[name], f"LatentGrid.variants[{name!r}]"), cmap, line_plots)
    cells[CELL_COLUMN] = [", ".join(f"{axis.label} = {value:.3g}" for axis, value in zip(axes, point))
                          for point in coords]
    if sounds is not None:
        cells.update(_audio_columns(sounds, AUDIO_COLUMN, None, len(coords)))
    return plot.rect(x="x", y="y", width="width", height="height", source=ColumnDataSource(cells),
                     fill_color="#808080", fill_alpha=0.03, line_color="#999999", line_alpha=0.25,
                     hover_fill_color="#808080", hover_fill_alpha=0.15, hover_line_color="#555555")


def _cell_tags(images: np.ndarray, cmap: str, line_plots: _LinePlots | None) -> list[str]:
    """The ``<img>`` tag of each grid cell's decoded image (or line plot of its decoded vector)."""
    return _picture_tags(images if line_plots is None else images[:, None], cmap, line_plots,  # [g, 1, D]: one line
                         [MEAN_LINE_COLOR])


def _check_conditions(conditions: list[str] | None, grids: list[LatentGrid]) -> list[str]:
    """The condition selector's options (none for fewer than two), checked against the grids' variants."""
    conditions = list(conditions or [])
    if len(set(conditions)) != len(conditions):
        raise ValueError(f"grid_conditions names a condition twice: {conditions}")
    for grid in grids:
        missing = [name for name in conditions[1:] if name not in grid.variants]
        if missing:
            raise ValueError(f"the grid over dims {tuple(grid.dims)} has no variants {missing} (grid_conditions "
                             f"names them; its variants: {list(grid.variants)})")
        for name in conditions[1:]:
            if len(grid.variants[name]) != len(grid.coords):
                raise ValueError(f"the grid over dims {tuple(grid.dims)} has {len(grid.coords)} cells but its "
                                 f"variant {name!r} has {len(grid.variants[name])} images")
    return conditions if len(conditions) > 1 else []


def _condition_selector(conditions: list[str], cell_sources: list[ColumnDataSource], tooltips: list[Tooltip]):
    """The "Decode the grid as" selector: choosing condition k shows every grid cell's picture decoded under it."""
    selector = Select(title="Decode the grid as", name="grid-condition", value=conditions[0], options=conditions,
                      width=max(220, min(480, 8 * max(len(name) for name in conditions))))
    selector.js_on_change("value", CustomJS(
        args=dict(selector=selector, sources=cell_sources, tooltips=tooltips, image_column=IMAGE_COLUMN,
                  prefix=CONDITION_COLUMN_PREFIX),
        code=_CONDITION_JS))
    return selector


# the pictures of condition k (k = 0: those the page was built with, kept aside at the first switch)
_CONDITION_JS = """
const chosen = selector.options.indexOf(selector.value)
for (const source of sources) {
    source.explorer_condition_0 ??= source.data[image_column]
    const pictures = chosen == 0 ? source.explorer_condition_0 : source.data[prefix + chosen]
    source.data = {...source.data, [image_column]: pictures}
}
for (const tooltip of tooltips)
    tooltip.explorer_key = null  // a tooltip shown again is rebuilt with the new pictures
"""


def _color_keys(plot, fields: list[_ColorField], renderer) -> tuple[Legend | None, ColorBar | None, list]:
    """One legend and one colour bar right of ``plot``, showing the first field's key: the legend names the
    categories of a categorical field, the colour bar scales a numeric one. Also the legend items of each field
    (None for numeric ones) for the colour selector to swap in."""
    legend_items = []
    for field in fields:
        if field.categories is None:
            legend_items.append(None)
            continue
        first_rows = {code: int(np.argmax(field.codes == code)) for code in np.unique(field.codes) if code >= 0}
        legend_items.append([LegendItem(label=name, renderers=[renderer], index=first_rows[code])
                             for code, name in enumerate(field.categories) if code in first_rows])
    legend = color_bar = None
    if any(items is not None for items in legend_items):
        legend = Legend(items=legend_items[0] or [], title=fields[0].name, visible=legend_items[0] is not None,
                        label_text_font_size="9pt", glyph_height=14, glyph_width=14)
        plot.add_layout(legend, "right")
    numeric = [field for field in fields if field.categories is None]
    if numeric:
        color_bar = ColorBar(color_mapper=numeric[0].mapper, title=numeric[0].name, width=12,
                             visible=fields[0].categories is None)
        plot.add_layout(color_bar, "right")
    return legend, color_bar, legend_items


def _line_plot_captions(line_plots: _LinePlots | None, decoded: bool) -> tuple[str, str]:
    """What the line plots of a point and of a grid cell show ("" for images)."""
    if line_plots is None:
        return "", ""
    point_lines = "Grey: the example, blue: its decoded mean," if decoded else "The example"
    return line_plots.caption(point_lines), line_plots.caption("Decoded mean")


def _header_html(title: str, n_points: int, n_images: int, n_cells: int, periodic: bool, latent_axes: list[_Axis],
                 line_plots: _LinePlots | None, audio: bool = False, conditions: list[str] = ()) -> str:
    kind = "an image" if line_plots is None else "a line plot"
    details = [f"{n_points:,} points, {n_images:,} of them with {kind} on hover"]
    if len(latent_axes) > 3:
        details.append(f"the first 3 of {len(latent_axes)} latent coordinates")
    if n_cells:
        details.append(f"{n_cells:,} decoded grid cells: hover empty space to see what the model generates there")
    if conditions:
        details.append(f"the grid is decoded under {conditions[0]}; \"Decode the grid as\" shows the same latent "
                       f"points under {len(conditions) - 1} other covariate value{'s' * (len(conditions) > 2)}")
    if audio:
        details.append("click a point with a picture to hear its recording (and its reconstruction), empty space "
                       "to hear the decoded sound there")
    if periodic:
        details.append("torus: edges identified")
    if latent_axes[0].offset is not None:
        seams = ", ".join(f"{axis.label} = {axis.offset:.2f}" for axis in latent_axes[:3])
        details.append(f"view re-centred so that the edges run through the emptiest rows and columns (seams at "
                       f"{seams}); ticks, tooltips and cells give the original coordinates")
    lines = [f'<h2 style="margin: 4px 0">{html.escape(title)}</h2>',
             f'<div style="color: #555">{html.escape("; ".join(details))}</div>']
    if line_plots is not None:
        caption = line_plots.caption("Line plots of vectors, grey: examples, blue: decoded means,")
        lines.append(f'<div style="color: #555">{html.escape(caption)}</div>')
    return "".join(lines)
