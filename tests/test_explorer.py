"""The HTML embedding explorer: self-contained, holding every point, image and grid cell, laid out by latent
dimension, and rendering in a real headless browser without JavaScript errors; one tooltip at a time (the points',
at most three of them, over the decoded cell's), metadata shown as text, and vector data drawn as line plots. On the
torus a re-centred view draws points and cells at (z - c) mod 1, each cell decoded at the original coordinates
(u + c) mod 1 that its tooltip, the ticks and the point tooltips show."""

from __future__ import annotations

import base64
import gzip
import io
import json
import re
import time
from html.parser import HTMLParser

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from lvm.numerics.torus import nearest_image, translate
from lvm.plotting.explorer import LatentGrid, explorer_html
from browser import render_page, when_rendered

CATEGORY_BLUE, CATEGORY_ORANGE = "#1f77b4", "#ff7f0e"  # Category10 colours of the first two categories
OFFSETS = np.array([0.37, 0.81])  # the seams of a re-centred torus view, far from 0
MAGENTA, CYAN = "#ff00ff", "#00ffff"
DATA_IMAGE = re.compile(r'src="(data:image/png;base64,[A-Za-z0-9+/=]+)"')


# --- reading the page ---------------------------------------------------------------------------------------

class _ResourceLinks(HTMLParser):
    """The URLs that tags of a page load: src, href, srcset, data and poster attributes. Script bodies are
    not parsed as markup, so URLs inside BokehJS's source text do not count."""

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        self.urls += [value for name, value in attrs if name in {"src", "href", "srcset", "data", "poster"} and value]


def remote_resources(html: str) -> list[str]:
    """Every resource a browser would fetch from the network on opening the page: URLs loaded by its tags, by
    ``url(...)``/``@import`` in its own markup (script bodies aside), and by ``src=``/``href=`` in the Bokeh
    document (tooltip images)."""
    parser = _ResourceLinks()
    parser.feed(html)
    markup = re.sub(r"<script\b.*?</script>", "", html, flags=re.DOTALL | re.IGNORECASE)
    urls = parser.urls + re.findall(r"""(?:url\(|@import\s)\s*["']?([^"')\s]+)""", markup)
    for document in re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', html, flags=re.DOTALL):
        urls += re.findall(r'(?:src|href)=\\?"([^"\\]+)', document)
    return [url for url in urls if re.match(r"(https?:)?//", url.strip(), flags=re.IGNORECASE)]


def bokeh_models(html: str) -> dict[str, dict]:
    """Every model of the page's (single) Bokeh document by id, each ``{"name": type, "attributes": ...}``."""
    documents = re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', html, flags=re.DOTALL)
    assert len(documents) == 1
    (document,) = json.loads(documents[0]).values()
    models = {}

    def collect(value):
        if isinstance(value, dict):
            if value.get("type") == "object":  # a definition, not a reference {"id": ...}
                models[value["id"]] = {"attributes": {}, **value}  # attributes left at their defaults are omitted
            for child in value.values():
                collect(child)
        elif isinstance(value, list):
            for child in value:
                collect(child)

    collect(document)
    return models


def _decoded(value):
    """A column of a ColumnDataSource as serialized: (gzipped) base64 typed arrays with a "shape", or lists."""
    if isinstance(value, dict) and value.get("type") == "ndarray":
        array = value["array"]
        if isinstance(array, list):
            return np.asarray(array, dtype=value["dtype"]).reshape(value["shape"])
        raw = base64.b64decode(array["data"])
        if raw[:2] == b"\x1f\x8b":  # Bokeh gzips the buffers of standalone documents
            raw = gzip.decompress(raw)
        return np.frombuffer(raw, dtype=value["dtype"]).reshape(value["shape"])
    return value


def source_data(model: dict) -> dict:
    return {name: _decoded(values) for name, values in model["attributes"]["data"]["entries"]}


def models_named(models: dict, type_name: str) -> list[dict]:
    return [model for model in models.values() if model["name"] == type_name]


def figures(models: dict) -> dict[str, dict]:
    """The plots by name ("projection z1-z2", ...)."""
    return {model["attributes"]["name"]: model for model in models_named(models, "Figure")}


def ref(models: dict, value: dict) -> dict:
    return models[value["id"]]


def renderers_drawing(models: dict, plot: dict, glyph_name: str) -> list[dict]:
    renderers = [ref(models, renderer) for renderer in plot["attributes"]["renderers"]]
    return [renderer for renderer in renderers if ref(models, renderer["attributes"]["glyph"])["name"] == glyph_name]


def scatter_fields(models: dict, plot: dict) -> tuple[str, str]:
    """The columns a plot's scatter draws as x and y."""
    (renderer,) = renderers_drawing(models, plot, "Scatter")
    glyph = ref(models, renderer["attributes"]["glyph"])["attributes"]
    return glyph["x"]["field"], glyph["y"]["field"]


def axis_formats(models: dict, plot: dict) -> list[tuple[str, float | None]]:
    """The label of each axis of a plot (x, then y) and the offset its tick formatter adds (None: plain ticks)."""
    axes = [ref(models, axis)["attributes"] for side in ("below", "left") for axis in plot["attributes"][side]]
    formats = []
    for axis in axes:
        formatter = ref(models, axis["formatter"])
        args = dict(formatter["attributes"].get("args", {}).get("entries", []))
        shifted = formatter["name"] == "CustomJSTickFormatter"
        formats.append((axis["axis_label"], args.get("offset") if shifted else None))
    return formats


def scatter_source_ids(models: dict, plot: dict) -> list[str]:
    """The ids of the data sources of a plot's scatters (the points)."""
    return [renderer["attributes"]["data_source"]["id"] for renderer in renderers_drawing(models, plot, "Scatter")]


def grid_sources(models: dict, plot: dict) -> list[dict]:
    """The data of a plot's latent grids (drawn as rects)."""
    return [source_data(ref(models, renderer["attributes"]["data_source"]))
            for renderer in renderers_drawing(models, plot, "Rect")]


def image_tags(data: dict) -> list[str]:
    return [tag for tag in data["__explorer_image"] if tag]


def decode_png(tag: str) -> np.ndarray:
    (uri,) = DATA_IMAGE.findall(tag)
    return matplotlib.image.imread(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])), format="png")


# --- example embeddings -------------------------------------------------------------------------------------

