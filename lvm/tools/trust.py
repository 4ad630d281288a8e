"""Trust diagnostics of trained checkpoints: ``python -m lvm.tools.trust --ckpt RUN1.ckpt [RUN2.ckpt ...] --out trust.json
[--fields species individual] [--split test] [--data.init_args.* ...]``.

For each checkpoint, on the held-out split: the k-NN decodability of the label (by name where the datamodule names
its categories) and of each metadata field in ``--fields`` beside the chance and majority-class baselines, and the
cluster structure (mean-shift modes of the aggregated posterior and the silhouette of the examples around them);
for two or more checkpoints of the same configuration (e.g. seeds), the seed-to-seed consistency: the R² of every
pair of embeddings aligned up to the latent space's symmetries. The functions are those of
:mod:`lvm.analysis.decodability`, :mod:`lvm.analysis.clusters` and :mod:`lvm.analysis.consistency`;
:class:`lvm.callbacks.TrustDiagnostics` computes the per-run part at the end of testing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from lvm.runs.usage import UsageError
from lvm.tools.arguments import data_overrides, run_command

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

# NumPy, pandas, PyTorch, scikit-learn and the model's modules are imported inside the functions that use them, so
# that ``--help`` (argument parsing) imports none of them.

__all__ = ["label_fields", "checkpoint_diagnostics", "main"]


def label_fields(table: pd.DataFrame, datamodule, fields: list[str]) -> dict[str, np.ndarray]:
    """The columns of an embedding table to decode: the label (``label_name`` where there are names; each factor of
    2-D labels), unless it is only the example index, and ``fields``. The table names its label columns by
    :func:`lvm.batches.label_columns`."""
    from lvm.batches import factor_names

    columns = {}
    if "label" not in table:  # no labels, or ground-truth factors: the table has a column per factor
        names = factor_names(datamodule, table.shape[1])  # as many default names as columns: the factors are among them
        columns.update({name: table[name].to_numpy() for name in names if name in table})
    elif not (hasattr(datamodule, "label_key") and datamodule.label_key is None):
        name = getattr(datamodule, "label_key", None) or "label"
        columns[name] = table["label_name" if "label_name" in table else "label"].to_numpy()
    missing = [field for field in fields if field not in table]
    if missing:
        raise UsageError(f"--fields {' '.join(missing)}: not a column of the embedding; choose from "
                         f"{sorted(set(table) - {'split', 'index', 'example'})}.")
    columns.update({field: table[field].to_numpy() for field in fields})
    return columns


def checkpoint_diagnostics(checkpoints: list[str | Path], fields: list[str] = (), split: str = "test",
                           overrides: dict | None = None, k: int = 10, folds: int = 5, seed: int = 0,
                           bandwidth: float = 0.1) -> dict:
    """Per checkpoint ``decodability`` (per label/field) and ``clusters``; with two or more checkpoints,
    ``consistency`` (per pair) and its summary. Analyses that do not apply say why under ``skipped``."""
    from lvm.analysis.clusters import cluster_structure, lattice_modes
    from lvm.analysis.consistency import consistency, consistency_summary
    from lvm.analysis.decodability import knn_decodability
    from lvm.analysis.embedding import embedding_table, latent_columns, shared_embeddings
    from lvm.runs.files import load_checkpoint

    runs, tables, dims = {}, [], set()
    for ckpt in checkpoints:
        model, datamodule = load_checkpoint(ckpt, overrides)
        table, _ = embedding_table(model, datamodule, (split,), log_likelihood=False)
        embedding, periodic = table[latent_columns(model.prior.dim)].to_numpy(), bool(model.prior.periodic)
        result = {"n": len(table), "latent_dim": model.prior.dim, "periodic": periodic, "decodability": {},
                  "skipped": {}}
        for name, values in label_fields(table, datamodule, list(fields)).items():
            result["decodability"][name] = knn_decodability(embedding, values, periodic, k, folds, seed)
        try:
            modes = lattice_modes(model, getattr(datamodule, f"{split}_dataloader")(), bandwidth)
            result["clusters"] = {"bandwidth": bandwidth, "modes": modes.tolist()} | cluster_structure(
                embedding, modes, periodic, seed=seed)
        except ValueError as error:  # e.g. priors without a lattice posterior
            result["skipped"]["clusters"] = str(error)
        runs[str(ckpt)] = result
        tables.append(table)
        dims.add((model.prior.dim, periodic))
    report = {"split": split, "runs": runs}
    if len(checkpoints) >= 2:
        if len(dims) > 1:
            report["skipped"] = {"consistency": "the checkpoints' latent spaces differ"}
        else:
            dim, periodic = dims.pop()
            pairs = consistency(shared_embeddings(tables, dim), periodic, [str(ckpt) for ckpt in checkpoints])
            report["consistency"] = {**consistency_summary(pairs), "pairs": pairs.to_dict(orient="records")}
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lvm.tools.trust", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", nargs="+", required=True, help="checkpoints of train.py (several: runs to compare)")
    parser.add_argument("--out", required=True, help="the JSON report to write")
    parser.add_argument("--fields", nargs="*", default=[], help="metadata fields to decode besides the label")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--k", type=int, default=10, help="neighbours of the k-NN decoder")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    parser.add_argument("--bandwidth", type=float, default=0.1, help="mean-shift bandwidth (latent units)")
    args, rest = parser.parse_known_args(argv)

    def diagnose() -> None:
        from lvm.analysis.arrays import json_ready  # (after the options: --help stays fast)

        report = checkpoint_diagnostics(args.ckpt, args.fields, args.split, data_overrides(rest), args.k, args.folds,
                                        bandwidth=args.bandwidth)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(json_ready(report), indent=2, allow_nan=False) + "\n")
        for ckpt, result in report["runs"].items():
            scores = ", ".join(f"{name} {score.get('balanced_accuracy', score.get('r2')):.3f}"
                               for name, score in result["decodability"].items())
            clusters = result.get("clusters", {})
            print(f"{ckpt}: k-NN decodability {scores or '(no labels)'}; {clusters.get('num_modes', 'no')} modes, "
                  f"silhouette {clusters.get('silhouette', float('nan')):.3f}")
        if "consistency" in report:
            print(f"consistency over {len(report['consistency']['pairs'])} pairs: mean aligned R² "
                  f"{report['consistency']['mean_r2']:.3f} (min {report['consistency']['min_r2']:.3f})")
        print(f"Wrote {out}.")

    run_command(diagnose)


if __name__ == "__main__":
    main()
