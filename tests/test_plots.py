"""What the figures say: colour bars with their quantity and unit, modes numbered alike on the latent fields and the
decoded modes, the reconstructions' header, latent coordinates on the decoded grid, the pairs of an embedding's
projections, and the re-centred torus view (drawn at (z - c) mod 1, ticked with the original coordinates, the same
view in every figure of a run). Asserted on matplotlib's objects of the returned figures."""

import re
from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.text import Annotation

import lvm.callbacks.figures
import lvm.callbacks.latent_plots
import lvm.callbacks.posterior_plots
from lvm.analysis.embedding import embed_loader
from lvm.callbacks import LatentPlots, PosteriorPlots
from lvm.likelihoods import GaussianLikelihood
from lvm.model import LatentVariableModel
from lvm.networks import MLPDecoder
from lvm.numerics.torus import nearest_image, seam_offsets, translate
from lvm.plotting.figures import (RECONSTRUCTION_HEADER, ImageAxes, latent_grid, plot_decoded_grid, plot_decoded_modes,
                       plot_embedding, plot_latent_field, plot_reconstructions)
from lvm.priors import StandardNormalPrior, TorusPrior
from lvm.objectives import QMCObjective

ROOT = Path(__file__).resolve().parents[1]
DENSITY = "density of E_x p(z | x) (per unit latent volume)"
SPECTROGRAM = ImageAxes(np.linspace(0.5, 12.0, 16), np.linspace(0.0, 200.0, 16), "frequency (kHz)", "time (ms)")
MODES = np.array([[0.3, 0.25], [0.95, 0.7], [0.6, 0.1]])  # densest first; the second near the right edge


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _field(dim: int) -> tuple[np.ndarray, np.ndarray]:
    points = np.random.default_rng(0).uniform(0, 1, (900, dim))
    return points, np.exp(-((points - 0.3) ** 2).sum(1) / 0.02)


def _numbers(ax) -> list[tuple[str, tuple[float, float]]]:
    """The numbers written beside the markers of a latent field panel, with the points they annotate."""
    return [(a.get_text(), tuple(a.xy)) for a in ax.texts if isinstance(a, Annotation)]


def _mode_tiles(figure) -> list[tuple[str, tuple[float, ...]]]:
    """(number, coordinates) of each titled tile of ``plot_decoded_modes``, in reading order."""
    tiles = []
    for ax in figure.axes:
        if ax.get_title():
            name, coordinates = ax.get_title().split("\n")
            tiles.append((name.removeprefix("mode "), tuple(float(c) for c in coordinates.strip("()").split(", "))))
    return tiles


def _tick_values(labels) -> list[float]:
    return [float(label.get_text()) for label in labels]


def _seams(ax) -> np.ndarray:
    """The seams ``[2]`` that the axis labels of a re-centred torus panel name ("z1 (period 1; seam at 0.37)"); 0
    where a label names none."""
    found = [re.search(r"seam at ([0-9.]+)\)", label) for label in (ax.get_xlabel(), ax.get_ylabel())]
    return np.array([float(match.group(1)) if match else 0.0 for match in found])


def _assert_ticks_show_original_coordinates(axis, offset: float) -> None:
    """Every tick of ``axis`` inside [0, 1], drawn at u, is labelled with the original coordinate (u + c) mod 1."""
    axis.axes.figure.canvas.draw()
    ticks = [(u, label.get_text()) for u, label in zip(axis.get_majorticklocs(), axis.get_ticklabels()) if 0 <= u <= 1]
    assert len(ticks) >= 3
    shown = np.array([float(text) for _, text in ticks])
    np.testing.assert_allclose(nearest_image(shown - (np.array([u for u, _ in ticks]) + offset)), 0, atol=0.006)


def _tiny_model(seed: int = 0) -> LatentVariableModel:
    torch.manual_seed(seed)
    return LatentVariableModel(MLPDecoder([1, 8, 8], [16]), GaussianLikelihood(0.1), TorusPrior(2), QMCObjective(89),
                               eval_num_points=144)


def _test_trainer(tmp_path, batches) -> SimpleNamespace:
    return SimpleNamespace(default_root_dir=str(tmp_path), loggers=[], callbacks=[], progress_bar_callback=None,
                           datamodule=SimpleNamespace(test_dataloader=lambda: batches))


