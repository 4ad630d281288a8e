"""Export a trained model's embedding: one row per example of every split, with its provenance.

``python -m lvm.tools.embed --ckpt CKPT --out FILE.{csv,parquet,npz}`` (:mod:`lvm.tools.embed`) and
``embedding_table(model, datamodule)`` write or return the table of :func:`embedding_table`:

* ``split`` (train/val/test), ``index`` (position in the split, the order of the datamodule's unshuffled loaders) and
  ``example`` (index into the datamodule's whole data set, which its ``metadata`` arrays follow);
* ``z1..zd``: the posterior mean (circular per coordinate on the torus; :meth:`LatentVariableModel.embed`);
  ``mode1..moded``: the posterior mode; ``spread1..spreadd``: the posterior's standard deviation per coordinate
  (circular on the torus, ``sqrt(-2 ln R) / 2 pi`` with R the mean resultant length, in units of the period);
  ``entropy``: the posterior's differential entropy in nats (see :func:`posterior_summary`);
* ``log_likelihood``: the held-out estimate of :mod:`lvm.estimators.heldout` (nats per example; the estimator of
  ``test/log_likelihood``);
* ``label`` (and ``label_name`` where the datamodule names its categories; one column per factor for 2-D labels
  such as 3dShapes') and every per-example metadata field of the datamodule (e.g. audio file, onset, offset).

The provenance -- the run's resolved config, the checkpoint's SHA-256, epoch and step, the git commit of the code,
a SHA-256 fingerprint of the data of each split in the exported order, library versions -- is written beside the
table as ``FILE.provenance.json``, and also inside Parquet (schema metadata ``lvm_provenance``) and NPZ (array
``provenance``) files. :func:`read_embedding` loads both back.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from torch.utils.data import DataLoader, Dataset, Subset

from lvm.batches import batch_data, label_columns
from lvm.model import LatentVariableModel
from lvm.runs.files import UsageError, read_checkpoint, run_dir_of_checkpoint, write_atomically

__all__ = ["SPLITS", "FORMATS", "load_checkpoint", "posterior_summary", "embedding_table", "provenance",
           "write_embedding", "read_embedding", "dataset_indices", "data_overrides", "checkpoint_parser",
           "checkpoint_embedding", "run_command", "embed_loader"]

SPLITS = ("train", "val", "test")
FORMATS = (".csv", ".parquet", ".npz")
PROVENANCE_KEY = "lvm_provenance"


def load_checkpoint(ckpt: str | Path, data_overrides: dict | None = None):
    """The model (on the CPU, in eval mode) and the datamodule of a training checkpoint.

    The datamodule is rebuilt from the arguments the CLI stored in the checkpoint, with ``data_overrides``
    (``init_args`` names -> values, e.g. ``{"root": "/new/place"}``; ``"class_path"`` replaces the class) applied.
    """
    checkpoint = read_checkpoint(str(ckpt), "--ckpt")
    overrides = dict(data_overrides or {})
    arguments = {key: value for key, value in checkpoint.get("datamodule_hyper_parameters", {}).items()
                 if key not in ("_instantiator",)}
    class_path = overrides.pop("class_path", None) or arguments.pop("_class_path", None)
    arguments.pop("_class_path", None)
    if class_path is None:
        raise UsageError(f"{ckpt} does not name its datamodule (trained outside train.py?); pass "
                         "--data.class_path (e.g. lvm.datamodules.DigitsDataModule) and its --data.init_args.*.")
    module_name, _, class_name = class_path.rpartition(".")
    try:
        datamodule_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError):
        raise UsageError(f"--data.class_path {class_path} does not exist.") from None
    try:
        datamodule = datamodule_class(**{**arguments, **overrides})
    except TypeError as error:
        raise UsageError(f"{class_path} does not take these arguments ({error}); check --data.init_args.*.") from None
    model = LatentVariableModel.load_from_checkpoint(str(ckpt), map_location="cpu")
    return model.eval(), datamodule


def dataset_indices(dataset: Dataset) -> np.ndarray:
    """The index of every item of ``dataset`` in the data set beneath its (possibly nested) ``Subset`` s."""
    if isinstance(dataset, Subset):
        return dataset_indices(dataset.dataset)[np.asarray(dataset.indices)]
    return np.arange(len(dataset))


def _root_dataset(dataset: Dataset) -> Dataset:
    return _root_dataset(dataset.dataset) if isinstance(dataset, Subset) else dataset


@torch.no_grad()
def posterior_summary(model, x: torch.Tensor, num_points: int | None = None) -> dict[str, torch.Tensor]:
    """The posterior of each example: ``mean``, ``mode`` and ``spread`` ``[b, d]`` and ``entropy`` ``[b]`` (nats).

    Lattice posteriors (:meth:`LatentVariableModel.posterior_on_lattice`, weights ``w_j`` on the lattice points
    ``z_j = T(c_j)``): each point stands for a cell of volume ``1/m`` in the unit cube, ``1 / (m p(z_j))`` in the
    latent space, so the posterior density there is ``w_j m p(z_j)`` and the differential entropy is
    ``h = -sum_j w_j log(w_j m p(z_j))`` (0 for the uniform posterior on the unit torus). The spread is the circular
    standard deviation ``sqrt(-2 ln R_k) / 2 pi`` per coordinate on the torus (``R_k = |sum_j w_j exp(2 pi i z_jk)|``),
    the weighted standard deviation otherwise.

    Encoder posteriors (where :meth:`LatentVariableModel.embed` uses the encoder's code): mean = mode = the code;
    spread and entropy from the family (:meth:`lvm.posteriors.Posterior.spread_and_entropy`: a diagonal Gaussian's
    standard deviations and ``sum_k 0.5 log(2 pi e sigma_k^2)``; NaN for point masses and other families without a
    closed form).
    """
    if not model.uses_lattice_posterior:
        params = model.encode(x)
        code = model.posterior.code(params)
        spread, entropy = model.posterior.spread_and_entropy(params)
        return {"mean": code, "mode": code, "spread": spread, "entropy": entropy}
    z, weights = model.posterior_on_lattice(x, num_points)  # [m, d], [b, m]
    mean = model.prior.weighted_mean(z, weights)  # [b, d]
    if model.prior.periodic:
        angle = 2 * math.pi * z
        resultant = torch.hypot(weights @ torch.cos(angle), weights @ torch.sin(angle))  # [b, d]
        spread = torch.sqrt(-2 * torch.log(resultant.clamp(1e-12, 1.0))) / (2 * math.pi)
    else:
        spread = torch.sqrt((weights @ z.pow(2) - mean.pow(2)).clamp_min(0))
    log_cell_density = math.log(len(z)) + model.prior.log_prob(z)  # [m]: log(m p(z_j))
    entropy = -(torch.xlogy(weights, weights) + weights * log_cell_density).sum(1)
    return {"mean": mean, "mode": z[weights.argmax(dim=1)], "spread": spread, "entropy": entropy}


@torch.no_grad()
def embed_loader(model, loader, reduce: str = "mean", num_points: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:meth:`LatentVariableModel.embed` of every batch of ``loader`` ``[n, d]`` (on the CPU) and the labels
    (``batch[1]``: ``[n]`` or ``[n, f]``; ``None`` for unlabelled batches), in the loader's order.

    The last result for a DataLoader is kept on the model and returned again while its data set, the arguments and the
    model's parameters and buffers (their in-place versions) are unchanged, so the callbacks that all read the
    test-set embedding at the end of testing compute it once."""
    dataset = getattr(loader, "dataset", None)  # any other iterable of batches is embedded afresh
    state = [*model.parameters(), *model.buffers()]
    key = (id(dataset), reduce, num_points, tuple((id(t), t._version) for t in state))
    cached = getattr(model, "_loader_embedding", None)
    if dataset is not None and cached is not None and cached[0] == key:
        return cached[1]
    embedding, labels = [], []
    for batch in loader:
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
        digest, parts, labels = hashlib.sha256(), {"mean": [], "mode": [], "spread": [], "entropy": [],
                                                   "log_likelihood": []}, []
        for batch in loader:
            x = batch_data(batch)
            digest.update(x.to(torch.float32).contiguous().numpy().tobytes())
            x = x.to(device)
            summary = posterior_summary(model, x, num_points)
            if log_likelihood:
                summary["log_likelihood"] = model.evaluation.estimator(model, x)["log_likelihood"]
            for key, value in summary.items():
                parts[key].append(value.cpu())
            if isinstance(batch, (list, tuple)) and len(batch) > 1:
                labels.append(torch.as_tensor(batch[1]).cpu())
        fingerprints[split] = digest.hexdigest()
        examples = dataset_indices(dataset)
        columns: dict[str, np.ndarray] = {"split": np.full(len(examples), split), "index": np.arange(len(examples)),
                                          "example": examples}
        if len(examples):
            for key, prefix in (("mean", "z"), ("mode", "mode"), ("spread", "spread")):
                values = torch.cat(parts[key]).double().numpy()  # [n, d]
                columns.update({f"{prefix}{k + 1}": values[:, k] for k in range(values.shape[1])})
            columns["entropy"] = torch.cat(parts["entropy"]).double().numpy()
            if log_likelihood:
                columns["log_likelihood"] = torch.cat(parts["log_likelihood"]).double().numpy()
            if labels:
                columns.update(label_columns(torch.cat(labels).numpy(), datamodule))
            columns.update(_metadata_columns(datamodule, examples, len(_root_dataset(dataset))))
        frames.append(pd.DataFrame(columns))
    return pd.concat(frames, ignore_index=True), fingerprints


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _git_commit() -> dict | None:
    """The commit of the code that made the export (and whether the tree had changes), if it is a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10)
        if commit.returncode:
            return None
        status = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def _plain(value):
    """Hyperparameters (Namespaces, tensors, paths) as YAML/JSON-friendly values."""
    if hasattr(value, "as_dict"):  # jsonargparse's Namespace
        value = value.as_dict()
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return str(value)


def provenance(ckpt: str | Path, fingerprints: dict, settings: dict | None = None) -> dict:
    """Where an export comes from: the run's config (``config.yaml`` of the run directory, else the checkpoint's
    hyperparameters), the checkpoint's SHA-256, epoch and step, the code's git commit, the data fingerprints, versions
    and the export's own settings."""
    import lightning

    ckpt = Path(ckpt).resolve()
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False)
    run_config = run_dir_of_checkpoint(ckpt) / "config.yaml"
    config = (yaml.safe_load(run_config.read_text()) if run_config.is_file() else
              {"model": _plain(checkpoint.get("hyper_parameters", {})),
               "data": _plain(checkpoint.get("datamodule_hyper_parameters", {}))})
    return {
        "checkpoint": str(ckpt), "checkpoint_sha256": _sha256(ckpt),
        "epoch": checkpoint.get("epoch"), "global_step": checkpoint.get("global_step"),
        "config": config, "config_file": str(run_config) if run_config.is_file() else None,
        "git": _git_commit(), "data_sha256": fingerprints, "settings": settings or {},
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__, "lightning": lightning.__version__,
                     "numpy": np.__version__, "pandas": pd.__version__},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".provenance.json")


