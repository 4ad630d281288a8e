"""Analyses, plots, tools and exports of a conditional model (``model.covariates``, issue 28): every embedding and score
is given each example's own covariates, decoded grids use the reference covariates unless told otherwise, and the
explorer offers the grid decoded under other covariate values."""

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from browser import render_page, when_rendered
from lvm.analysis.embedding import embed_loader, embedding_table, latent_columns
from lvm.analysis.landscape import aggregated_posterior, jacobian_frobenius_norm
from lvm.runs.usage import UsageError
from lvm.tools import embed as embed_tool
from lvm.tools import listen
from lvm.tools.explore import build_explorer, grid_conditions

ANIMALS = np.array(["ant", "bee", "cat"])
CALLBACKS = [{"class_path": "lvm.callbacks.LatentPlots", "init_args": {"per_side": 4}},
             {"class_path": "lvm.callbacks.PosteriorPlots", "init_args": {"per_side": 2}},
             {"class_path": "lvm.callbacks.Explorer", "init_args": {"per_side": 4, "max_images": 40}},
             {"class_path": "lvm.callbacks.TrustDiagnostics"}]


def _write_data(folder: Path, n: int = 240) -> tuple[Path, Path]:
    """8x8 images: a bright row at a latent position and a column set by the animal; metadata animal and duration."""
    rng = np.random.default_rng(0)
    animal, z = rng.integers(0, 3, n), rng.random(n)
    x = np.zeros((n, 1, 8, 8), np.float32)
    x[np.arange(n), 0, (z * 8).astype(int)] = 1.0
    x[np.arange(n), 0, :, 3 * animal] += 0.5
    x = np.clip(x + 0.05 * rng.normal(size=x.shape), 0, 1).astype(np.float32)
    np.save(folder / "x.npy", x)
    pd.DataFrame({"animal": ANIMALS[animal], "duration": rng.uniform(0.1, 0.5, n)}).to_csv(folder / "meta.csv",
                                                                                        index=False)
    return folder / "x.npy", folder / "meta.csv"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A conditional 2-D QMC model (a discrete and a continuous covariate) fitted for one epoch and tested with the
    usual callbacks; the warnings the run raised."""
    from lvm.runs.cli import LVMCLI

    root = tmp_path_factory.mktemp("conditional")
    data, metadata = _write_data(root)
    config = {
        "seed_everything": 0,
        "trainer": {"max_epochs": 1, "default_root_dir": str(root / "runs"), "logger": False,
                    "enable_progress_bar": False, "enable_model_summary": False, "callbacks": CALLBACKS},
        "model": {
            "decoder": {"class_path": "lvm.networks.MLPDecoder", "init_args": {"data_shape": [1, 8, 8], "hidden": [32]}},
            "likelihood": {"class_path": "lvm.likelihoods.GaussianLikelihood", "init_args": {"variance": 0.1}},
            "prior": {"class_path": "lvm.priors.TorusPrior", "init_args": {"dim": 2}},
            "objective": {"class_path": "lvm.objectives.QMCObjective", "init_args": {"num_points": 144}},
            "eval_num_points": 233,
            "covariates": [{"key": "animal", "kind": "discrete"},
                           {"key": "duration", "kind": "continuous", "levels": 8}]},
        "data": {"class_path": "lvm.datamodules.ArrayDataModule",
                 "init_args": {"path": str(data), "metadata": str(metadata), "batch_size": 64, "label_key": "animal"}},
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli = LVMCLI(args=config)
    cli.model.eval()
    return cli, [str(warning.message) for warning in caught]


def _codes_of(datamodule, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The data and covariate codes of a split's examples, in its order."""
    rows = torch.as_tensor(datamodule.split_rows(split))
    x = torch.from_numpy(np.load(datamodule.path))[rows]
    return x, datamodule.covariate_codes[rows]


def test_fit_and_test_with_the_usual_callbacks_skip_nothing(run):
    cli, caught = run
    run_dir = Path(cli.trainer.default_root_dir)
    assert not [message for message in caught if "skipped" in message or "CovariateError" in message], caught
    plots = {path.name for path in (run_dir / "plots").iterdir()}
    assert {"embedding.png", "decoded_grid.png", "reconstructions.png", "aggregated_posterior.png",
            "jacobian_norm.png", "explorer.html"} <= plots
    diagnostics = json.loads((run_dir / "diagnostics.json").read_text())
    assert diagnostics["n"] == len(cli.datamodule.test_set) and "animal" in diagnostics["decodability"]
    assert 'name":"grid-condition' in (run_dir / "plots" / "explorer.html").read_text().replace('" ', '"')


