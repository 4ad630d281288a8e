"""What the figures say: colour bars with their quantity and unit, modes numbered alike on the latent fields and the
decoded modes, the reconstructions' header, latent coordinates on the decoded grid, the pairs of an embedding's
projections. Asserted on matplotlib's objects of the returned figures."""

import re
from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.text import Annotation

import lvm.callbacks.latent_plots
import lvm.callbacks.posterior_plots
from lvm.callbacks import PosteriorPlots
from lvm.likelihoods import GaussianLikelihood
from lvm.model import LatentVariableModel
from lvm.networks import MLPDecoder
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
    torch.manual_seed(0)
    model = LatentVariableModel(MLPDecoder([1, 8, 8], [16]), GaussianLikelihood(0.1), TorusPrior(2), QMCObjective(89),
                                eval_num_points=144)
    batches = [(torch.rand(16, 1, 8, 8), torch.arange(16) % 4)]
    trainer = SimpleNamespace(default_root_dir=str(tmp_path), loggers=[], callbacks=[], progress_bar_callback=None,
                              datamodule=SimpleNamespace(test_dataloader=lambda: batches))
    figures = {}
    monkeypatch.setattr(lvm.callbacks.posterior_plots, "save_and_log", lambda trainer, drawn: figures.update(drawn))
    PosteriorPlots(bandwidth=0.01, max_modes=3, per_side=2).on_test_end(trainer, model)  # a mode per seed: many
    field = figures["aggregated_posterior"]
    assert re.search(r"\(the densest 3 of \d+\)$", field.get_suptitle())
    numbers, tiles = _numbers(field.axes[0]), _mode_tiles(figures["mode_reconstructions"])
    assert [n for n, _ in numbers] == [n for n, _ in tiles] == ["1", "2", "3"]
    np.testing.assert_allclose([xy for _, xy in numbers], [c for _, c in tiles], atol=0.005)
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
    np.testing.assert_allclose([xy for _, xy in numbers], [c for _, c in tiles], atol=0.005)
    assert [ax.get_title() for ax in figures["reconstructions"].axes[:2]] == ["original", "decoded"]
    grid = figures["decoded_grid"].axes[0]
    assert (grid.get_xlabel(), grid.get_ylabel()) == ("z1 (period 1)", "z2 (period 1)")
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
