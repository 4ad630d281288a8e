"""The scikit-learn estimator (lvm.tools.estimator.Embedding): the scikit-learn API on NumPy, pandas and AnnData
input, a normal run directory that the lvm.tools commands read, save/load, and scikit-learn's own machinery
(clone, Pipeline, cross_val_score, GridSearchCV)."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from lvm.tools.estimator import Embedding

FAST = dict(max_epochs=2, hidden=(16,), num_points=55, eval_num_points=89, batch_size=64, n_init=1)


def _counts(n=200, d=8, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.random((n, 1))
    return rng.poisson(np.exp(np.cos(2 * np.pi * z) @ rng.normal(size=(1, d)))).astype(np.float32)


def test_fit_transform_decode_score_sample_save_and_load(tmp_path):
    x = _counts()
    estimator = Embedding(likelihood="poisson", root_dir=str(tmp_path), **FAST)
    z = estimator.fit_transform(x, y=np.arange(200) % 4, metadata={"animal": [f"a{i % 3}" for i in range(200)]})
    assert z.shape == (200, 2) and ((0 <= z) & (z < 1)).all()  # posterior means on the torus
    assert estimator.n_features_in_ == 8
    run = estimator.run_dir_
    assert (run / "config.yaml").is_file() and (run / "metrics.json").is_file() and estimator.checkpoint_.is_file()
    assert "train/loss" in json.loads((run / "metrics.json").read_text())

    decoded = estimator.inverse_transform(z[:5])
    assert decoded.shape == (5, 8) and (decoded > 0).all()  # Poisson rates
    scores = estimator.score_samples(x[:20])
    assert scores.shape == (20,) and np.isfinite(scores).all() and (scores < 0).all()  # log-probabilities of counts
    assert math.isclose(estimator.score(x[:20]), scores.mean())
    samples = estimator.sample(6, random_state=0)
    assert samples.shape == (6, 8) and (samples >= 0).all() and (samples == np.round(samples)).all()

    saved = estimator.save(tmp_path / "model.ckpt")
    again = Embedding.load(saved)
    assert again.get_params() == {**estimator.get_params(), "hidden": [16]}
    np.testing.assert_allclose(again.transform(x[:10]), z[:10], atol=1e-6)

    from lvm.tools import embed
    embed.main(["--ckpt", str(saved), "--out", str(tmp_path / "embedding.csv"), "--log_likelihood", "false"])
    table = pd.read_csv(tmp_path / "embedding.csv").sort_values("example")
    assert list(table.animal[:4]) == ["a0", "a1", "a2", "a0"] and list(table.label[:5]) == [0, 1, 2, 3, 0]


def test_several_initialisations_go_on_with_the_best_and_leave_one_run(tmp_path, monkeypatch):
    import lvm.tools.estimator as estimator_module

    runs = []  # (run directory, validation log-likelihood) of each run the fit starts

    class Recorded(estimator_module.LVMCLI):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            runs.append((Path(self.trainer.default_root_dir), float(self.trainer.callback_metrics["val/log_likelihood"])))

    monkeypatch.setattr(estimator_module, "LVMCLI", Recorded)
    x = _counts()
    estimator = Embedding(likelihood="poisson", root_dir=str(tmp_path), **{**FAST, "max_epochs": 3, "n_init": 3,
                                                                          "init_epochs": 1}).fit(x)
    trials, resumed = runs[:3], runs[3:]
    assert [run.name.split("-")[1] for run, _ in trials] == ["init1", "init2", "init3"] and len(resumed) == 1
    best = max(trials, key=lambda trial: trial[1])[0]
    assert resumed[0][0] == best == estimator.run_dir_  # the best start went on, in its own run directory
    assert sorted(path.name for path in tmp_path.iterdir() if path.name != ".data") == [best.name]  # the others gone
    assert (best / "config-resume-1.yaml").is_file()
    assert json.loads((best / "metrics.json").read_text())["epoch"] == 2  # trained on to max_epochs (3 epochs)
    seeds = [yaml.safe_load((best / name).read_text())["seed_everything"] for name in ("config.yaml", "config-resume-1.yaml")]
    assert seeds[0] == seeds[1] == int(best.name.split("-")[1][4:]) - 1  # random_state + k
    with pytest.raises(ValueError, match="n_init must be a positive integer"):
        Embedding(n_init=0).fit(x)


def test_tables_and_anndata_are_read_by_column_and_sparse(tmp_path):
    x = _counts()
    table = pd.DataFrame(x, columns=[f"gene{k}" for k in range(8)])
    estimator = Embedding(likelihood="negative_binomial", root_dir=str(tmp_path), **FAST).fit(table)
    assert list(estimator.feature_names_in_) == list(table.columns)
    np.testing.assert_allclose(estimator.transform(table[table.columns[::-1]]), estimator.transform(x), atol=1e-6)
    with pytest.raises(ValueError, match="lacks the feature column"):
        estimator.transform(table.drop(columns="gene3"))

    anndata = pytest.importorskip("anndata")
    from scipy import sparse
    adata = anndata.AnnData(X=sparse.csr_matrix(x), obs=pd.DataFrame({"donor": ["d1", "d2"] * 100},
                                                                      index=[f"c{i}" for i in range(200)]))
    from_anndata = Embedding(likelihood="poisson", root_dir=str(tmp_path), **FAST).fit(adata)
    assert from_anndata.transform(adata).shape == (200, 2)
    from_anndata.datamodule_.setup("fit")  # as the lvm.tools commands do
    assert list(from_anndata.datamodule_.metadata["donor"][:2]) == ["d1", "d2"]


def test_mistakes_are_named(tmp_path):
    from sklearn.exceptions import NotFittedError
    x = _counts()
    with pytest.raises(NotFittedError):
        Embedding().transform(x)
    with pytest.raises(ValueError, match="1-3 dimensions"):
        Embedding(latent_dim=5).fit(x)
    with pytest.raises(ValueError, match="likelihood must be one of"):
        Embedding(likelihood="gamma").fit(x)
    broken = x.copy()
    broken[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"1 NaN or infinite value\(s\), the first at row 3, index 2"):
        Embedding(likelihood="poisson", root_dir=str(tmp_path), **FAST).fit(broken)
    with pytest.raises(ValueError, match="non-integer value"):
        Embedding(likelihood="poisson", root_dir=str(tmp_path), **FAST).fit(x + 0.5)
    fitted = Embedding(likelihood="poisson", root_dir=str(tmp_path), **FAST).fit(x)
    with pytest.raises(ValueError, match=r"shape \[4, 7\].*\[n, 8\]"):
        fitted.transform(x[:4, :7])
    assert not list((tmp_path).glob("embedding-*/checkpoints/*.partial"))


@pytest.mark.slow
def test_scikit_learn_clones_pipelines_cross_validates_and_grid_searches_it(tmp_path):
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    x = _counts(160)
    estimator = Embedding(likelihood="poisson", root_dir=str(tmp_path), **FAST)
    copy = clone(estimator)
    assert copy.get_params() == estimator.get_params() and not hasattr(copy, "model_")
    pipeline = make_pipeline(FunctionTransformer(np.round), estimator)
    assert pipeline.fit_transform(x).shape == (160, 2)
    scores = cross_val_score(estimator, x, cv=2)
    assert scores.shape == (2,) and np.isfinite(scores).all()
    search = GridSearchCV(estimator, {"hidden": [(8,), (16,)]}, cv=2).fit(x)
    assert search.best_params_["hidden"] in [(8,), (16,)] and np.isfinite(search.best_score_)
    assert search.best_estimator_.transform(x).shape == (160, 2)