def write_embedding(table: pd.DataFrame, out: str | Path, record: dict) -> Path:
    """Write ``table`` as CSV, Parquet or NPZ (by the suffix of ``out``) and ``out.provenance.json``; each file is
    written under a temporary name and renamed, so an interrupted export leaves no partial file."""
    out = Path(out)
    if out.suffix not in FORMATS:
        raise ValueError(f"--out {out}: the suffix picks the format; use one of {', '.join(FORMATS)}.")
    text = json.dumps(record, indent=2, default=str)

    def write_table(partial: Path) -> None:
        if out.suffix == ".csv":
            table.to_csv(partial, index=False)
        elif out.suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            arrow = pa.Table.from_pandas(table, preserve_index=False)
            arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), PROVENANCE_KEY.encode(): text.encode()})
            pq.write_table(arrow, partial)
        else:
            arrays = {name: table[name].to_numpy() for name in table.columns}
            arrays = {name: values if values.dtype.kind in "biuf" else values.astype(str) for name, values in arrays.items()}
            with open(partial, "wb") as handle:
                np.savez_compressed(handle, **arrays, provenance=np.array(text))

    write_atomically(out, write_table)
    write_atomically(_sidecar(out), lambda partial: partial.write_text(text))
    return out


def read_embedding(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """The table and provenance written by :func:`write_embedding`."""
    path = Path(path)
    if path.suffix == ".csv":
        table = pd.read_csv(path)
    elif path.suffix == ".parquet":
        table = pd.read_parquet(path)
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            table = pd.DataFrame({name: archive[name] for name in archive.files if name != "provenance"})
            if "provenance" in archive.files:
                return table, json.loads(str(archive["provenance"]))
    else:
        raise ValueError(f"{path}: not an embedding export ({', '.join(FORMATS)}).")
    sidecar = _sidecar(path)
    return table, json.loads(sidecar.read_text()) if sidecar.is_file() else {}


def data_overrides(arguments: list[str]) -> dict:
    """``--data.init_args.root X`` / ``--data.root=X`` / ``--data.class_path C`` options -> ``{"root": X, ...}``
    (values read as YAML), or a :class:`lvm.runs.cli.UsageError` naming an option that is not one of these."""
    overrides, rest = {}, list(arguments)
    while rest:
        option = rest.pop(0)
        name, equals, value = option.partition("=")
        if not name.startswith("--data."):
            raise UsageError(f"unknown option {option}; besides the listed ones only --data.* overrides are accepted "
                             "(e.g. --data.init_args.root /path/to/data).")
        if not equals:
            if not rest:
                raise UsageError(f"{name} needs a value.")
            value = rest.pop(0)
        key = name.removeprefix("--data.").removeprefix("init_args.")
        overrides[key] = yaml.safe_load(value)
    return overrides


def _true(text: str) -> bool:
    return text.lower() in ("1", "true", "yes")


def checkpoint_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The options shared by the commands that read a checkpoint's embedding (``lvm.tools.embed``, ``lvm.tools.explore``):
    ``--ckpt``, ``--splits``, ``--num_points``, ``--batch_size``, ``--log_likelihood``; ``--data.*`` overrides are
    the unknown options (:func:`data_overrides`)."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="a checkpoint of train.py (e.g. <run>/checkpoints/best-*.ckpt)")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS, help="splits to include")
    parser.add_argument("--num_points", type=int, default=None,
                        help="lattice size of the posterior (default: the model's eval_num_points)")
    parser.add_argument("--batch_size", type=int, default=None, help="examples per batch (default: the datamodule's)")
    parser.add_argument("--log_likelihood", type=_true, default=True,
                        help="add each example's held-out log-likelihood (true/false; one held-out evaluation)")
    return parser


def checkpoint_embedding(args: argparse.Namespace, rest: list[str]):
    """The model, datamodule, embedding table and data fingerprints for the options of :func:`checkpoint_parser`."""
    model, datamodule = load_checkpoint(args.ckpt, data_overrides(rest))
    table, fingerprints = embedding_table(model, datamodule, tuple(args.splits), args.num_points, args.batch_size,
                                          args.log_likelihood)
    return model, datamodule, table, fingerprints


def run_command(body) -> None:
    """Run a command's ``body()``; a :class:`lvm.runs.cli.UsageError` becomes one line on stderr and exit status 2."""
    try:
        body()
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def shared_embeddings(tables: list[pd.DataFrame], dim: int) -> list[np.ndarray]:
    """The posterior means ``[n, d]`` of the examples that every table (of :func:`embedding_table`, one split) holds,
    in one order (matched on ``example``): the input of :func:`lvm.analysis.consistency.consistency` for runs that differ only
    by their seed."""
    latents = [f"z{k + 1}" for k in range(dim)]
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