def test_the_embedding_table_is_the_posterior_given_each_examples_own_covariates(run):
    cli, _ = run
    model, datamodule = cli.model, cli.datamodule
    table, _ = embedding_table(model, datamodule, ("train", "test"))  # train: computed here; test: the test pass
    for split in ("train", "test"):
        x, codes = _codes_of(datamodule, split)
        with torch.no_grad(), model.given(codes):
            direct, likelihood = model.embed(x), model.evaluation.log_likelihood(model, x)["log_likelihood"]
        rows = table[table["split"] == split]
        np.testing.assert_allclose(rows[latent_columns(2)].to_numpy(), direct.double().numpy(), atol=1e-5)
        np.testing.assert_allclose(rows["log_likelihood"].to_numpy(), likelihood.double().numpy(), rtol=1e-5)
        raw = model.covariates.describe(codes)
        assert rows["animal"].tolist() == [row["animal"] for row in raw]  # the covariates' raw values
        np.testing.assert_allclose(rows["duration"].to_numpy(), [row["duration"] for row in raw], rtol=1e-5)
    assert "meta_animal" not in table and "covariate_animal" not in table  # one column per covariate


def test_analyses_of_batches_are_given_their_covariates(run):
    cli, _ = run
    model, datamodule = cli.model, cli.datamodule
    x, codes = _codes_of(datamodule, "test")
    embedding, labels = embed_loader(model, datamodule.test_dataloader(), num_points=144)  # not the test pass's
    with torch.no_grad(), model.given(codes):
        np.testing.assert_allclose(embedding.numpy(), model.embed(x, num_points=144).numpy(), atol=1e-6)
        _, weights = model.posterior_on_lattice(x)
    batches = [(x[:30], labels[:30], codes[:30]), (x[30:], labels[30:], codes[30:])]  # no test pass to read
    _, density = aggregated_posterior(model, batches)
    np.testing.assert_allclose(density.numpy(), weights.double().mean(0).numpy(), atol=1e-6)
    assert torch.isfinite(jacobian_frobenius_norm(model, torch.rand(5, 2))).all()  # at the reference covariates


def test_decoding_one_latent_point_as_two_categories_differs_when_the_film_weights_do(run):
    cli, _ = run
    model = copy.deepcopy(cli.model)
    z = torch.tensor([[0.3, 0.6]])
    duration = model.covariates.specs[1]["mean"]
    ant, bee = {"animal": "ant", "duration": duration}, {"animal": "bee", "duration": duration}
    last = model.covariates.film[-1]
    torch.nn.init.zeros_(last.weight), torch.nn.init.zeros_(last.bias)  # a decoder that ignores the covariates
    with torch.no_grad():
        assert torch.equal(model.decode(z, ant), model.decode(z, bee))
        torch.nn.init.normal_(last.weight, std=0.5)
        ant, bee = model.decode(z, ant), model.decode(z, bee)
        assert ant.shape == (1, 1, 8, 8) and (ant - bee).abs().max() > 1e-3
        assert torch.equal(model.decode(z), ant)  # the default: the reference covariates (first category, mean)


def test_the_explorer_offers_the_grid_under_each_category_and_five_durations(run):
    cli, _ = run
    model, datamodule = cli.model, cli.datamodule
    conditions = grid_conditions(model.covariates)
    names = [name for name, _ in conditions]
    assert names[0].startswith("reference (animal = ant, duration = ") and names[1:3] == ["animal = bee",
                                                                                          "animal = cat"]
    assert len(names) == 1 + 2 + 5 and all(name.startswith("duration = ") for name in names[3:])
    for name, codes in conditions[1:3]:
        assert model.covariates.describe(codes[None])[0]["animal"] == name.split(" = ")[1]
    table, _ = embedding_table(model, datamodule, ("test",))
    page = build_explorer(model, datamodule, table, max_images=20, per_side=3, audio=False)
    assert page.count("__explorer_condition:") >= len(names) - 1 and "Decode the grid as" in page


