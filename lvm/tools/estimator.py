"""A scikit-learn estimator around lvm: ``Embedding(latent_dim=2, likelihood="poisson").fit(X).transform(X)``.

It trains the same :class:`lvm.model.LatentVariableModel` through the same command line as ``train.py`` (one
:class:`lvm.runs.cli.LVMCLI` run on :class:`lvm.datamodules.ArrayDataModule`), so every fit writes a normal run
directory under ``root_dir`` (``config.yaml``, ``checkpoints/``, ``metrics.json``) and ``python -m lvm.tools.embed``,
``lvm.tools.explore`` and ``lvm.tools.trust`` work on its checkpoints. The data it was given are kept beside the runs
(``root_dir/.data/<SHA-256 of the data>.npy``, ``.parquet`` for a table, ``.h5ad`` for AnnData), which the run's
config names.

``get_params``/``set_params`` come from :class:`sklearn.base.BaseEstimator`, so ``clone``, ``Pipeline``,
``cross_val_score`` and ``GridSearchCV`` work. ``score`` is the mean held-out log-likelihood per example in nats, of
the data in their own units (the transform's Jacobian added: scores compare across transforms).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin

from lvm.runs.files import UsageError, load_checkpoint, read_checkpoint
from lvm.runs.cli import LVMCLI

__all__ = ["Embedding", "OBJECTIVES", "LIKELIHOODS"]

OBJECTIVES = ("qmc", "elbo", "iwae")
LIKELIHOODS = {  # name -> (likelihood config, default transform)
    "gaussian": ({"class_path": "lvm.likelihoods.GaussianLikelihood",
                  "init_args": {"variance": 4.0, "mean_activation": "identity", "learn_variance": "per_feature",
                                "min_variance": 1e-3, "variance_lr_scale": 3.0}}, "standardize"),
    "poisson": ({"class_path": "lvm.likelihoods.PoissonLikelihood"}, "none"),
    "negative_binomial": ({"class_path": "lvm.likelihoods.NegativeBinomialLikelihood"}, "none"),
    "bernoulli": ({"class_path": "lvm.likelihoods.BernoulliLikelihood"}, "none"),
}


class Embedding(TransformerMixin, BaseEstimator):
    """A low-dimensional generative embedding of the rows of ``X``.

    Args:
        latent_dim: 1, 2 or 3 for ``qmc`` (a torus latent space integrated on a lattice); any for ``elbo``/``iwae``
            (a Gaussian latent with an encoder).
        objective: ``"qmc"`` (QLVM), ``"elbo"`` (VAE) or ``"iwae"``.
        likelihood: ``"gaussian"`` (real values; variance learned per feature), ``"poisson"`` (counts),
            ``"negative_binomial"`` (over-dispersed counts, dispersion learned per feature) or ``"bernoulli"``
            (values in [0, 1]).
        data_transform: ``"auto"`` (``standardize`` for a Gaussian, ``none`` otherwise), ``none``, ``standardize``,
            ``log1p`` or ``minmax``; fitted on the training rows.
        hidden: the decoder's hidden widths (the encoder's, reversed).
        max_epochs, batch_size, learning_rate: training.
        num_points: lattice points per training step (``qmc``; ``None``: 610 in 2-D, as the quick start).
        eval_num_points: lattice points of the held-out estimate and of the embedding (``None``: the default).
        val_fraction: rows held out to select the best epoch (by held-out log-likelihood); the rest train.
        n_init: initialisations tried. Each trains for ``init_epochs`` from its own seed (``random_state + k``; the
            same split and training order); the one with the best held-out log-likelihood on the validation rows goes
            on to ``max_epochs``, and the others' runs are removed. A 2-D embedding of informative data can fold (a
            local optimum whose likelihood is a little lower); which initialisations fold is a matter of chance
            (README, "Your own data"), and a few short starts find one that does not at about 1.5x the cost of one fit.
            ``1``: one initialisation.
        init_epochs: epochs of each initialisation before the choice (``None``: a quarter of ``max_epochs``).
        random_state: the seed of the split, the training order and the first initialisation.
        root_dir: where runs (and the data they name) are written.
        plots: add the quick start's plots, explorer and trust report to each run (slower).
        accelerator: Lightning's (``"auto"``: a GPU when there is one).
        verbose: Lightning's progress bar and model summary.
        covariates: known factors to condition on (:mod:`lvm.covariates`), columns of the ``metadata`` given to
            :meth:`fit`: a column name (a discrete covariate) or ``{"key": name, "kind": "continuous"}``. A
            conditional embedding then takes ``metadata`` with those columns in :meth:`transform`,
            :meth:`score_samples` and :meth:`score`, and ``covariates={name: value}`` in :meth:`inverse_transform` and
            :meth:`sample` (left out: each covariate's first category or training mean).

    Attributes after ``fit``: ``model_``, ``datamodule_``, ``checkpoint_`` (the best checkpoint), ``run_dir_``,
    ``n_features_in_`` (and ``feature_names_in_`` for a table).
    """

    def __init__(self, latent_dim: int = 2, objective: str = "qmc", likelihood: str = "gaussian",
                 data_transform: str = "auto", hidden: tuple[int, ...] = (64, 128), max_epochs: int = 100,
                 batch_size: int = 128, learning_rate: float = 1e-3, num_points: int | None = None,
                 eval_num_points: int | None = None, val_fraction: float = 0.1, n_init: int = 3,
                 init_epochs: int | None = None, random_state: int = 0, root_dir: str = "runs", plots: bool = False,
                 accelerator: str = "auto", verbose: bool = False, covariates: list | None = None):
        self.latent_dim, self.objective, self.likelihood = latent_dim, objective, likelihood
        self.data_transform = data_transform
        self.hidden, self.max_epochs, self.batch_size, self.learning_rate = hidden, max_epochs, batch_size, learning_rate
        self.num_points, self.eval_num_points, self.val_fraction = num_points, eval_num_points, val_fraction
        self.n_init, self.init_epochs = n_init, init_epochs
        self.random_state, self.root_dir, self.plots, self.accelerator = random_state, root_dir, plots, accelerator
        self.verbose, self.covariates = verbose, covariates

    # ----- configuration -----------------------------------------------------------------------

    def _check_params(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {list(OBJECTIVES)}; got {self.objective!r}.")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {list(LIKELIHOODS)}; got {self.likelihood!r}.")
        if not isinstance(self.latent_dim, (int, np.integer)) or self.latent_dim < 1:
            raise ValueError(f"latent_dim must be a positive integer; got {self.latent_dim!r}.")
        if not isinstance(self.n_init, (int, np.integer)) or self.n_init < 1:
            raise ValueError(f"n_init must be a positive integer (initialisations tried); got {self.n_init!r}.")
        if self.init_epochs is not None and (not isinstance(self.init_epochs, (int, np.integer)) or self.init_epochs < 1):
            raise ValueError(f"init_epochs must be a positive integer or None; got {self.init_epochs!r}.")
        if self.objective == "qmc" and self.latent_dim > 3:
            raise ValueError(f"objective 'qmc' integrates on a lattice in 1-3 dimensions; latent_dim is "
                             f"{self.latent_dim}. Use objective='elbo' or 'iwae' for more.")

    def _config(self, data: dict) -> dict:
        likelihood, default_transform = LIKELIHOODS[self.likelihood]
        hidden = [int(width) for width in self.hidden]
        model = {"decoder": {"class_path": "lvm.networks.MLPDecoder", "init_args": {"hidden": hidden}},
                 "likelihood": likelihood,
                 "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": float(self.learning_rate)}}}
        if self.eval_num_points is not None:
            model["eval_num_points"] = int(self.eval_num_points)
        if self.covariates:
            model["covariates"] = [{"key": str(c), "kind": "discrete"} if isinstance(c, str) else dict(c)
                                   for c in self.covariates]
        if self.objective == "qmc":
            model["prior"] = {"class_path": "lvm.priors.TorusPrior", "init_args": {"dim": int(self.latent_dim)}}
            points = self.num_points or {1: 144, 2: 610, 3: 2048}[int(self.latent_dim)]
            model["objective"] = {"class_path": "lvm.objectives.QMCObjective", "init_args": {"num_points": int(points)}}
        else:
            model["prior"] = {"class_path": "lvm.priors.StandardNormalPrior", "init_args": {"dim": int(self.latent_dim)}}
            model["encoder"] = {"class_path": "lvm.networks.MLPEncoder", "init_args": {"hidden": hidden[::-1]}}
            model["posterior"] = {"class_path": "lvm.posteriors.DiagonalGaussianPosterior"}
            model["objective"] = ({"class_path": "lvm.objectives.ELBO"} if self.objective == "elbo" else
                                  {"class_path": "lvm.objectives.IWAE", "init_args": {"num_samples": 10}})
        callbacks = [{"class_path": f"lvm.callbacks.{name}"} for name in
                     ("LatentPlots", "PosteriorPlots", "Explorer", "TrustDiagnostics")] if self.plots else []
        transform = default_transform if self.data_transform == "auto" else self.data_transform
        return {
            "seed_everything": int(self.random_state),
            "run_name": "embedding",
            "trainer": {"max_epochs": int(self.max_epochs), "accelerator": self.accelerator, "logger": False,
                        "default_root_dir": str(self.root_dir), "callbacks": callbacks, "log_every_n_steps": 10,
                        "enable_progress_bar": bool(self.verbose), "enable_model_summary": bool(self.verbose)},
            "model": model,
            "data": {"class_path": "lvm.datamodules.ArrayDataModule",
                     "init_args": {**data, "transform": transform, "batch_size": int(self.batch_size),
                                   "val_fraction": float(self.val_fraction), "test_fraction": 0.0,
                                   "seed": int(self.random_state)}},
        }

    # ----- data --------------------------------------------------------------------------------

    def _write_data(self, X, y, metadata) -> dict:
        """``X`` (and ``y``/``metadata``) as files under ``root_dir/.data`` named by their content; the datamodule's
        arguments that read them."""
        import pandas as pd

        folder = Path(self.root_dir).resolve() / ".data"
        folder.mkdir(parents=True, exist_ok=True)
        arguments: dict = {}
        if _is_anndata(X):
            digest = _digest(X.X.toarray() if hasattr(X.X, "toarray") else np.asarray(X.X), X.obs_names)
            path = folder / f"{digest}.h5ad"
            if not path.exists():
                X.write_h5ad(path)
        elif isinstance(X, pd.DataFrame):
            digest = _digest(X.to_numpy(), X.columns)
            path = folder / f"{digest}.parquet"
            if not path.exists():
                X.rename(columns=str).to_parquet(path)
            arguments["features"] = [str(c) for c in X.columns]
        else:
            values = X.toarray() if hasattr(X, "toarray") else np.asarray(X)
            if values.ndim != 2:
                raise ValueError(f"X has shape {list(values.shape)}; pass one row per example, [n_samples, n_features].")
            digest = _digest(values)
            path = folder / f"{digest}.npy"
            if not path.exists():
                np.save(path, values)
        arguments["path"] = str(path)
        table = None if metadata is None else pd.DataFrame(metadata).reset_index(drop=True)
        if y is not None:
            table = (table if table is not None else pd.DataFrame(index=range(len(np.asarray(y))))).assign(y=np.asarray(y))
            arguments["label_key"] = "y"
        if table is not None:
            meta_path = folder / f"{digest}-{_digest(table.to_numpy().astype(str), table.columns)}.parquet"
            if not meta_path.exists():
                table.rename(columns=str).to_parquet(meta_path)
            arguments["metadata"] = str(meta_path)
        return arguments

    def _raw(self, X) -> np.ndarray:
        """New data as a checked float32 array in the training data's layout (before the transform)."""
        self._check_fitted()
        try:
            return self.datamodule_.raw_array(X.X if _is_anndata(X) else X)
        except ValueError as error:
            raise ValueError(f"{type(self).__name__}: {error}") from None

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            from sklearn.exceptions import NotFittedError
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet; call fit(X) first.")

    # ----- scikit-learn API ---------------------------------------------------------------------

    def fit(self, X, y=None, metadata=None):
        """Train on the rows of ``X`` (NumPy array, SciPy sparse matrix, pandas DataFrame of features, or AnnData);
        ``y`` (labels or values per row) colours the run's plots; ``metadata`` (a DataFrame or dict of per-row
        columns) travels to the exports. Bad input raises a ``ValueError`` naming what to fix."""
        self._check_params()
        arguments = self._write_data(X, y, metadata)
        config = self._config(arguments)
        try:
            cli = self._train(config)
        except UsageError as error:
            raise ValueError(f"{type(self).__name__}.fit: {error}") from None
        callback = cli.trainer.checkpoint_callback
        self.run_dir_ = Path(cli.trainer.default_root_dir)
        self.checkpoint_ = Path(callback.best_model_path or callback.last_model_path)
        self._load(self.checkpoint_)
        self.n_features_in_ = int(np.prod(self.datamodule_.data_shape))
        if arguments.get("features"):
            self.feature_names_in_ = np.asarray(arguments["features"], dtype=object)
        return self

    def _train(self, config: dict) -> LVMCLI:
        """One run, or ``n_init`` short runs from different seeds and the best of them trained on to ``max_epochs``
        (the same run directory, resumed from its last checkpoint); the other runs' directories are removed."""
        if self.n_init == 1:
            return LVMCLI(args=config, test=False)
        init_epochs = min(int(self.init_epochs or max(1, self.max_epochs // 4)), int(self.max_epochs))
        trials = []  # (held-out log-likelihood, k, cli, config)
        try:
            for k in range(int(self.n_init)):
                trial = {**config, "seed_everything": int(self.random_state) + k, "run_name": f"embedding-init{k + 1}",
                         "trainer": {**config["trainer"], "max_epochs": init_epochs}}
                cli = LVMCLI(args=trial, test=False)
                score = cli.trainer.callback_metrics.get("val/log_likelihood")
                finite = score is not None and bool(torch.isfinite(score))
                trials.append((float(score) if finite else -float("inf"), k, cli, trial))
        except BaseException:  # nothing of a failed fit is left behind
            for _, _, cli, _ in trials:
                shutil.rmtree(cli.trainer.default_root_dir, ignore_errors=True)
            raise
        best = max(trials, key=lambda entry: (entry[0], -entry[1]))  # the first of equals
        for entry in trials:
            if entry is not best:
                shutil.rmtree(entry[2].trainer.default_root_dir, ignore_errors=True)
        _, _, cli, trial = best
        if init_epochs >= self.max_epochs:
            return cli
        last = Path(cli.trainer.default_root_dir) / "checkpoints" / "last.ckpt"
        return LVMCLI(args={**trial, "trainer": config["trainer"], "ckpt_path": str(last)}, test=False)

    def _load(self, checkpoint: Path) -> None:
        model, datamodule = load_checkpoint(checkpoint)
        self.model_, self.datamodule_ = model, datamodule

    def _codes(self, metadata, n: int) -> torch.Tensor | None:
        """The covariate codes ``[n, C]`` of new rows' ``metadata`` for a conditional embedding (``None`` otherwise)."""
        covariates = self.model_.covariates
        if covariates is None:
            return None
        if metadata is None:
            raise ValueError(f"{type(self).__name__} is conditioned on {covariates.keys}; pass metadata= with those "
                             "columns (one row per row of X).")
        import pandas as pd
        table = pd.DataFrame(metadata).reset_index(drop=True)
        if len(table) != n:
            raise ValueError(f"metadata has {len(table)} rows for {n} rows of X.")
        return covariates.encode({key: table[key].to_numpy() for key in covariates.keys if key in table}, "metadata")

    def _per_chunk(self, x: torch.Tensor, codes: torch.Tensor | None, compute) -> torch.Tensor:
        """``compute(part)`` for chunks of ``x`` ``[n, ...]``, each given its rows' covariates."""
        parts = []
        for start in range(0, len(x), self._chunk):
            with self.model_.given(None if codes is None else codes[start:start + self._chunk]):
                parts.append(compute(x[start:start + self._chunk]))
        return torch.cat(parts)

    @torch.no_grad()
    def transform(self, X, metadata=None) -> np.ndarray:
        """The posterior mean of each row, ``[n, latent_dim]`` (circular on the torus of ``qmc``); a conditional
        embedding's given each row's covariates (``metadata``)."""
        raw = self._raw(X)  # first: an unfitted estimator says so
        x = self.datamodule_.transform.tensor(raw)
        return self._per_chunk(x, self._codes(metadata, len(x)), self.model_.embed).double().numpy()

    def fit_transform(self, X, y=None, **fit_params):
        return self.fit(X, y, **fit_params).transform(X, metadata=fit_params.get("metadata"))

    @torch.no_grad()
    def inverse_transform(self, Z, covariates: dict | None = None) -> np.ndarray:
        """The decoded mean ``E[x | z]`` of latent points ``Z [n, latent_dim]``, in the data's own units
        ``[n, n_features]`` (for ``log1p``: ``expm1`` of the decoded mean); a conditional embedding's under
        ``covariates`` ``{name: value}`` (the counterfactual; left out: the reference values)."""
        self._check_fitted()
        z = torch.as_tensor(np.asarray(Z, dtype=np.float32))
        if z.dim() != 2 or z.shape[1] != self.model_.prior.dim:
            raise ValueError(f"Z has shape {list(z.shape)}; pass [n, {self.model_.prior.dim}].")
        with self.model_.given(self.model_.decoding_codes(covariates or None, len(z))):
            mean = self.model_.decoded_mean(z)
        return self.datamodule_.inverse_transform_array(mean).reshape(len(z), -1)

    @torch.no_grad()
    def score_samples(self, X, metadata=None) -> np.ndarray:
        """The held-out estimate of ``log p(x)`` of each row in nats (the estimator of the model's held-out
        evaluation: QMC on the lattice, or defensive importance sampling), in the data's own units; a conditional
        embedding's ``log p(x | c)`` given each row's covariates (``metadata``)."""
        raw = self._raw(X)
        x = self.datamodule_.transform.tensor(raw)
        values = self._per_chunk(x, self._codes(metadata, len(x)), lambda part: self.model_.evaluation.log_likelihood(
            self.model_, part)["log_likelihood"]).double().numpy()
        return values + self.datamodule_.transform.log_abs_det_jacobian(raw)

    def score(self, X, y=None, metadata=None) -> float:
        """The mean held-out log-likelihood per row, nats (higher is better, as scikit-learn's scorers expect)."""
        return float(np.mean(self.score_samples(X, metadata)))

    @torch.no_grad()
    def sample(self, n_samples: int = 1, random_state: int | None = None, covariates: dict | None = None
               ) -> np.ndarray:
        """Draws ``x ~ p(x)`` ``[n, n_features]`` (``p(x | c)`` under ``covariates`` for a conditional embedding):
        latent points from the prior, then ``x`` from the likelihood (counts for Poisson), in the data's own units."""
        self._check_fitted()
        if random_state is not None:
            torch.manual_seed(random_state)
        model = self.model_
        z = model.prior.sample(int(n_samples), device=model.device, immersion=model.immersion())
        with model.given(model.decoding_codes(covariates or None, len(z))):
            x = model.likelihood.sample(model.decoder_params(z))
        return self.datamodule_.inverse_transform_array(x).reshape(int(n_samples), -1)

    @property
    def _chunk(self) -> int:
        return max(1, int(self.batch_size))

    # ----- files ---------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """The fitted estimator as one file: its best checkpoint with the estimator's parameters inside (a
        checkpoint every ``lvm.tools`` command reads too)."""
        self._check_fitted()
        checkpoint = torch.load(self.checkpoint_, map_location="cpu", weights_only=False)
        checkpoint["lvm_estimator"] = {key: list(value) if isinstance(value, tuple) else value
                                       for key, value in self.get_params().items()}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        torch.save(checkpoint, partial)
        shutil.move(partial, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Embedding":
        """An estimator saved by :meth:`save` (or any train.py checkpoint of an ArrayDataModule run)."""
        checkpoint = read_checkpoint(str(path), "path")
        estimator = cls(**checkpoint.get("lvm_estimator", {}))
        estimator.checkpoint_ = Path(path)
        estimator.run_dir_ = None
        estimator._load(Path(path))
        shape, _ = estimator.datamodule_._layout()
        estimator.n_features_in_ = int(np.prod(shape))
        return estimator


def _is_anndata(X) -> bool:
    return type(X).__name__ == "AnnData" and hasattr(X, "obs")


def _digest(values: np.ndarray, labels=None) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(values).tobytes())
    digest.update(str(values.shape).encode() + str(values.dtype).encode())
    if labels is not None:
        digest.update("\x1f".join(map(str, labels)).encode())
    return digest.hexdigest()[:20]