def embedding_table(n: int, d: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({f"z{i + 1}": rng.random(n) for i in range(d)})
    table["split"] = np.where(np.arange(n) % 5 == 0, "test", "train")
    table["label"] = np.arange(n) % 3
    table["log_likelihood"] = rng.normal(-50.0, 5.0, n)
    table["file"] = [f"song_{i}.wav" for i in range(n)]
    return table


def regular_grid(dims: tuple[int, ...], cells_per_axis: int, seed: int = 0, color=None) -> LatentGrid:
    centres = (np.arange(cells_per_axis) + 0.5) / cells_per_axis
    coords = np.stack([axis.ravel() for axis in np.meshgrid(*[centres] * len(dims), indexing="ij")], axis=1)
    if color is None:
        images = np.random.default_rng(seed).random((len(coords), 8, 8))
    else:
        images = np.broadcast_to(np.asarray(color, dtype=float), (len(coords), 8, 8, 3))
    return LatentGrid(dims, coords, images)


LABEL_NAMES = ["zero", "one", "two"]


def example_page(n: int = 60, d: int = 2, periodic: bool = True, n_images: int = 10, cells: int = 4, **kwargs):
    table = embedding_table(n, d)
    rng = np.random.default_rng(1)
    image_rows = rng.choice(n, size=n_images, replace=False)
    grids = [regular_grid(dims, cells, seed=k) for k, dims in
             enumerate({1: [(0,)], 2: [(0, 1)], 3: [(0, 1), (0, 2), (1, 2)]}[min(d, 3)])]
    page = explorer_html(table, [f"z{i + 1}" for i in range(d)], periodic=periodic,
                         images=rng.random((n_images, 8, 8)), image_rows=image_rows, grids=grids,
                         categories={"label": LABEL_NAMES}, **kwargs)
    return page, table, image_rows, grids


# --- the document -------------------------------------------------------------------------------------------

def test_page_loads_nothing_from_the_network():
    page, *_ = example_page()
    assert remote_resources(page) == []
    # the check itself finds resource URLs in tags, styles and tooltips, but not in script text
    assert remote_resources('<script src="https://x.org/bokeh.js"></script>') == ["https://x.org/bokeh.js"]
    assert remote_resources('<link rel="stylesheet" href="http://x.org/a.css">') == ["http://x.org/a.css"]
    assert remote_resources('<style>body { background: url("//x.org/a.png") }</style>') == ["//x.org/a.png"]
    assert remote_resources('<script>const u = "<img src=\\"https://x.org\\">"</script>') == []
    tooltip = '<script type="application/json">{"tooltips": "<img src=\\"https://x.org/a.png\\">"}</script>'
    assert remote_resources(tooltip) == ["https://x.org/a.png"]


def test_document_holds_every_point_image_and_grid_cell():
    page, table, image_rows, grids = example_page(n=60, n_images=10, cells=4)
    models = bokeh_models(page)
    (plot,) = figures(models).values()
    (points_id,) = set(scatter_source_ids(models, plot))
    points = source_data(models[points_id])
    assert all(len(values) == len(table) for values in points.values())
    np.testing.assert_allclose(points["z1"], table["z1"], rtol=1e-6)
    assert list(points["split"]) == list(table["split"])
    has_image = [position for position, tag in enumerate(points["__explorer_image"]) if tag]
    assert sorted(has_image) == sorted(image_rows)
    (cells,) = grid_sources(models, plot)
    assert len(image_tags(cells)) == len(grids[0].coords) == 16
    (document,) = re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', page, flags=re.DOTALL)
    assert len(set(re.findall(r"data:image/png;base64,[A-Za-z0-9+/=]+", document))) == len(image_rows) + 16
    np.testing.assert_allclose(cells["width"], 0.25)
    np.testing.assert_allclose(sorted(set(cells["x"])), [0.125, 0.375, 0.625, 0.875])


def test_images_keep_their_orientation_and_colour_map():
    table = embedding_table(5, 2)
    image = np.zeros((1, 6, 4))
    image[0, 0] = 1.0  # top row bright
    grid = LatentGrid((0, 1), np.array([[0.5, 0.5]]), np.stack([image[0].T]))  # [1, 4, 6]
    page = explorer_html(table, ["z1", "z2"], periodic=True, images=image, image_rows=np.array([3]), grids=[grid],
                         cmap="viridis")
    models = bokeh_models(page)
    (plot,) = figures(models).values()
    points = source_data(models[scatter_source_ids(models, plot)[0]])
    thumbnail = decode_png(points["__explorer_image"][3])
    assert thumbnail.shape[:2] == (6, 4)
    np.testing.assert_allclose(thumbnail[0, 0, :3], np.array([0xfd, 0xe7, 0x25]) / 255, atol=0.01)  # viridis(1)
    np.testing.assert_allclose(thumbnail[1, 0, :3], np.array([0x44, 0x01, 0x54]) / 255, atol=0.01)  # viridis(0)
    (cells,) = grid_sources(models, plot)
    decoded = decode_png(cells["__explorer_image"][0])
    assert decoded.shape[:2] == (4, 6)
    np.testing.assert_allclose(decoded[:, 0, :3], np.tile(thumbnail[0, 0, :3], (4, 1)))  # column 0 bright
    np.testing.assert_allclose(decoded[0, 1:, :3], np.tile(thumbnail[1, 0, :3], (5, 1)))
    assert 'image-rendering: pixelated' in points["__explorer_image"][3]


def test_one_hover_tool_per_plot_shows_every_column():
    page, table, *_ = example_page(d=3)
    models = bokeh_models(page)
    hovers = models_named(models, "HoverTool")
    assert len(hovers) == 3  # one per projection, over its grid cells and the points
    for hover in hovers:
        attributes = hover["attributes"]
        assert attributes["tooltips"] is None  # the callback shows the one tooltip
        glyphs = [ref(models, ref(models, renderer)["attributes"]["glyph"])["name"]
                  for renderer in attributes["renderers"]]
        assert glyphs == ["Rect", "Scatter"]
        arguments = dict(ref(models, attributes["callback"])["attributes"]["args"]["entries"])
        formats = dict(zip(arguments["columns"], arguments["formats"]))
        assert list(formats) == list(table.columns)  # the latents first
        assert formats["log_likelihood"] == "float" and formats["label"] == "int" and formats["split"] == "text"


def test_two_latents_one_plot_with_torus_square_and_categorical_legend():
    page, *_ = example_page(d=2)
    models = bokeh_models(page)
    assert list(figures(models)) == ["projection z1-z2"]
    ranges = models_named(models, "Range1d")
    # Range1d's defaults, start 0 and end 1, are left out of the document
    assert len(ranges) == 2 and all((r["attributes"].get("start", 0), r["attributes"].get("end", 1)) == (0, 1)
                                    for r in ranges)
    assert "torus: edges identified" in page
    (square,) = [box for box in models_named(models, "BoxAnnotation") if box["attributes"].get("right") == 1]
    assert [square["attributes"][side] for side in ("left", "right", "bottom", "top")] == [0, 1, 0, 1]
    legend_labels = {item["attributes"]["label"]["value"] for item in models_named(models, "LegendItem")}
    assert set(LABEL_NAMES) <= legend_labels and {"train", "test"} <= legend_labels
    (selector,) = models_named(models, "Select")
    assert selector["attributes"]["options"] == ["split", "label", "log_likelihood"]  # file has 60 values: not offered
    (color_bar,) = models_named(models, "ColorBar")
    assert color_bar["attributes"]["title"] == "log_likelihood" and color_bar["attributes"]["visible"] is False


def test_a_recentred_view_draws_points_and_cells_shifted_and_shows_the_original_coordinates():
    table = embedding_table(60, 2)
    view = regular_grid((0, 1), 4)  # cells regular in the view ...
    grid = LatentGrid((0, 1), translate(view.coords, OFFSETS), view.images)  # ... decoded at the original latents
    page = explorer_html(table, ["z1", "z2"], periodic=True, grids=[grid], offsets=OFFSETS)
    models = bokeh_models(page)
    (plot,) = figures(models).values()
    points = source_data(models[scatter_source_ids(models, plot)[0]])
    x, y = scatter_fields(models, plot)
    np.testing.assert_allclose(points[x], translate(table["z1"].to_numpy(), -0.37), atol=1e-6)
    np.testing.assert_allclose(points[y], translate(table["z2"].to_numpy(), -0.81), atol=1e-6)
    np.testing.assert_allclose(points["z1"], table["z1"], rtol=1e-6)  # what the tooltips show: the original values
    (hover,) = models_named(models, "HoverTool")
    arguments = dict(ref(models, hover["attributes"]["callback"])["attributes"]["args"]["entries"])
    assert arguments["columns"] == list(table.columns) and (arguments["x_column"], arguments["y_column"]) == (x, y)
    (cells,) = grid_sources(models, plot)
    np.testing.assert_allclose(np.stack([cells["x"], cells["y"]], axis=1), view.coords, atol=1e-9)
    assert cells["__explorer_cell"] == [f"z1 = {z1:.3g}, z2 = {z2:.3g}" for z1, z2 in grid.coords]
    np.testing.assert_allclose(cells["width"], 0.25)
    assert axis_formats(models, plot) == [("z1 (seam at 0.37)", 0.37), ("z2 (seam at 0.81)", 0.81)]
    (header,) = models_named(models, "Div")
    assert "re-centred" in header["attributes"]["text"] and "z1 = 0.37, z2 = 0.81" in header["attributes"]["text"]
    plain = bokeh_models(explorer_html(table, ["z1", "z2"], periodic=True))
    (plain_plot,) = figures(plain).values()
    assert scatter_fields(plain, plain_plot) == ("z1", "z2")
    assert axis_formats(plain, plain_plot) == [("z1", None), ("z2", None)]


def test_three_latents_three_linked_projections_with_their_grids():
    page, table, image_rows, grids = example_page(n=40, d=4, periodic=False)
    models = bokeh_models(page)
    plots = figures(models)
    assert list(plots) == ["projection z1-z2", "projection z1-z3", "projection z2-z3"]
    sources = {source for plot in plots.values() for source in scatter_source_ids(models, plot)}
    assert len(sources) == 1  # one ColumnDataSource: selections link
    x_range = {name: plot["attributes"]["x_range"]["id"] for name, plot in plots.items()}
    y_range = {name: plot["attributes"]["y_range"]["id"] for name, plot in plots.items()}
    assert x_range["projection z1-z2"] == x_range["projection z1-z3"]  # z1 pans together
    assert y_range["projection z1-z2"] == x_range["projection z2-z3"]  # z2
    assert y_range["projection z1-z3"] == y_range["projection z2-z3"]  # z3
    for name, grid in zip(plots, grids):
        (cells,) = grid_sources(models, plots[name])
        assert cells["__explorer_cell"][0] == f"z{grid.dims[0] + 1} = 0.125, z{grid.dims[1] + 1} = 0.125"
    z1_range = models[x_range["projection z1-z2"]]["attributes"]
    assert z1_range["start"] < min(table["z1"].min(), 0.0) and z1_range["end"] > max(table["z1"].max(), 1.0)
    assert "torus" not in page and "the first 3 of 4 latent coordinates" in page
    (selector,) = models_named(models, "Select")
    assert "z4" not in selector["attributes"]["options"]  # a latent, not metadata


def test_one_latent_against_log_likelihood_with_grid_strips():
    page, table, *_ = example_page(d=1, periodic=False, bounds=[(-0.5, 1.5)])
    models = bokeh_models(page)
    (plot,) = figures(models).values()
    assert plot["attributes"]["name"] == "projection z1-log_likelihood"
    y_range = ref(models, plot["attributes"]["y_range"])["attributes"]
    assert y_range["start"] < table["log_likelihood"].min() and y_range["end"] > table["log_likelihood"].max()
    x_range = ref(models, plot["attributes"]["x_range"])["attributes"]
    assert (x_range["start"], x_range["end"]) == (-0.5, 1.5)
    (cells,) = grid_sources(models, plot)
    np.testing.assert_allclose(cells["height"], y_range["end"] - y_range["start"])
    np.testing.assert_allclose(cells["y"], (y_range["end"] + y_range["start"]) / 2)
    without_likelihood = explorer_html(table.drop(columns="log_likelihood"), ["z1"], periodic=True)
    assert list(figures(bokeh_models(without_likelihood))) == ["projection z1-row"]


def test_colour_fields_numeric_and_integer_coded():
    table = embedding_table(30, 2)
    page = explorer_html(table, ["z1", "z2"], periodic=True, color_fields=["log_likelihood", "label"])
    models = bokeh_models(page)
    (selector,) = models_named(models, "Select")
    assert selector["attributes"]["value"] == "log_likelihood"
    (color_bar,) = models_named(models, "ColorBar")
    assert color_bar["attributes"].get("visible", True) is True
    legend_labels = {item["attributes"]["label"]["value"] for item in models_named(models, "LegendItem")}
    assert legend_labels == {"0", "1", "2"}  # few integer values: categorical without names
    no_fields = explorer_html(table[["z1", "z2"]], ["z1", "z2"], periodic=False, images=None,
                              image_rows=np.arange(0))
    assert models_named(bokeh_models(no_fields), "Select") == []


@pytest.mark.parametrize("change, message", [
    (dict(latent_columns=["z1", "z9"]), "latent columns \\['z9'\\] not in the table"),
    (dict(image_rows=np.array([0, 1])), "one table row per image"),
    (dict(image_rows=np.array([0, 0, 1])), "repeats a row"),
    (dict(image_rows=np.array([0, 1, 99])), "row positions in \\[0, 20\\)"),
    (dict(images=None), "image_rows given without images"),
    (dict(image_rows=None), "images given without image_rows"),
    (dict(grids=[regular_grid((0, 2), 2)]), "matches no plot"),
    (dict(color_fields=["nope"]), "not in the table"),
    (dict(categories={"label": ["zero"]}), "only 1 category names"),
    (dict(bounds=[(0, 1), (0, 1)]), "bounds conflict with periodic"),
    (dict(periodic=False, offsets=OFFSETS), "offsets re-centre a view of the torus"),
    (dict(offsets=[0.5]), "offsets has 1 values for 2 latent columns"),
    (dict(decoded=np.zeros((3, 4, 4))), "decoded is drawn over vectors"),
    (dict(images=np.zeros((3, 5)), grids=[regular_grid((0, 1), 2)]), "a mix of images and \\[n, D\\] vectors"),
    (dict(images=np.zeros((3, 5)), decoded=np.zeros((3, 6))), "vectors of different lengths \\[5, 6\\]"),
    (dict(images=np.zeros((3, 5)), decoded=np.zeros((2, 5))), "decoded must match images"),
    (dict(images=None, image_rows=None, decoded=np.zeros((3, 5))), "decoded given without images"),
])
def test_short_errors_for_bad_arguments(change, message):
    arguments = dict(latent_columns=["z1", "z2"], periodic=True, images=np.zeros((3, 4, 4)),
                     image_rows=np.array([0, 1, 2]))
    arguments.update(change)
    with pytest.raises(ValueError, match=message):
        explorer_html(embedding_table(20, 2), **arguments)


def test_a_hundred_thousand_points_stay_small_and_quick():
    n, n_images = 100_000, 2_000
    table = embedding_table(n, 2)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    page = explorer_html(table, ["z1", "z2"], periodic=True, images=rng.random((n_images, 8, 8)),
                         image_rows=rng.choice(n, n_images, replace=False), grids=[regular_grid((0, 1), 20)],
                         categories={"label": LABEL_NAMES})
    seconds = time.perf_counter() - start
    assert len(page) < 30e6, f"{len(page) / 1e6:.1f} MB"
    assert seconds < 20, f"{seconds:.1f} s"
    models = bokeh_models(page)
    (plot,) = figures(models).values()
    points = source_data(models[scatter_source_ids(models, plot)[0]])
    assert len(points["z1"]) == n and len(image_tags(points)) == n_images


def line_rows(picture: np.ndarray, hex_color: str) -> list[set[int]]:
    """The pixel rows of each column of a line plot ``[H, W, 3 or 4]`` drawn in ``hex_color``."""
    color = np.array([int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    drawn = np.abs(picture[..., :3] - color).max(axis=-1) < 0.01  # [H, W]
    return [set(np.flatnonzero(column)) for column in drawn.T]


def test_vectors_are_line_plots_of_value_against_feature_index():
    """Data without an image shape: each cell shows its decoded vector, each point its own vector (grey) with its
    decoded mean (blue) over it, all on one value range that the header states."""
    step = np.array([[0.0, 1.0]])  # D = 2: feature 1 low, feature 2 high
    grid = LatentGrid((0, 1), np.array([[0.5, 0.5]]), step)
    page = explorer_html(embedding_table(4, 2), ["z1", "z2"], periodic=True, images=step[:, ::-1],
                         image_rows=np.array([2]), decoded=step, grids=[grid])
    models = bokeh_models(page)
    (header,) = models_named(models, "Div")
    assert "against feature index 1–2 (x); values -0.05 to 1.05 (y)" in header["attributes"]["text"]  # 5% padding
    (plot,) = figures(models).values()
    (cells,) = grid_sources(models, plot)
    decoded = decode_png(cells["__explorer_image"][0])
    assert decoded.shape[:2] == (56, 112)
    blue = line_rows(decoded, "#1f77b4")
    (low,), (high,) = blue[0], blue[-1]
    assert high < low  # the higher value drawn higher
    assert all(rows == {low} for rows in blue[:56]) and all(rows == {high} for rows in blue[57:])
    assert blue[56] == set(range(high, low + 1))  # the step joins the two features
    points = source_data(models[scatter_source_ids(models, plot)[0]])
    example = decode_png(points["__explorer_image"][2])
    assert line_rows(example, "#1f77b4") == blue  # the decoded mean on top
    grey = line_rows(example, "#999999")
    assert all(rows == {high} for rows in grey[:56]) and all(rows == {low} for rows in grey[57:])
    assert [tag for position, tag in enumerate(points["__explorer_image"]) if position != 2] == [""] * 3


def test_line_plots_of_long_vectors_keep_every_peak():
    spike = np.zeros((1, 1000))
    spike[0, 637] = 1.0  # one feature of 1000, drawn in 112 pixel columns
    page = explorer_html(embedding_table(4, 2), ["z1", "z2"], periodic=True,
                         grids=[LatentGrid((0, 1), np.array([[0.5, 0.5]]), spike)])
    models = bokeh_models(page)
    (cells,) = grid_sources(models, list(figures(models).values())[0])
    blue = line_rows(decode_png(cells["__explorer_image"][0]), "#1f77b4")
    top = min(min(rows) for rows in blue)
    assert [column for column, rows in enumerate(blue) if top in rows] == [637 * 112 // 1000]


# --- in a real browser --------------------------------------------------------------------------------------

ERROR_PAGES = {
    "thrown error": "<script>throw new Error('deliberate')</script>",
    "reference error": "<script>notDefinedAnywhere()</script>",
    "console.error": "<script>console.error('explicit')</script>",
    "rejected promise": "<script>Promise.reject(new Error('deliberate'))</script>",
    "multi-line console.error": "<script>console.error('first line\\nsecond line')</script>",
}


@pytest.mark.parametrize("kind", ERROR_PAGES)
def test_browser_helper_detects_javascript_errors(chromium, kind):
    page = f"<html><head></head><body><p>text</p><script>console.log('fine')</script>{ERROR_PAGES[kind]}</body></html>"
    rendered = render_page(page, chromium=chromium, window=(400, 300), virtual_time_ms=500)
    assert len(rendered.errors) == 1, rendered.console
    assert "fine" in rendered.console


def test_browser_helper_detects_blank_pages_and_colours(chromium):
    blank = render_page("<html><body></body></html>", chromium=chromium, window=(400, 300), virtual_time_ms=500)
    assert blank.non_white_fraction() == 0 and blank.errors == []
    square = f'<html><body><div style="width: 100px; height: 100px; background: {CATEGORY_BLUE}; opacity: 0.5">'
    coloured = render_page(square + "</div></body></html>", chromium=chromium, window=(400, 300), virtual_time_ms=500)
    assert coloured.pixels_of_color(CATEGORY_BLUE) >= 100 * 100 and coloured.pixels_of_color(CATEGORY_ORANGE) == 0


TOOLTIPS_MARK = "explorer tooltips:"


def hover_script(plot_name: str, x: float, y: float) -> str:
    """JavaScript moving the mouse over data coordinates (x, y) of a plot, then (a second later) logging the
    tooltips on the page for :func:`shown_tooltips`."""
    return when_rendered(plot_name, """
  const target = view.canvas_view.events_el
  const box = target.getBoundingClientRect()
  const clientX = box.left + view.frame.x_scale.compute(%r), clientY = box.top + view.frame.y_scale.compute(%r)
  for (const type of ["pointerover", "pointerenter", "pointermove"]) {
    target.dispatchEvent(new PointerEvent(type, {clientX, clientY, pointerType: "mouse", pointerId: 1,
                                                 isPrimary: true, bubbles: true, composed: true}))
  }
  setTimeout(() => {
    const contents = Array.from(window.document.body.querySelectorAll(".bk-Tooltip"),
                                (tooltip) => tooltip.shadowRoot.querySelector(".bk-tooltip-content"))
    console.log("%s " + JSON.stringify(contents.map((content) => ({text: content.textContent,
                                                                  html: content.innerHTML}))))
  }, 1000)""" % (float(x), float(y), TOOLTIPS_MARK))


def shown_tooltips(rendered) -> list[dict]:
    """The tooltips that :func:`hover_script` found on the page (Bokeh keeps only shown ones in it), each
    ``{"text": its text, "html": its markup}``."""
    (report,) = [message for message in rendered.console if message.startswith(TOOLTIPS_MARK)]
    return json.loads(report[len(TOOLTIPS_MARK):])


def colour_hover_page(d: int) -> str:
    """Three points coloured train/test, the one at row 0 with a magenta image, over a cyan grid."""
    table = pd.DataFrame({"z1": [0.2, 0.7, 0.4], "z2": [0.3, 0.6, 0.8], "z3": [0.5, 0.1, 0.9],
                          "split": ["train", "test", "train"], "log_likelihood": [-10.0, -12.0, -11.0]})
    projections = {1: [(0,)], 2: [(0, 1)], 3: [(0, 1), (0, 2), (1, 2)]}[d]
    magenta_image = np.ones((1, 8, 8, 3)) * [1.0, 0.0, 1.0]
    cyan_grids = [regular_grid(dims, 4, color=[0.0, 1.0, 1.0]) for dims in projections]
    return explorer_html(table.drop(columns=["z1", "z2", "z3"][d:]), ["z1", "z2", "z3"][:d], periodic=True,
                         images=magenta_image, image_rows=np.array([0]), grids=cyan_grids)


def assert_rendered_cleanly(rendered, min_pixels_per_colour: int, min_non_white: float = 0.02):
    """No JavaScript errors or warnings, and points of both split colours drawn: ``min_pixels_per_colour``
    above the ~150 pixels of a legend glyph where the points alone must account for them."""
    assert rendered.errors == [] and rendered.warnings == [], rendered.console
    assert rendered.non_white_fraction() > min_non_white
    assert rendered.pixels_of_color(CATEGORY_BLUE) > min_pixels_per_colour
    assert rendered.pixels_of_color(CATEGORY_ORANGE) > min_pixels_per_colour


def test_explorer_renders_in_the_browser(chromium):
    page, *_ = example_page(n=300, d=2)
    assert_rendered_cleanly(render_page(page, chromium=chromium), min_pixels_per_colour=1000)


def test_colour_selector_recolours_the_points(chromium):
    page, *_ = example_page(n=300, d=2)
    switch = when_rendered("projection z1-z2",
                           'Bokeh.documents[0].get_model_by_name("colour-selector").value = "log_likelihood"')
    rendered = render_page(page, chromium=chromium, after_load_script=switch)
    assert rendered.errors == []
    assert rendered.pixels_of_color(CATEGORY_ORANGE) == 0  # no more train points, nor their legend
    assert rendered.pixels_of_color("#21918c") > 20  # viridis' middle: points and colour bar


@pytest.mark.parametrize("d, plot_name, point, empty", [
    (2, "projection z1-z2", (0.2, 0.3), (0.9, 0.1)),
    (3, "projection z1-z3", (0.2, 0.5), (0.9, 0.9)),
    (1, "projection z1-log_likelihood", (0.2, -10.0), (0.9, -12.05)),
])
def test_hover_shows_one_tooltip_the_points_over_the_decoded_grid(chromium, d, plot_name, point, empty):
    page = colour_hover_page(d)
    on_point = render_page(page, chromium=chromium, after_load_script=hover_script(plot_name, *point))
    assert_rendered_cleanly(on_point, min_pixels_per_colour=10)
    assert on_point.pixels_of_color(MAGENTA) > 80 * 80  # the point's image, ~112 px wide
    (tooltip,) = shown_tooltips(on_point)  # not also the tooltip of the grid cell under the point
    assert "decoded at" not in tooltip["text"] and "split" in tooltip["text"]
    assert on_point.pixels_of_color(CYAN) == 0  # the cell's decoded image is hidden
    in_empty_space = render_page(page, chromium=chromium, after_load_script=hover_script(plot_name, *empty))
    assert in_empty_space.errors == []
    assert in_empty_space.pixels_of_color(CYAN) > 80 * 80 and in_empty_space.pixels_of_color(MAGENTA) == 0
    (tooltip,) = shown_tooltips(in_empty_space)
    assert tooltip["text"].startswith("decoded at z1 = ")


def test_hovering_a_recentred_view_shows_the_original_coordinates(chromium):
    """A point is hovered where it is drawn, (z - c) mod 1, and its tooltip gives z; a cell drawn at u shows what is
    decoded at (u + c) mod 1."""
    table = pd.DataFrame({"z1": [0.2, 0.7], "z2": [0.3, 0.6], "split": ["train", "test"]})
    view = regular_grid((0, 1), 4, color=[0.0, 1.0, 1.0])
    page = explorer_html(table, ["z1", "z2"], periodic=True, images=np.ones((1, 8, 8, 3)) * [1.0, 0.0, 1.0],
                         image_rows=np.array([0]), offsets=OFFSETS,
                         grids=[LatentGrid((0, 1), translate(view.coords, OFFSETS), view.images)])
    drawn = translate(np.array([0.2, 0.3]), -OFFSETS)  # (0.83, 0.49)
    on_point = render_page(page, chromium=chromium, after_load_script=hover_script("projection z1-z2", *drawn))
    assert on_point.errors == [] and on_point.warnings == [], on_point.console
    (tooltip,) = shown_tooltips(on_point)
    assert "z10.2" in tooltip["text"] and "z20.3" in tooltip["text"] and on_point.pixels_of_color(MAGENTA) > 80 * 80
    in_cell = render_page(page, chromium=chromium, after_load_script=hover_script("projection z1-z2", 0.625, 0.125))
    (tooltip,) = shown_tooltips(in_cell)
    assert tooltip["text"] == "decoded at z1 = 0.995, z2 = 0.935"  # (0.625 + 0.37, 0.125 + 0.81)


def test_overlapping_points_share_one_tooltip_listing_the_nearest_three(chromium):
    """A collapsed embedding: 101 points within about a pixel of the cursor (1 px = 1/560), shuffled."""
    table = embedding_table(120, 2)
    offsets = np.random.default_rng(0).permutation(101) * 2e-5
    table.loc[:100, "z1"], table.loc[:100, "z2"] = 0.5 + offsets, 0.5
    images = np.random.default_rng(1).random((120, 8, 8))
    page = explorer_html(table, ["z1", "z2"], periodic=True, images=images, image_rows=np.arange(120))
    rendered = render_page(page, chromium=chromium, after_load_script=hover_script("projection z1-z2", 0.5, 0.5))
    assert rendered.errors == [], rendered.console
    (tooltip,) = shown_tooltips(rendered)
    assert tooltip["html"].count('class="explorer-point"') == 3 and tooltip["html"].count("<img") == 3
    assert "and 98 more here" in tooltip["text"]
    nearest = np.argsort(offsets)[:3]
    places = [tooltip["text"].find(f"song_{row}.wav") for row in nearest]
    assert -1 < places[0] < places[1] < places[2]  # nearest first
    assert tooltip["text"].count(".wav") == 3


HOSTILE = "<img src=x onerror=console.error('injected')><b>bold</b> & co"


def test_tooltip_shows_metadata_as_text_with_numbers_to_4_significant_digits(chromium):
    table = pd.DataFrame({"z1": [0.3, 0.7], "z2": [0.3, 0.7], "note": [HOSTILE, "plain"], "count": [7, 8],
                          "score": [-10.123456, 2.0], "small": [0.00123456, 1.0], HOSTILE: ["x", "y"]})
    page = explorer_html(table, ["z1", "z2"], periodic=True, images=np.ones((1, 4, 4)), image_rows=np.array([0]))
    rendered = render_page(page, chromium=chromium, after_load_script=hover_script("projection z1-z2", 0.3, 0.3))
    assert rendered.errors == [], rendered.console  # the injected onerror never ran
    (tooltip,) = shown_tooltips(rendered)
    assert tooltip["text"].count(HOSTILE) == 2  # the value and the column name, as text
    assert tooltip["html"].count("<img") == 1 and "<b>" not in tooltip["html"]  # only the point's own image
    for shown in ("count7", "score-10.12", "small0.001235", "z10.3"):
        assert shown in tooltip["text"]


def test_a_hundred_thousand_points_render(chromium):
    n = 100_000
    table = embedding_table(n, 3)
    rng = np.random.default_rng(0)
    page = explorer_html(table, ["z1", "z2", "z3"], periodic=True, images=rng.random((1000, 8, 8)),
                         image_rows=rng.choice(n, 1000, replace=False), categories={"label": LABEL_NAMES})
    rendered = render_page(page, chromium=chromium, virtual_time_ms=30_000, timeout_s=120)
    # three 340 px squares full of points (in which orange train points cover most blue test ones)
    assert_rendered_cleanly(rendered, min_pixels_per_colour=100, min_non_white=0.2)
    assert rendered.pixels_of_color(CATEGORY_ORANGE) > 50_000


# --- from a checkpoint: python -m lvm.tools.explore and lvm.callbacks.Explorer ------------------------------------------

@pytest.fixture(scope="module")
def quickstart_explorer(quickstart_checkpoint, tmp_path_factory) -> str:
    from lvm.tools import explore

    out = tmp_path_factory.mktemp("explore") / "explorer.html"
    explore.main(["--ckpt", str(quickstart_checkpoint), "--out", str(out), "--splits", "test", "--max_images", "100",
                  "--per_side", "8"])
    return out.read_text()


def test_explore_command_on_the_quickstart_checkpoint(quickstart_explorer):
    assert remote_resources(quickstart_explorer) == []
    models = bokeh_models(quickstart_explorer)
    (plot,) = figures(models).values()
    points = source_data(models[scatter_source_ids(models, plot)[0]])
    assert len(points["z1"]) == 359 and len(image_tags(points)) == 100
    (grid,) = grid_sources(models, plot)
    assert len(grid["__explorer_image"]) == 64
    offsets = seam_offsets_of(models, plot)  # re-centred by default: the seams of the embedding shown
    x, y = scatter_fields(models, plot)
    np.testing.assert_allclose(nearest_image(points[x] + offsets[0] - points["z1"]), 0, atol=1e-6)  # drawn at z - c
    np.testing.assert_allclose(nearest_image(points[y] + offsets[1] - points["z2"]), 0, atol=1e-6)


def seam_offsets_of(models: dict, plot: dict) -> np.ndarray:
    """The offsets of a re-centred explorer view, as its axes' tick formatters hold them."""
    offsets = [offset for _, offset in axis_formats(models, plot)]
    assert None not in offsets, "the view is not re-centred"
    return np.array(offsets)


def test_the_explore_command_recentres_by_default_and_not_with_recentre_false(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from lvm.numerics.torus import seam_offsets
    from lvm.tools import explore

    table = embedding_table(40, 2)
    model = SimpleNamespace(prior=SimpleNamespace(dim=2, periodic=True))
    given = []
    monkeypatch.setattr(explore, "checkpoint_embedding", lambda args, rest: (model, None, table, {}))
    monkeypatch.setattr(explore, "build_explorer", lambda *args, offsets=None, audio=True: given.append(offsets) or "<html>")
    for option in ([], ["--recentre", "false"]):
        explore.main(["--ckpt", "x.ckpt", "--out", str(tmp_path / "e.html"), *option])
    np.testing.assert_allclose(given[0], seam_offsets(table[["z1", "z2"]].to_numpy()))
    assert given[1] is None


def test_quickstart_explorer_renders_in_the_browser(quickstart_explorer, chromium):
    rendered = render_page(quickstart_explorer, chromium=chromium)
    assert rendered.errors == [] and rendered.warnings == [], rendered.console
    assert rendered.non_white_fraction() > 0.02


def test_the_quickstart_run_writes_its_explorer_and_diagnostics(quickstart_checkpoint):
    from lvm.numerics.torus import seam_offsets

    run_dir = quickstart_checkpoint.parents[1]
    models = bokeh_models((run_dir / "plots" / "explorer.html").read_text())
    (plot,) = figures(models).values()
    points = source_data(models[scatter_source_ids(models, plot)[0]])
    assert len(points["z1"]) == 359 == len(image_tags(points))  # the test set, every image under the default cap
    embedding = np.stack([points["z1"], points["z2"]], axis=1).astype(float)  # the test set's posterior means
    np.testing.assert_allclose(seam_offsets_of(models, plot), seam_offsets(embedding))  # the view of every figure
    report = json.loads((run_dir / "diagnostics.json").read_text())
    assert report["n"] == 359 and "label" in report["decodability"]


def test_spectrograms_are_shown_with_low_frequencies_at_the_bottom(tmp_path):
    """Row 0 of a spectrogram is its lowest frequency: the hover images and the decoded grid are flipped."""
    import torch

    from lvm.datamodules import VocalizationsDataModule
    from lvm.datamodules.miniatures import write_vocalizations
    from lvm.tools.explore import hover_images, latent_grids
    from lvm.analysis.embedding import embedding_table as export_table
    from lvm.likelihoods import BernoulliLikelihood
    from lvm.model import LatentVariableModel
    from lvm.networks import ConvDecoder
    from lvm.priors import TorusPrior
    from lvm.objectives import QMCObjective

    specs = np.zeros((12, 16, 16), dtype=np.float32)
    specs[:, 0, :] = 1.0  # energy in the lowest frequency bin only
    folder = tmp_path / "specs"
    folder.mkdir()
    write_vocalizations(folder / "bird.h5", 12, specs=specs)
    datamodule = VocalizationsDataModule(str(folder), batch_size=4)
    model = LatentVariableModel(ConvDecoder(image_size=16, hidden=8, channels=[4, 4]), BernoulliLikelihood(),
                                TorusPrior(2), QMCObjective(55), eval_num_points=89, eval_num_samples=4)
    table, _ = export_table(model, datamodule, ("test",), log_likelihood=False)
    images, rows = hover_images(datamodule, table, max_images=10, flip=datamodule.image_axes is not None)
    assert datamodule.image_axes is not None and images.shape == (len(rows), 16, 16)
    assert (images[:, -1, :] == 1).all() and (images[:, :-1, :] == 0).all()  # the bottom row of the picture
    (grid,) = latent_grids(model, table[["z1", "z2"]].to_numpy(), [(0, 1), (0, 1)], per_side=3, flip=True)
    with torch.no_grad():
        decoded = model.decode(torch.as_tensor(grid.coords, dtype=torch.float32))[:, 0].numpy()  # [9, 16, 16], row 0 = lowest frequency
    np.testing.assert_allclose(grid.images, decoded[:, ::-1, :], atol=1e-6)


# --- a model of vector data ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vector_model(tmp_path_factory):
    """An (untrained) MLP decoder on 10-D vectors, its ArrayDataModule (no image shape) and its embedding table."""
    import torch

    from lvm.analysis.embedding import embedding_table as export_table
    from lvm.datamodules import ArrayDataModule
    from lvm.likelihoods import GaussianLikelihood
    from lvm.model import LatentVariableModel
    from lvm.networks import MLPDecoder
    from lvm.objectives import QMCObjective
    from lvm.priors import TorusPrior

    folder = tmp_path_factory.mktemp("vectors")
    np.save(folder / "x.npy", np.random.default_rng(0).normal(size=(60, 10)).astype(np.float32))
    datamodule = ArrayDataModule(str(folder / "x.npy"), batch_size=16)
    torch.manual_seed(0)
    model = LatentVariableModel(MLPDecoder(data_shape=[10], hidden=[8]), GaussianLikelihood(mean_activation="identity"),
                                TorusPrior(2), QMCObjective(55), eval_num_points=89, eval_num_samples=4)
    table, _ = export_table(model, datamodule, ("train", "test"), log_likelihood=False)
    return model, datamodule, table


def decoded_means(model, z: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model.decode(torch.as_tensor(z, dtype=torch.float32)).numpy()


@pytest.fixture(scope="module")
def vector_explorer(vector_model) -> tuple[str, pd.DataFrame, np.ndarray]:
    """The explorer of :func:`vector_model` with a 3 x 3 decoded grid and line plots of 20 points; also the grid's
    decoded means."""
    from lvm.tools.explore import build_explorer

    model, datamodule, table = vector_model
    page = build_explorer(model, datamodule, table, max_images=20, per_side=3)
    centres = (np.arange(3) + 0.5) / 3
    return page, table, decoded_means(model, np.stack(np.meshgrid(centres, centres, indexing="ij"), -1).reshape(-1, 2))


def assert_line_plots_of(pictures: list[np.ndarray], means: np.ndarray, header: str, rows_off: int = 0) -> None:
    """Each picture's blue line is its decoded mean ``[D]``, feature by feature, on the header's value range (to
    within ``rows_off`` pixel rows: the header rounds the range to 3 digits)."""
    low, high = map(float, re.search(r"values (\S+) to (\S+) \(y\)", header).groups())
    for picture, mean in zip(pictures, means, strict=True):
        rows = line_rows(picture, "#1f77b4")
        for feature, value in enumerate(mean):
            column = (feature * 112 + 111) // len(mean)  # the last pixel column of the feature: not joined to the next
            row = round((high - value) / (high - low) * 55)
            assert any(abs(row - drawn) <= rows_off for drawn in rows[column]), (feature, value)


def test_a_model_of_vectors_gets_a_decoded_line_plot_per_cell_and_point(vector_explorer):
    page, table, decoded = vector_explorer
    models = bokeh_models(page)
    (plot,) = figures(models).values()
    (cells,) = grid_sources(models, plot)
    pictures = [decode_png(tag) for tag in image_tags(cells)]
    assert len(pictures) == 9 and all(picture.shape[:2] == (56, 112) for picture in pictures)
    (header,) = models_named(models, "Div")
    assert_line_plots_of(pictures, decoded, header["attributes"]["text"])  # each cell's line: its decoded mean
    points = source_data(models[scatter_source_ids(models, plot)[0]])
    examples = [decode_png(tag) for tag in image_tags(points)]
    assert len(examples) == 20 < len(table)
    assert all(line_rows(example, "#999999") and line_rows(example, "#1f77b4") for example in examples)
    assert "feature index 1–10" in header["attributes"]["text"]


def test_a_recentred_explorer_decodes_each_cell_at_the_original_coordinates_of_where_it_is_drawn(vector_model):
    import copy

    import torch

    from lvm.tools.explore import build_explorer, latent_grids

    model, datamodule, table = vector_model
    model = copy.deepcopy(model)
    with torch.no_grad():  # a decoder whose means differ from cell to cell by many pixel rows of the line plots
        for parameter in model.decoder.parameters():
            parameter.mul_(3)
    page = build_explorer(model, datamodule, table, max_images=20, per_side=3, offsets=OFFSETS)
    models = bokeh_models(page)
    (plot,) = figures(models).values()
    (cells,) = grid_sources(models, plot)
    drawn = np.stack([cells["x"], cells["y"]], axis=1)  # [9, 2] where each cell is drawn: u
    centres = (np.arange(3) + 0.5) / 3
    assert sorted(set(np.round(cells["x"], 9))) == sorted(set(np.round(cells["y"], 9))) == list(np.round(centres, 9))
    (header,) = models_named(models, "Div")
    expected = decoded_means(model, translate(drawn, OFFSETS))  # [9, D] decoded at the original coordinates
    pictures = [decode_png(tag) for tag in image_tags(cells)]
    assert_line_plots_of(pictures, expected, header["attributes"]["text"], rows_off=1)
    with pytest.raises(AssertionError):  # not what is decoded where the cell is drawn (the plain square's latents)
        assert_line_plots_of(pictures, decoded_means(model, drawn), header["attributes"]["text"], rows_off=1)
    points = source_data(models[scatter_source_ids(models, plot)[0]])
    x, y = scatter_fields(models, plot)
    np.testing.assert_allclose(np.stack([points[x], points[y]], 1), translate(table[["z1", "z2"]].to_numpy(), -OFFSETS),
                               atol=1e-6)
    (grid,) = latent_grids(model, table[["z1", "z2"]].to_numpy(), [(0, 1), (0, 1)], per_side=3, offsets=OFFSETS)
    np.testing.assert_allclose(translate(grid.coords, -OFFSETS), drawn, atol=1e-9)  # coords: the latents decoded
    np.testing.assert_allclose(grid.images, decoded_means(model, grid.coords), atol=1e-6)


def test_hovering_a_vector_models_grid_shows_its_line_plot(vector_explorer, chromium):
    page, table, _ = vector_explorer
    centres = (np.arange(3) + 0.5) / 3
    points = table[["z1", "z2"]].to_numpy()
    # the cell centre farthest from every point: hovering it shows the cell
    empty = max(((x, y) for x in centres for y in centres),
                key=lambda centre: np.abs(points - centre).max(axis=1).min())
    rendered = render_page(page, chromium=chromium, after_load_script=hover_script("projection z1-z2", *empty))
    assert rendered.errors == [], rendered.console
    (tooltip,) = shown_tooltips(rendered)
    assert tooltip["html"].count("<img") == 1
    assert tooltip["text"].startswith("Decoded mean against feature index 1–10 (x); values ")
    assert "decoded at z1 = " in tooltip["text"]


# --- counterfactual grids of a conditional model ------------------------------------------------------------------

YELLOW = "#ffff00"


def condition_page() -> str:
    """Two points over a cyan grid whose cells are yellow when decoded as "animal = bee"."""
    table = pd.DataFrame({"z1": [0.2, 0.7], "z2": [0.3, 0.6], "split": ["train", "test"]})
    grid = regular_grid((0, 1), 4, color=[0.0, 1.0, 1.0])
    grid.variants["animal = bee"] = np.broadcast_to([1.0, 1.0, 0.0], grid.images.shape)
    return explorer_html(table, ["z1", "z2"], periodic=True, grids=[grid],
                         grid_conditions=["reference (animal = ant)", "animal = bee"])


def test_grid_conditions_must_name_every_grids_variants():
    table = pd.DataFrame({"z1": [0.2, 0.7], "z2": [0.3, 0.6]})
    grid = regular_grid((0, 1), 4)
    with pytest.raises(ValueError, match="no variants"):
        explorer_html(table, ["z1", "z2"], periodic=True, grids=[grid], grid_conditions=["reference", "other"])
    grid.variants["other"] = grid.images[:3]
    with pytest.raises(ValueError, match="16 cells"):
        explorer_html(table, ["z1", "z2"], periodic=True, grids=[grid], grid_conditions=["reference", "other"])
    assert "grid-condition" not in explorer_html(table, ["z1", "z2"], periodic=True, grids=[grid],
                                                 grid_conditions=["reference"])  # one condition: no selector


def test_the_condition_selector_swaps_the_pictures_of_the_decoded_grid(chromium):
    page = condition_page()
    assert "grid-condition" in page and "Decode the grid as" in page
    before = render_page(page, chromium=chromium, after_load_script=hover_script("projection z1-z2", 0.9, 0.1))
    assert before.errors == [] and before.warnings == [], before.console
    assert before.pixels_of_color(CYAN) > 80 * 80 and before.pixels_of_color(YELLOW) == 0
    switch_then_hover = when_rendered("projection z1-z2", """
  Bokeh.documents[0].get_model_by_name("grid-condition").value = "animal = bee"
  setTimeout(() => { %s }, 500)  // the selector's callback runs asynchronously""" % hover_script("projection z1-z2", 0.9, 0.1))
    after = render_page(page, chromium=chromium, after_load_script=switch_then_hover)
    assert after.errors == [] and after.warnings == [], after.console
    assert after.pixels_of_color(YELLOW) > 80 * 80 and after.pixels_of_color(CYAN) == 0
    (tooltip,) = shown_tooltips(after)
    assert tooltip["text"].startswith("decoded at z1 = ")
