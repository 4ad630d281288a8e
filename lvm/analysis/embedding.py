"""A trained model's embedding as a table: one row per example of every split.

:func:`embedding_table` (``table, fingerprints = embedding_table(model, datamodule)`` in a notebook; written to a file
with its provenance by ``python -m lvm.tools.embed``, :mod:`lvm.analysis.provenance`) has the columns:

* ``split`` (train/val/test), ``index`` (position in the split, the order of the datamodule's unshuffled loaders) and
  ``example`` (index into the datamodule's whole data set, which its ``metadata`` arrays follow);
* ``z1..zd``: the posterior mean (circular per coordinate on the torus; :meth:`LatentVariableModel.embed`);
  ``mode1..moded``: the posterior mode; ``spread1..spreadd``: the posterior's standard deviation per coordinate
  (circular on the torus, ``sqrt(-2 ln R) / 2 pi`` with R the mean resultant length, in units of the period);
  ``entropy``: the posterior's differential entropy in nats (see :func:`posterior_summary`);
* ``log_likelihood``: the held-out estimate of :mod:`lvm.estimators.heldout` (nats per example; the estimator of
  ``test/log_likelihood``);
* ``label`` (and ``label_name`` where the datamodule names its categories; one column per factor for 2-D labels
  such as 3dShapes') and every per-example metadata field of the datamodule (e.g. audio file, onset, offset); a field
  named like one of the columns above (``z1``, ``label``) is written as ``meta_<name>``;
* for a conditional model (``model.covariates``), one column per covariate named by its key with each example's raw
  value (category name; continuous value in data units, :meth:`lvm.covariates.Covariates.describe`), and every
  posterior and likelihood above is the one given the example's own covariates (``p(z | x, c)``, ``p(x | c)``).

The fingerprints are a SHA-256 of each split's data in table order, which the provenance records.
"""

from __future__ import annotations

import contextlib
import hashlib

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from lvm.analysis.formats import SPLITS
from lvm.batches import batch_data, given_batch, label_columns

__all__ = ["SPLITS", "latent_columns", "posterior_summary", "embedding_table", "dataset_indices", "embed_loader", "shared_embeddings"]



def dataset_indices(dataset: Dataset) -> np.ndarray:
    """The index of every item of ``dataset`` in the data set beneath its (possibly nested) ``Subset`` s."""
    if isinstance(dataset, Subset):
        return dataset_indices(dataset.dataset)[np.asarray(dataset.indices, dtype=np.int64)]  # an empty split too
    return np.arange(len(dataset))


def _root_dataset(dataset: Dataset) -> Dataset:
    return _root_dataset(dataset.dataset) if isinstance(dataset, Subset) else dataset


@torch.no_grad()
def posterior_summary(model, x: torch.Tensor, num_points: int | None = None) -> dict[str, torch.Tensor]:
    """The posterior of each example: ``mean``, ``mode`` and ``spread`` ``[b, d]`` and ``entropy`` ``[b]`` (nats):
    :meth:`LatentVariableModel.posterior_summary` (lattice posteriors: circular mean and spread on the torus, the
    entropy of the density ``w_j m p(z_j)``; encoder posteriors: the code, and the family's spread and entropy)."""
    return model.posterior_summary(x, num_points)[0]


def latent_columns(dim: int, prefix: str = "z") -> list[str]:
    """The names of an embedding table's columns of ``dim`` latent coordinates: ``["z1", ..., "zd"]`` (the posterior
    mean; ``prefix`` "mode" or "spread" for the other summaries)."""
    return [f"{prefix}{k + 1}" for k in range(dim)]