def test_latent_field_colour_bars_name_the_quantity_and_unit_and_the_modes_are_numbered_densest_first():
    points, density = _field(2)
    figure = plot_latent_field(points, density, "Aggregated posterior", MODES, periodic=True, value_label=DENSITY)
    panel = figure.axes[0]
    assert panel.images[0].colorbar.ax.get_ylabel() == DENSITY
    assert panel.get_xlabel() == "z1 (period 1)" and panel.get_ylabel() == "z2 (period 1)"
    assert _numbers(panel) == [("1", (0.3, 0.25)), ("2", (0.95, 0.7)), ("3", (0.6, 0.1))]
    figure.canvas.draw()  # the number beside the mode at the right edge is written to its left, inside the axes
    right = [a for a in panel.texts if a.get_text() == "2"][0].get_window_extent()
    assert right.x1 <= panel.get_window_extent().x1


def test_a_3d_field_has_a_panel_per_pair_whose_colour_bar_names_the_coordinate_averaged_out():
    points, density = _field(3)
    modes = np.array([[0.3, 0.3, 0.3], [0.8, 0.6, 0.1]])
    figure = plot_latent_field(points, density, "Aggregated posterior", modes, value_label=DENSITY)
    panels = [ax for ax in figure.axes if ax.images]
    assert [(ax.get_xlabel(), ax.get_ylabel()) for ax in panels] == [("z1", "z2"), ("z1", "z3"), ("z2", "z3")]
    assert [ax.images[0].colorbar.ax.get_ylabel() for ax in panels] == [
        f"{DENSITY}\naveraged over {hidden}" for hidden in ("z3", "z2", "z1")]
    for panel, (i, j) in zip(panels, [(0, 1), (0, 2), (1, 2)]):
        assert _numbers(panel) == [("1", (0.3, 0.3)), ("2", (modes[1, i], modes[1, j]))]


@pytest.mark.parametrize("axes", [None, SPECTROGRAM])
def test_decoded_modes_are_titled_with_the_numbers_and_coordinates_of_the_field_markers(axes):
    points, density = _field(2)
    field = plot_latent_field(points, density, "Aggregated posterior", MODES, value_label=DENSITY)
    tiles = _mode_tiles(plot_decoded_modes(torch.rand(3, 1, 16, 16), MODES, axes=axes))
    assert [name for name, _ in tiles] == [number for number, _ in _numbers(field.axes[0])] == ["1", "2", "3"]
    np.testing.assert_allclose([coordinates for _, coordinates in tiles], MODES, atol=0.005)


