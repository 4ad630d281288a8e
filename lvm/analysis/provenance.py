"""Where an exported embedding comes from, and its files.

The provenance -- the run's resolved config, the checkpoint's SHA-256, epoch and step, the git commit of the code,
a SHA-256 fingerprint of the data of each split in the exported order (from :func:`lvm.analysis.embedding.embedding_table`),
library versions -- is written beside the table as ``FILE.provenance.json``, and also inside Parquet (schema metadata
``lvm_provenance``) and NPZ (array ``provenance``) files. :func:`read_embedding` loads both back.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from lvm.analysis.formats import FORMATS
from lvm.runs.files import run_dir_of_checkpoint, write_atomically

__all__ = ["FORMATS", "provenance", "write_embedding", "read_embedding"]

PROVENANCE_KEY = "lvm_provenance"


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