@torch.no_grad()
def embed_loader(model, loader, reduce: str = "mean", num_points: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:meth:`LatentVariableModel.embed` of every batch of ``loader`` ``[n, d]`` (on the CPU) and the labels
    (``batch[1]``: ``[n]`` or ``[n, f]``; ``None`` for unlabelled batches), in the loader's order. A conditional
    model's batches ``(x, label, codes)`` are embedded given their covariates (:func:`lvm.batches.given_batch`).

    Nothing is recomputed where the model's last test pass covered the loader's data set with this lattice and the
    model has not changed since (:meth:`LatentVariableModel.results_for`). Otherwise the last result for a
    DataLoader is kept on the model and returned again while its data set, the arguments and the model's parameters
    (:meth:`LatentVariableModel.parameter_state`) are unchanged."""
    dataset = getattr(loader, "dataset", None)  # any other iterable of batches is embedded afresh
    if reduce not in ("mean", "mode"):
        raise ValueError(f"reduce must be 'mean' or 'mode'; got {reduce!r}.")
    results = model.results_for(dataset, num_points) if dataset is not None else None
    if results is not None:
        return results[reduce], results.label_tensor()
    key = (id(dataset), reduce, num_points, model.parameter_state())
    cached = getattr(model, "_loader_embedding", None)
    if dataset is not None and cached is not None and cached[0] == key:
        return cached[1]
    embedding, labels = [], []
    for batch in loader:
        with given_batch(model, batch):  # a conditional model's posterior given each example's covariates
            embedding.append(model.embed(batch_data(batch).to(model.device), reduce, num_points).cpu())
        if isinstance(batch, (list, tuple)) and len(batch) > 1:
            labels.append(torch.as_tensor(batch[1]).cpu())
    result = (torch.cat(embedding), torch.cat(labels) if labels else None)
    model._loader_embedding = (key, result)
    return result


def _metadata_columns(datamodule, examples: np.ndarray, size: int) -> dict[str, np.ndarray]:
    columns = {}
    for name, values in getattr(datamodule, "metadata", {}).items():
        values = np.asarray(values)
        if values.ndim != 1 or len(values) != size:
            continue  # per-file or multi-column fields have no row per example
        if values.dtype.kind == "S":
            values = np.char.decode(values, "utf-8")
        columns[name] = values[examples]
    return columns


@torch.no_grad()
def embedding_table(model, datamodule, splits: tuple[str, ...] = SPLITS, num_points: int | None = None,
                    batch_size: int | None = None, log_likelihood: bool = True) -> tuple[pd.DataFrame, dict]:
    """The embedding of every example of ``splits`` (columns in the module docstring) and a fingerprint of the data:
    ``{split: SHA-256 of its examples in table order (float32 bytes)}``."""
    unknown = [split for split in splits if split not in SPLITS]
    if unknown:
        raise ValueError(f"Unknown split(s) {unknown}; choose from {list(SPLITS)}.")
    datamodule.setup("fit")
    if getattr(model, "covariates", None) is not None and getattr(datamodule, "covariate_codes", None) is None:
        model.attach_covariates(datamodule)  # a checkpoint's encodings map the data's covariates (unknown: an error)
    was_training = model.training
    model.eval()  # dropout and batch statistics off, as at test time
    try:
        return _embedding_table(model, datamodule, splits, num_points, batch_size, log_likelihood)
    finally:
        model.train(was_training)


def _embedding_table(model, datamodule, splits, num_points, batch_size, log_likelihood) -> tuple[pd.DataFrame, dict]:
    frames, fingerprints = [], {}
    device = model.device
    for split in splits:
        dataset = getattr(datamodule, f"{split}_set")
        loader = DataLoader(dataset, batch_size=batch_size or getattr(datamodule, "batch_size", 256), shuffle=False)
        # the last test pass's per-example results where they describe this split (nothing recomputed)
        done = model.results_for(dataset, num_points)
        if done is not None and log_likelihood and "log_likelihood" not in done:
            done = None
        names = ("mean", "mode", "spread", "entropy") + ("log_likelihood",) * log_likelihood
        digest, parts, labels = hashlib.sha256(), {name: [] for name in names}, []
        examples = dataset_indices(dataset)
        codes = _split_codes(model, datamodule, examples)  # [n, C] each example's covariates, or None
        start = 0
        for batch in loader:
            x = batch_data(batch)
            digest.update(x.to(torch.float32).contiguous().numpy().tobytes())
            if isinstance(batch, (list, tuple)) and len(batch) > 1:
                labels.append(torch.as_tensor(batch[1]).cpu())
            batch_codes, start = None if codes is None else codes[start:start + len(x)], start + len(x)
            if done is not None:
                continue
            x = x.to(device)
            with model.given(batch_codes) if batch_codes is not None else contextlib.nullcontext():
                summary = posterior_summary(model, x, num_points)
                if log_likelihood:
                    summary["log_likelihood"] = model.evaluation.log_likelihood(model, x)["log_likelihood"]
            for key, value in summary.items():
                parts[key].append(value.cpu())
        if done is not None:
            parts = {name: [done[name]] for name in names}
        fingerprints[split] = digest.hexdigest()
        columns: dict[str, np.ndarray] = {"split": np.full(len(examples), split), "index": np.arange(len(examples)),
                                          "example": examples}
        if len(examples):
            for key, prefix in (("mean", "z"), ("mode", "mode"), ("spread", "spread")):
                values = torch.cat(parts[key]).double().numpy()  # [n, d]
                columns.update(zip(latent_columns(values.shape[1], prefix), values.T))
            columns["entropy"] = torch.cat(parts["entropy"]).double().numpy()
            if log_likelihood:
                columns["log_likelihood"] = torch.cat(parts["log_likelihood"]).double().numpy()
            if labels:
                columns.update(label_columns(torch.cat(labels).numpy(), datamodule))
            covariates = {} if codes is None else _covariate_columns(model, codes)
            for name, values in covariates.items():
                columns[f"covariate_{name}" if name in columns else name] = values
            for name, values in _metadata_columns(datamodule, examples, len(_root_dataset(dataset))).items():
                if name not in covariates:  # a covariate's field is its column already
                    columns[f"meta_{name}" if name in columns else name] = values  # never over an embedding column
        frames.append(pd.DataFrame(columns))
    return pd.concat(frames, ignore_index=True), fingerprints


def _split_codes(model, datamodule, examples: np.ndarray) -> torch.Tensor | None:
    """The covariate codes ``[n, C]`` of the examples (rows of the data set beneath the splits) of a conditional
    model, as its datamodule's batches carry them; ``None`` for an unconditional model."""
    if getattr(model, "covariates", None) is None:
        return None
    return torch.as_tensor(datamodule.covariate_codes)[torch.as_tensor(examples, dtype=torch.long)]


def _covariate_columns(model, codes: torch.Tensor) -> dict[str, np.ndarray]:
    """The raw value of each covariate of each example ``{key: [n]}``: category names, continuous values in data
    units."""
    rows = model.covariates.describe(codes)
    return {key: np.asarray([row[key] for row in rows]) for key in model.covariates.keys}


def shared_embeddings(tables: list[pd.DataFrame], dim: int) -> list[np.ndarray]:
    """The posterior means ``[n, d]`` of the examples that every table (of :func:`embedding_table`, one split) holds,
    in one order (matched on ``example``): the input of :func:`lvm.analysis.consistency.consistency` for runs that differ only
    by their seed."""
    latents = latent_columns(dim)
    if any(not set(latents) <= set(table) for table in tables):
        raise ValueError(f"Consistency compares runs with the same latent space; not every run has {dim}-D latents.")
    indexed = [table.set_index("example")[latents] for table in tables]
    shared = indexed[0].index
    for table in indexed[1:]:
        shared = shared.intersection(table.index)
    if len(shared) < 10:
        raise ValueError(f"The runs share {len(shared)} held-out examples; consistency needs the same held-out data "
                         "(the same datamodule seed and fractions).")
    return [table.loc[shared].to_numpy() for table in indexed]