def test_the_explorers_condition_selector_swaps_the_decoded_grid_in_the_browser(run, chromium):
    page = (Path(run[0].trainer.default_root_dir) / "plots" / "explorer.html").read_text()
    check = when_rendered("projection z1-z2", """
  const doc = Bokeh.documents[0]
  const sources = Array.from(doc.all_models).filter((m) => m.data != null && "__explorer_condition:1" in m.data)
  const before = sources.map((s) => s.data["__explorer_image"].join(""))
  const selector = doc.get_model_by_name("grid-condition")
  const pictures = () => sources.map((s) => s.data["__explorer_image"].join(""))
  selector.value = selector.options[1]  // the callbacks run asynchronously
  setTimeout(() => {
    const after = pictures()
    selector.value = selector.options[0]
    setTimeout(() => {
      const back = pictures()
      console.log("conditions " + JSON.stringify({sources: sources.length, changed: after.map((a, k) => a != before[k]),
                                                  restored: back.map((b, k) => b == before[k])}))
    }, 500)
  }, 500)""")
    rendered = render_page(page, chromium=chromium, after_load_script=check)
    assert rendered.errors == [] and rendered.warnings == [], rendered.console
    (report,) = [message for message in rendered.console if message.startswith("conditions ")]
    result = json.loads(report[len("conditions "):])
    assert result["sources"] == 1 and all(result["changed"]) and all(result["restored"])


def test_the_embed_tool_exports_the_posterior_given_each_examples_covariates(run, tmp_path, capsys):
    cli, _ = run
    checkpoint = next(Path(cli.trainer.default_root_dir).glob("checkpoints/last.ckpt"))
    out = tmp_path / "embedding.csv"
    embed_tool.main(["--ckpt", str(checkpoint), "--out", str(out), "--splits", "train"])
    assert "Wrote" in capsys.readouterr().out
    exported = pd.read_csv(out)
    from lvm.runs.files import load_checkpoint

    model, datamodule = load_checkpoint(checkpoint)
    datamodule.setup("fit")
    model.attach_covariates(datamodule)
    x, codes = _codes_of(datamodule, "train")
    with torch.no_grad(), model.given(codes):
        np.testing.assert_allclose(exported[["z1", "z2"]].to_numpy(), model.embed(x).double().numpy(), atol=1e-5)
    assert exported["animal"].tolist() == [row["animal"] for row in model.covariates.describe(codes)]


def test_the_embed_tool_refuses_a_category_training_never_saw_in_one_line(run, tmp_path, capsys):
    cli, _ = run
    checkpoint = next(Path(cli.trainer.default_root_dir).glob("checkpoints/last.ckpt"))
    metadata = pd.read_csv(cli.datamodule.metadata_path)
    metadata.loc[0, "animal"] = "dog"
    metadata.to_csv(tmp_path / "meta.csv", index=False)
    with pytest.raises(SystemExit) as exit_:
        embed_tool.main(["--ckpt", str(checkpoint), "--out", str(tmp_path / "e.csv"),
                         "--data.init_args.metadata", str(tmp_path / "meta.csv")])
    error = capsys.readouterr().err
    assert exit_.value.code == 2 and "dog" in error and error.count("\n") == 1
    assert not (tmp_path / "e.csv").exists()


class _Spectrograms:
    """The little of a vocalization datamodule that decoded_sound reads."""

    durations = np.array([0.1])

    def setup(self, stage):
        pass

    def inversion_params(self):
        return {}


def test_listen_decodes_under_the_covariates_given(run, monkeypatch):
    cli, _ = run
    model = copy.deepcopy(cli.model)
    torch.nn.init.normal_(model.covariates.film[-1].weight, std=0.5)
    monkeypatch.setattr("lvm.numerics.spectrograms.spectrogram_to_audio", lambda images, *args, **kwargs: None)
    z = np.array([[0.3, 0.6], [0.1, 0.9]])
    _, bee = listen.decoded_sound(model, _Spectrograms(), z, covariates={"animal": "bee"})
    with torch.no_grad():
        as_bee = {"animal": "bee", "duration": model.covariates.specs[1]["mean"]}  # the other at its reference
        assert torch.equal(bee, model.decode(torch.as_tensor(z, dtype=torch.float32), as_bee))
        _, reference = listen.decoded_sound(model, _Spectrograms(), z)
        assert torch.equal(reference, model.decode(torch.as_tensor(z, dtype=torch.float32)))
    assert listen._covariate_options(["animal=bee", "duration=0.2"]) == {"animal": "bee", "duration": "0.2"}
    codes = listen.decoding_covariates(model, {"duration": "0.2"})  # animal at its reference, duration encoded
    spec = model.covariates.specs[1]
    np.testing.assert_allclose(codes.numpy(), [[0.0, (0.2 - spec["mean"]) / spec["scale"]]], rtol=1e-5)
    for bad, message in (({"animal": "dog"}, "dog"), ({"colour": "red"}, "colour")):
        with pytest.raises(UsageError, match=message):
            listen.decoding_covariates(model, bad)
    with pytest.raises(UsageError, match="KEY=VALUE"):
        listen._covariate_options(["animal"])
