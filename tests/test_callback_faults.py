"""Analyses and plots in callbacks degrade gracefully: a failing or degenerate analysis is skipped with a
warning naming it and why, the other figures are still written, and ``metrics.json`` (with the ``test/``
metrics) is on disk before any plotting starts."""

import json
import re
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import lvm.callbacks.latent_plots
import lvm.callbacks.posterior_plots
from lvm.callbacks import LatentClassification, LatentPlots, PosteriorPlots
from lvm.callbacks.heldout_batches import HeldOutBatches
from lvm.analysis.landscape import density_at, density_geodesic, is_flat, weighted_mean_shift
from lvm.numerics.lattices import fibonacci
from lvm.likelihoods import GaussianLikelihood
from lvm.runs.metrics_file import MetricsFile
from lvm.model import LatentVariableModel
from lvm.networks import MLPDecoder
from lvm.priors import TorusPrior
from lvm.objectives import QMCObjective

ROOT = Path(__file__).resolve().parents[1]


def _skips(record) -> list[str]:
    return [str(w.message) for w in record if " skipped: " in str(w.message)]


@pytest.mark.slow  # an end-to-end run (about 15 s)
def test_a_collapsed_decoder_keeps_its_test_metrics_and_skips_the_modes_with_a_warning(tmp_path, monkeypatch):
    """The newcomer audit's run: lr 1e6 collapses the decoder (every z decodes alike), the aggregated posterior is
    flat, and mean-shift used to crash PosteriorPlots (``max(): ... numel() == 0``) before metrics.json held the
    test metrics. Now the run ends normally, the test metrics were on disk before the first posterior plot, and
    the figures that need modes are skipped with a warning that says why."""
    from lvm.runs.cli import cli_main

    on_disk_when_plotting = []
    draw = lvm.callbacks.posterior_plots.plot_latent_field

    def plot_latent_field(*args, **kwargs):  # what metrics.json holds when PosteriorPlots starts drawing
        on_disk_when_plotting.extend(json.loads(path.read_text()) for path in tmp_path.glob("*/metrics.json"))
        return draw(*args, **kwargs)

    monkeypatch.setattr(lvm.callbacks.posterior_plots, "plot_latent_field", plot_latent_field)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        cli = cli_main(["--config", str(ROOT / "configs" / "quickstart.yaml"), "--model.optimizer.init_args.lr", "1e6",
                        "--trainer.max_epochs", "2", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
                        "--trainer.enable_model_summary", "false", "--model.eval_num_points", "233",
                        "--trainer.default_root_dir", str(tmp_path)])
    run_dir = Path(cli.trainer.default_root_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "test/log_likelihood" in metrics and "test/bits_per_dim" in metrics
    assert on_disk_when_plotting and "test/log_likelihood" in on_disk_when_plotting[0]
    skips = _skips(record)
    assert any(re.fullmatch(r"PosteriorPlots: geodesic skipped: it joins the two densest modes, and mean-shift "
                            r"\(bandwidth 0\.1\) found 0 modes \(the aggregated posterior is flat.*\)", s) for s in skips), skips
    assert any(s.startswith("PosteriorPlots: mode_reconstructions skipped: there are no modes to decode") for s in skips)
    plots = {path.stem for path in (run_dir / "plots").glob("*.png")}
    assert {"embedding", "decoded_grid", "aggregated_posterior", "jacobian_norm", "samples", "reconstructions"} <= plots


def test_mean_shift_of_a_flat_density_finds_no_modes_and_a_nan_density_is_refused():
    points = fibonacci(144)
    flat = torch.full((144,), 1 / 144)  # a collapsed decoder's aggregated posterior: no point above the mean
    modes, weights = weighted_mean_shift(points, flat, bandwidth=0.1, periodic=True)  # used to raise in max()
    assert modes.shape == (0, 2) and weights.shape == (0,)
    assert density_at(points, flat, modes, periodic=True).shape == (0,)
    # the same density as float32 averages of softmaxes give it: a few ulps apart, most points "above the mean";
    # those are rounding noise, not 35 modes
    noisy = (flat.float() + torch.arange(144).remainder(2) * torch.finfo(torch.float32).eps / 144).double()
    assert noisy.unique().numel() == 2 and is_flat(noisy)
    modes, weights = weighted_mean_shift(points, noisy, bandwidth=0.1, periodic=True)
    assert modes.shape == (0, 2) and weights.shape == (0,)
    # a density with a bump is not flat, and its mode is found where it is
    bump = flat.clone()
    bump[37] = 1.0
    assert not is_flat(bump)
    (mode,), _ = weighted_mean_shift(points, bump, bandwidth=0.01, periodic=True)
    assert torch.allclose(mode, points[37].double())
    nan = flat.clone()
    nan[3] = float("nan")
    with pytest.raises(ValueError, match="weighted_mean_shift: 1 of the 144 weights are not finite"):
        weighted_mean_shift(points, nan, bandwidth=0.1, periodic=True)
    with pytest.raises(ValueError, match="density_geodesic: 1 of the 144 density values are not finite"):
        density_geodesic(points, nan, points[0], points[1], radius=0.2, periodic=True)


def _model_trainer_and_batches(tmp_path):
    torch.manual_seed(0)
    model = LatentVariableModel(MLPDecoder([1, 8, 8], [16]), GaussianLikelihood(0.1), TorusPrior(2), QMCObjective(89),
                                eval_num_points=144)
    batches = [(torch.rand(16, 1, 8, 8), torch.arange(16) % 4) for _ in range(2)]
    metrics_file = MetricsFile()
    trainer = SimpleNamespace(default_root_dir=str(tmp_path), loggers=[], callbacks=[metrics_file],
                              progress_bar_callback=None, current_epoch=1, global_step=4,
                              callback_metrics={"test/log_likelihood": torch.tensor(-1.5)},
                              datamodule=SimpleNamespace(test_dataloader=lambda: batches))
    return model, trainer


@pytest.mark.parametrize("callback,module,broken,figure,kept", [
    (PosteriorPlots(bandwidth=0.2), lvm.callbacks.posterior_plots, "jacobian_frobenius_norm", "jacobian_norm",
     {"aggregated_posterior", "samples", "reconstructions"}),
    (LatentPlots(per_side=4), lvm.callbacks.latent_plots, "plot_embedding", "embedding", {"decoded_grid"}),
])
def test_a_figure_that_raises_is_skipped_with_a_warning_and_the_others_are_written(tmp_path, monkeypatch, callback,
                                                                                    module, broken, figure, kept):
    model, trainer = _model_trainer_and_batches(tmp_path)
    metrics_seen = []

    def fail(*args, **kwargs):
        metrics_seen.append(json.loads((tmp_path / "metrics.json").read_text()))  # written before any plotting
        raise RuntimeError("out of ink")

    monkeypatch.setattr(module, broken, fail)
    with pytest.warns(UserWarning) as record:
        callback.on_test_end(trainer, model)
    name = type(callback).__name__
    assert f"{name}: {figure} skipped: RuntimeError: out of ink" in _skips(record)
    written = {path.stem for path in (tmp_path / "plots").glob("*.png")}
    assert figure not in written and kept <= written
    assert metrics_seen and metrics_seen[0]["test/log_likelihood"] == -1.5


def test_scores_that_raise_are_skipped_with_a_warning_and_the_run_goes_on():
    class Broken(HeldOutBatches):
        resets = finished = 0

        def update(self, trainer, pl_module, x):
            raise FloatingPointError("NaN samples")

        def finish(self, trainer, pl_module, stage):
            self.finished += 1

        def reset(self):
            self.resets += 1

    score = Broken()
    with pytest.warns(UserWarning, match="Broken: the test score skipped: FloatingPointError: NaN samples") as record:
        for _ in range(3):
            score.on_test_batch_end(None, None, None, torch.zeros(2, 3), 0)
        score.on_test_epoch_end(None, None)
    assert len(_skips(record)) == 1 and score.finished == 0 and score.resets == 1  # warned once, state dropped
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        score.on_validation_epoch_end(None, None)  # the next epoch starts afresh
    assert score.finished == 1
    trainer = SimpleNamespace(datamodule=SimpleNamespace())  # no train_set
    with pytest.warns(UserWarning, match="LatentClassification: the latent-code classifier skipped: AttributeError"):
        LatentClassification().on_test_epoch_end(trainer, None)


def test_interrupts_are_not_swallowed(tmp_path, monkeypatch):
    model, trainer = _model_trainer_and_batches(tmp_path)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(lvm.callbacks.latent_plots, "plot_embedding", interrupt)
    with pytest.raises(KeyboardInterrupt):
        LatentPlots(per_side=4).on_test_end(trainer, model)


def test_posterior_figures_say_what_they_show(tmp_path, monkeypatch):
    """samples.png says decoded means and where the latents came from; every panel along the geodesic is labelled
    (not only its ends); the Jacobian colour bar names its logarithm's base (issue 31)."""
    import lvm.callbacks.posterior_plots as module

    model, trainer = _model_trainer_and_batches(tmp_path)
    titles, fields = {}, []
    real_grid, real_field = module.plot_image_grid, module.plot_latent_field

    def grid(images, per_side, title="Images", axes=None, tile_titles=None):
        titles[title] = tile_titles
        return real_grid(images, per_side, title, axes, tile_titles)

    def field(*args, **kwargs):
        fields.append(kwargs.get("value_label"))
        return real_field(*args, **kwargs)

    monkeypatch.setattr(module, "plot_image_grid", grid)
    monkeypatch.setattr(module, "plot_latent_field", field)
    PosteriorPlots(bandwidth=0.2).on_test_end(trainer, model)
    samples = [t for t in titles if t.startswith("Samples")]
    assert samples and "decoded means E[x | z]" in samples[0] and "from the prior (TorusPrior)" in samples[0]
    geodesic = [labels for t, labels in titles.items() if "geodesic" in t]
    if geodesic:  # drawn when the aggregated posterior has two modes
        assert all(label.strip() for label in geodesic[0]) and geodesic[0][1].startswith("step 1\n")
    assert any(label and "ln |df/dz|_F (natural log)" in label for label in fields), fields