@pytest.mark.parametrize("axes", [None, SPECTROGRAM])
def test_the_reconstructions_header_names_the_original_column_and_that_column_shows_the_originals(axes):
    originals, reconstructions = torch.rand(6, 1, 16, 16), torch.rand(6, 1, 16, 16)
    figure = plot_reconstructions(originals, reconstructions, 3, axes=axes)
    tiles = [ax for ax in figure.axes if ax.images]
    assert [ax.get_title() for ax in tiles[:6]] == list(RECONSTRUCTION_HEADER) * 3 == ["original", "decoded"] * 3
    assert all(not ax.get_title() for ax in tiles[6:])  # a header over the first row only
    shown = [np.asarray(ax.images[0].get_array()) for ax in tiles]
    np.testing.assert_allclose(shown[0::2], originals[:, 0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(shown[1::2], reconstructions[:, 0].numpy(), rtol=1e-6)


def test_the_decoded_grid_is_ticked_at_the_tile_centres_with_their_latent_coordinates():
    grid = latent_grid(TorusPrior(2), 4).numpy()
    figure = plot_decoded_grid(torch.rand(16, 1, 8, 8), grid, 4, periodic=True)
    ax = figure.axes[0]
    assert ax.get_xlabel() == "z1 (period 1)" and ax.get_ylabel() == "z2 (period 1)"
    np.testing.assert_allclose(_tick_values(ax.get_xticklabels()), [0.125, 0.375, 0.625, 0.875], atol=0.005)
    np.testing.assert_allclose(_tick_values(ax.get_xticklabels()), grid[:4, 0], atol=0.005)
    downward = np.argsort(ax.get_yticks())  # image rows count down from the top: the top row (largest z2) first
    np.testing.assert_allclose(np.array(_tick_values(ax.get_yticklabels()))[downward], [0.875, 0.625, 0.375, 0.125],
                               atol=0.005)
    np.testing.assert_allclose(np.array(_tick_values(ax.get_yticklabels()))[downward], grid[::4, 1], atol=0.005)


def test_the_decoded_grid_of_spectrograms_keeps_kHz_and_ms_on_the_tiles_and_puts_the_latent_plane_on_top_and_right():
    grid = latent_grid(StandardNormalPrior(3), 3).numpy()
    figure = plot_decoded_grid(torch.rand(9, 1, 16, 16), grid, 3, axes=SPECTROGRAM)
    assert figure.get_supxlabel() == "time (ms)" and figure.get_supylabel() == "frequency (kHz)"
    title = figure.get_suptitle()
    assert "z3 = 0.00" in title and "each tile: frequency (kHz) against time (ms)" in title
    latent = [ax for ax in figure.axes if ax.get_xlabel() == "z1"]
    assert len(latent) == 1 and latent[0].get_ylabel() == "z2"
    latent = latent[0]
    assert latent.xaxis.get_label_position() == "top" and latent.yaxis.get_label_position() == "right"
    np.testing.assert_allclose(_tick_values(latent.get_xticklabels()), grid[:3, 0], atol=0.005)
    by_height = np.argsort(latent.get_yticks())[::-1]  # from the top row down
    np.testing.assert_allclose(np.array(_tick_values(latent.get_yticklabels()))[by_height], grid[::3, 1], atol=0.005)


def test_a_1d_decoded_grid_is_one_row_along_z1():
    grid = latent_grid(TorusPrior(1), 5).numpy()
    assert grid.shape == (5, 1)
    ax = plot_decoded_grid(torch.rand(5, 1, 8, 8), grid, 5, periodic=True).axes[0]
    assert ax.get_xlabel() == "z1 (period 1)" and ax.get_ylabel() == "" and len(ax.get_yticks()) == 0
    np.testing.assert_allclose(_tick_values(ax.get_xticklabels()), grid[:, 0], atol=0.005)


def test_embeddings_above_2d_say_which_coordinates_they_show():
    rng = np.random.default_rng(0)
    three = plot_embedding(rng.uniform(size=(50, 3)), rng.normal(size=50), periodic=True, label_title="duration (ms)")
    panels = [ax for ax in three.axes if ax.get_label() != "<colorbar>"]
    assert [(ax.get_xlabel(), ax.get_ylabel()) for ax in panels] == [
        ("z1 (period 1)", "z2 (period 1)"), ("z1 (period 1)", "z3 (period 1)"), ("z2 (period 1)", "z3 (period 1)")]
    assert [ax.get_ylabel() for ax in three.axes if ax.get_label() == "<colorbar>"] == ["duration (ms)"]
    five = plot_embedding(rng.normal(size=(50, 5)), rng.integers(0, 3, 50))
    assert five.get_suptitle().endswith("(z1, z2 of 5)")
    assert (five.axes[0].get_xlabel(), five.axes[0].get_ylabel()) == ("z1", "z2")


def test_a_1d_embedding_is_drawn_against_its_categories_or_as_a_histogram():
    rng = np.random.default_rng(0)
    z, kinds = rng.normal(size=(60, 1)), np.repeat([0, 1, 2], 20)
    strips = plot_embedding(z, kinds, label_names=["chirp", "trill", "whistle"], label_title="kind").axes[0]
    assert strips.get_xlabel() == "z1" and strips.get_ylabel() == "kind"
    assert [t.get_text() for t in strips.get_yticklabels()] == ["chirp", "trill", "whistle"]
    heights = [np.round(c.get_offsets()[:, 1]).astype(int) for c in strips.collections]
    assert [np.unique(h).tolist() for h in heights] == [[0], [1], [2]]  # one strip per category
    histogram = plot_embedding(z).axes[0]
    assert histogram.get_xlabel() == "z1" and histogram.get_ylabel() == "number of examples"
    assert sum(patch.get_height() for patch in histogram.patches) == 60


def test_posterior_plots_number_only_the_densest_modes_alike_and_draw_a_density_per_unit_volume(tmp_path, monkeypatch):
    model = _tiny_model()
    batches = [(torch.rand(16, 1, 8, 8), torch.arange(16) % 4)]
    trainer = _test_trainer(tmp_path, batches)
    figures = {}
    monkeypatch.setattr(lvm.callbacks.posterior_plots, "save_and_log", lambda trainer, drawn: figures.update(drawn))
    PosteriorPlots(bandwidth=0.01, max_modes=3, per_side=2).on_test_end(trainer, model)  # a mode per seed: many
    field = figures["aggregated_posterior"]
    assert re.search(r"\(the densest 3 of \d+\)$", field.get_suptitle())
    numbers, tiles = _numbers(field.axes[0]), _mode_tiles(figures["mode_reconstructions"])
    assert [n for n, _ in numbers] == [n for n, _ in tiles] == ["1", "2", "3"]
    drawn = np.array([xy for _, xy in numbers])  # in the re-centred view; the tiles give original coordinates
    offsets = seam_offsets(embed_loader(model, batches)[0].numpy())
    np.testing.assert_allclose(_seams(field.axes[0]), offsets, atol=0.005)
    np.testing.assert_allclose(nearest_image(translate(drawn, offsets) - [c for _, c in tiles]), 0, atol=0.005)
    densities = field.axes[0].images[0].get_array()
    assert 0.5 < np.nanmean(densities) < 2  # probabilities of 144 lattice points, times 144: about 1 on the unit torus


@pytest.mark.slow
def test_a_quick_start_run_numbers_its_modes_alike_and_labels_its_figures(tmp_path, monkeypatch):
    from lvm.runs.cli import cli_main

    figures = {}
    for module in (lvm.callbacks.latent_plots, lvm.callbacks.posterior_plots):
        monkeypatch.setattr(module, "save_and_log", lambda trainer, drawn: figures.update(drawn))
    cli_main(["--config", str(ROOT / "configs" / "quickstart.yaml"), "--trainer.default_root_dir", str(tmp_path),
              "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1",
              "--trainer.limit_test_batches", "2", "--trainer.logger", "false", "--trainer.enable_progress_bar",
              "false", "--trainer.enable_model_summary", "false", "--model.eval_num_points", "233"])
    field = figures["aggregated_posterior"].axes[0]
    assert "per unit latent volume" in field.images[0].colorbar.ax.get_ylabel()
    assert "ln |df/dz|_F (natural log)" in figures["jacobian_norm"].axes[0].images[0].colorbar.ax.get_ylabel()
    numbers, tiles = _numbers(field), _mode_tiles(figures["mode_reconstructions"])
    assert numbers and [n for n, _ in numbers] == [n for n, _ in tiles] == [str(k + 1) for k in range(len(tiles))]
    drawn = np.array([xy for _, xy in numbers])  # in the re-centred view
    np.testing.assert_allclose(nearest_image(translate(drawn, _seams(field)) - [c for _, c in tiles]), 0, atol=0.005)
    assert [ax.get_title() for ax in figures["reconstructions"].axes[:2]] == ["original", "decoded"]
    grid = figures["decoded_grid"].axes[0]
    assert grid.get_xlabel().startswith("z1 (period 1; seam at ") and grid.get_ylabel().startswith("z2 (period 1")
    np.testing.assert_allclose(_seams(grid), _seams(field))  # one view for the run
    assert len(grid.get_xticklabels()) == 12  # the quick start's per_side


def test_the_embedding_legend_names_what_the_labels_are():
    """embedding.png's legend is titled by what the datamodule's labels are ("digit"), not "label" (issue 31)."""
    from types import SimpleNamespace

    from lvm.batches import label_title
    from lvm.datamodules import DigitsDataModule, MNISTDataModule

    assert label_title(DigitsDataModule()) == "digit" and label_title(MNISTDataModule()) == "digit"
    assert label_title(SimpleNamespace(label_key="species")) == "species"
    assert label_title(SimpleNamespace()) == "label"


def test_torus_plots_draw_the_identification_of_the_square_s_edges():
    """A cluster cut by an edge of the square looks like two: the torus plots mark which edges are glued (one arrow
    on the left and right edges, two on the bottom and top) and say so under the axis (issue 31)."""
    import numpy as np
    from matplotlib.patches import FancyArrowPatch

    from lvm.plotting.figures import plot_embedding, plot_latent_field

    rng = np.random.default_rng(0)
    for figure in (plot_embedding(rng.uniform(size=(50, 2)), periodic=True),
                   plot_latent_field(rng.uniform(size=(200, 2)), rng.uniform(size=200), "f", periodic=True,
                                     value_label="v")):
        arrows = [patch for patch in figure.axes[0].patches if isinstance(patch, FancyArrowPatch)]
        assert len(arrows) == 6
        assert ["edges with matching arrows are glued" in text.get_text() for text in figure.texts].count(True) == 1
    flat = plot_embedding(rng.normal(size=(50, 2)), periodic=False)
    assert not [patch for patch in flat.axes[0].patches if isinstance(patch, FancyArrowPatch)]
    assert not any("glued" in text.get_text() for text in flat.texts)


# --- the re-centred torus view ------------------------------------------------------------------------------

OFFSETS = np.array([0.37, 0.81])  # a view whose seams are far from 0


def _wrapped_clusters(n: int = 200, seed: int = 0) -> np.ndarray:
    """Points ``[n, 2]`` of one cluster straddling the seam at 0 in both coordinates (half near 0.02, half near
    0.98): on the plain square it looks like four."""
    rng = np.random.default_rng(seed)
    return np.remainder(rng.choice([0.02, 0.98], size=(n, 2)) + rng.normal(0, 0.01, (n, 2)), 1.0)


def test_a_recentred_embedding_is_drawn_shifted_and_ticked_with_the_original_coordinates():
    z = _wrapped_clusters()
    offsets = seam_offsets(z)
    figure = plot_embedding(z, np.arange(len(z)) % 2, periodic=True, offsets=offsets)
    ax = figure.axes[0]
    drawn = np.concatenate([collection.get_offsets() for collection in ax.collections])  # by category
    expected = np.concatenate([translate(z[np.arange(len(z)) % 2 == k], -offsets) for k in (0, 1)])
    np.testing.assert_allclose(drawn, expected)
    assert np.ptp(drawn, axis=0).max() < 0.2  # one cluster in the middle of the square, not four in its corners
    assert ax.get_xlabel() == f"z1 (period 1; seam at {offsets[0]:.2f})"
    np.testing.assert_allclose(_seams(ax), offsets)
    _assert_ticks_show_original_coordinates(ax.xaxis, offsets[0])
    _assert_ticks_show_original_coordinates(ax.yaxis, offsets[1])
    (note,) = [text.get_text() for text in figure.texts if "glued" in text.get_text()]
    assert "re-centred" in note


def test_tick_labels_of_a_recentred_view_read_the_original_coordinates():
    ax = plot_embedding(np.random.default_rng(0).uniform(size=(50, 2)), periodic=True, offsets=OFFSETS).axes[0]
    ax.figure.canvas.draw()
    left = [label.get_text() for u, label in zip(ax.get_xticks(), ax.get_xticklabels()) if u == 0]
    assert left == ["0.37"]  # the original coordinate at the left edge
    _assert_ticks_show_original_coordinates(ax.yaxis, 0.81)
    plain = plot_embedding(np.random.default_rng(0).uniform(size=(50, 2)), periodic=True).axes[0]
    assert plain.get_xlabel() == "z1 (period 1)"
    assert not any("re-centred" in text.get_text() for text in plain.figure.texts)


def test_a_recentred_1d_embedding_is_shifted_along_z1():
    z = np.remainder(np.random.default_rng(0).normal(0.0, 0.02, (100, 1)), 1.0)  # around the seam
    offsets = seam_offsets(z)
    assert 0.3 < offsets[0] < 0.7
    ax = plot_embedding(z, np.repeat([0, 1], 50), periodic=True, offsets=offsets).axes[0]
    drawn = np.concatenate([collection.get_offsets()[:, 0] for collection in ax.collections])
    np.testing.assert_allclose(drawn, translate(z[:, 0], -offsets[0]))
    assert ax.get_xlim() == (0, 1) and ax.get_xlabel() == f"z1 (period 1; seam at {offsets[0]:.2f})"
    _assert_ticks_show_original_coordinates(ax.xaxis, offsets[0])
    histogram = plot_embedding(z, periodic=True, offsets=offsets).axes[0]
    filled = [patch.get_x() + patch.get_width() / 2 for patch in histogram.patches if patch.get_height()]
    assert 0.3 < min(filled) and max(filled) < 0.7  # one bump in the middle, not two at the ends


def test_a_recentred_latent_field_shifts_its_cells_markers_and_path():
    points, density = _field(2)
    path = np.array([[0.3, 0.25], [0.2, 0.1], [0.05, 0.95], [0.95, 0.7]])  # crosses both seams of the square
    figure = plot_latent_field(points, density, "f", MODES, path, periodic=True, value_label=DENSITY, offsets=OFFSETS)
    ax = figure.axes[0]
    assert _numbers(ax) == [(str(k + 1), tuple(xy)) for k, xy in enumerate(translate(MODES, -OFFSETS))]
    (line,) = ax.lines
    shown = np.stack([line.get_xdata(), line.get_ydata()], axis=1)
    np.testing.assert_allclose(shown[np.isfinite(shown).all(1)], translate(path, -OFFSETS))
    plain = plot_latent_field(points, density, "f", periodic=True, value_label=DENSITY).axes[0]
    peak = np.unravel_index(np.nanargmax(ax.images[0].get_array()), ax.images[0].get_array().shape)  # [y, x]
    plain_peak = np.unravel_index(np.nanargmax(plain.images[0].get_array()), plain.images[0].get_array().shape)
    cells = ax.images[0].get_array().shape[0]
    moved = (np.array(peak) - plain_peak) / cells  # [y, x]: by -c
    np.testing.assert_allclose(nearest_image(moved + OFFSETS[::-1]), 0, atol=1.5 / cells)
    _assert_ticks_show_original_coordinates(ax.xaxis, OFFSETS[0])


def test_a_recentred_decoded_grid_decodes_each_tile_at_its_original_coordinates():
    model, per_side = _tiny_model(), 4
    grid = latent_grid(model.prior, per_side, offsets=OFFSETS)
    with torch.no_grad():
        images = model.decode(grid.float())  # [16, 1, 8, 8]
    figure = plot_decoded_grid(images, grid.numpy(), per_side, periodic=True, offsets=OFFSETS)
    ax = figure.axes[0]
    mosaic = np.asarray(ax.images[0].get_array())[..., 0]  # [H', W']: 8-pixel tiles, 1 pixel apart
    centres = (np.arange(per_side) + 0.5) / per_side
    for row, u2 in enumerate(centres[::-1]):  # the top row has the largest u2
        for column, u1 in enumerate(centres):
            with torch.no_grad():
                z = torch.tensor(translate(np.array([[u1, u2]]), OFFSETS), dtype=torch.float32)  # [1, 2]
                expected = model.decode(z)[0, 0]
            tile = mosaic[1 + 9 * row: 9 + 9 * row, 1 + 9 * column: 9 + 9 * column]
            np.testing.assert_allclose(tile, expected.clamp(0, 1).numpy(), atol=1e-6)
    np.testing.assert_allclose(_tick_values(ax.get_xticklabels()), translate(centres, OFFSETS[0]), atol=0.005)
    np.testing.assert_allclose(_seams(ax), OFFSETS)
    with pytest.raises(ValueError, match="not periodic"):
        latent_grid(StandardNormalPrior(2), per_side, offsets=OFFSETS)


def test_latent_and_posterior_plots_share_the_view_of_the_test_embedding(tmp_path, monkeypatch):
    """Both callbacks re-centre every torus figure by the seam offsets of the test set's posterior means (here
    replaced by far-from-0 offsets, after checking what they are computed from); recentre=False keeps the square."""
    model = _tiny_model()
    batches = [(torch.rand(16, 1, 8, 8), torch.arange(16) % 4)]
    trainer = _test_trainer(tmp_path, batches)
    figures, given = {}, []

    def offsets_of(points, *args, **kwargs):
        given.append(np.asarray(points))
        return OFFSETS

    monkeypatch.setattr(lvm.callbacks.figures, "seam_offsets", offsets_of)
    for module in (lvm.callbacks.latent_plots, lvm.callbacks.posterior_plots):
        monkeypatch.setattr(module, "save_and_log", lambda trainer, drawn: figures.update(drawn))
    LatentPlots(per_side=4).on_test_end(trainer, model)
    PosteriorPlots(bandwidth=0.2).on_test_end(trainer, model)
    embedding = embed_loader(model, batches)[0].numpy()
    assert len(given) == 2 and all(np.allclose(points, embedding) for points in given)
    panels = {name: figure.axes[0] for name, figure in figures.items()
              if name in ("embedding", "decoded_grid", "aggregated_posterior", "jacobian_norm", "geodesic")}
    assert {"embedding", "decoded_grid", "aggregated_posterior", "jacobian_norm"} <= set(panels)
    for name, ax in panels.items():
        np.testing.assert_allclose(_seams(ax), OFFSETS, err_msg=name)
    drawn = np.concatenate([collection.get_offsets() for collection in panels["embedding"].collections])
    np.testing.assert_allclose(np.sort(drawn, axis=0), np.sort(translate(embedding, -OFFSETS), axis=0))
    grid = panels["decoded_grid"]
    np.testing.assert_allclose(_tick_values(grid.get_xticklabels()), translate((np.arange(4) + 0.5) / 4, 0.37),
                               atol=0.005)
    figures.clear()
    LatentPlots(per_side=4, recentre=False).on_test_end(trainer, model)
    assert figures["embedding"].axes[0].get_xlabel() == "z1 (period 1)" and len(given) == 2
