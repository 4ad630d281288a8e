"""Compare objectives side by side: train several configs on the same data, seed and budget, evaluate them with
the same held-out estimator and test set, and tabulate.

``python -m lvm.tools.compare --configs configs/quickstart.yaml configs/digits_vae.yaml configs/digits_iwae.yaml
--out comparison [--seeds 3] [--trainer.max_epochs 30 ...]``

Every option after the known ones is passed to each run (``--data.*``, ``--trainer.*``, ``--model.*``), after
``--trainer.logger false`` (so a logger given there wins). Each run is a ``train.py`` process (fit, then test of the
best checkpoint), so its peak memory is its own. Written to ``--out``:

* ``results.csv``: one row per run: config, seed, objective, latent dim, ``test/log_likelihood`` (nats per example),
  bits/dim, the sampling ELBO and the IWAE bound where defined, the collapsed fraction, seconds per epoch (mean over
  the epochs after the first), peak resident memory of the run's process (MB), best checkpoint path;
* ``report.md``: the table, averaged over seeds, and how it was measured;
* ``consistency.csv`` (``--seeds`` >= 2): per config and pair of seeds, the R² of their test-set embeddings aligned
  up to the latent space's symmetries (:func:`lvm.analysis.consistency.consistency`), averaged as ``consistency_r2``;
* ``report.png``: the held-out log-likelihood per config with error bars (one standard deviation over seeds).

Seconds per epoch are the mean gap between epoch starts after the first epoch (validation included: with few
epochs the last epoch's full held-out evaluation dominates).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    import pandas as pd

    from lvm.tools.epoch_timer import EpochTimer

# Lightning, pandas and matplotlib are imported inside the functions that use them (``EpochTimer`` lives in
# :mod:`lvm.tools.epoch_timer` and is imported on first use of ``lvm.tools.compare.EpochTimer``), so that ``--help``
# (argument parsing) imports none of them.

__all__ = ["EpochTimer", "train_run", "compare", "seed_consistency", "main"]

METRICS = {"log_likelihood": "test/log_likelihood", "bits_per_dim": "test/bits_per_dim",
           "sampled_elbo": "test/sampled_elbo", "iwae_bound": "test/importance_log_likelihood",
           "collapsed_fraction": "test/collapsed_fraction"}


def __getattr__(name: str):
    """``EpochTimer``, imported from :mod:`lvm.tools.epoch_timer` (and Lightning with it) when first asked for."""
    if name == "EpochTimer":
        from lvm.tools.epoch_timer import EpochTimer

        globals()["EpochTimer"] = EpochTimer
        return EpochTimer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def train_run(config: Path, seed: int, runs_dir: Path, overrides: list[str]) -> Path:
    """Train and test one config in its own process (W&B off, ``EpochTimer`` on); returns its run directory."""
    name = f"{config.stem}-seed{seed}"
    command = [sys.executable, "-c", "from lvm.runs.cli import cli_main; cli_main()", "--config", str(config),
               "--trainer.logger", "false", *overrides, "--seed_everything", str(seed), "--run_name", name,
               "--trainer.default_root_dir", str(runs_dir), "--trainer.callbacks+=lvm.tools.epoch_timer.EpochTimer"]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path.cwd()), os.environ.get("PYTHONPATH", "")])})
    if result.returncode:
        raise RuntimeError(f"Training {config} (seed {seed}) failed:\n{result.stderr[-3000:]}")
    return max(runs_dir.glob(f"{name}-*"), key=lambda path: path.stat().st_mtime)


def _row(config: Path, seed: int, run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    timing = json.loads((run_dir / "timing.json").read_text())
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    best = sorted((run_dir / "checkpoints").glob("best-*.ckpt"))
    row = {"config": config.stem, "seed": seed,
           "objective": resolved["model"]["objective"]["class_path"].rsplit(".", 1)[-1],
           "latent_dim": resolved["model"]["prior"].get("init_args", {}).get("dim")}
    row.update({name: metrics.get(key, math.nan) for name, key in METRICS.items()})
    row.update(seconds_per_epoch=timing["seconds_per_epoch"], peak_memory_mb=timing["peak_memory_mb"],
               checkpoint=str(best[-1] if best else run_dir / "checkpoints" / "last.ckpt"))
    return row


def _report(table: pd.DataFrame, out: Path, seeds: int, overrides: list[str]) -> pd.DataFrame:
    """Write ``report.md`` and ``report.png``; return the per-config summary. With one seed the spread over seeds is
    undefined: ``log_likelihood_sd`` stays empty and the figure says so instead of drawing zero-width bars."""
    from lvm.plotting.figures import subplots

    summary = table.groupby("config", sort=False).agg(
        objective=("objective", "first"), latent_dim=("latent_dim", "first"),
        log_likelihood=("log_likelihood", "mean"), log_likelihood_sd=("log_likelihood", "std"),
        bits_per_dim=("bits_per_dim", "mean"), iwae_bound=("iwae_bound", "mean"),
        seconds_per_epoch=("seconds_per_epoch", "mean"), peak_memory_mb=("peak_memory_mb", "max"),
        **({"consistency_r2": ("consistency_r2", "first")} if "consistency_r2" in table else {})).reset_index()
    header = "| " + " | ".join(summary.columns) + " |\n|" + "---|" * len(summary.columns) + "\n"
    rows = "".join("| " + " | ".join(("" if math.isnan(v) else f"{v:.4g}") if isinstance(v, float) else str(v)
                                     for v in record) + " |\n" for record in summary.itertuples(index=False))
    (out / "report.md").write_text(
        "# Objectives compared\n\n" + header + rows +
        f"\nEach config trained with seeds 0..{seeds - 1} and the options `{' '.join(overrides) or '(none)'}`, then "
        "tested on its best checkpoint. `log_likelihood` is the held-out estimate of `lvm.estimators.heldout` (the same "
        "estimator for every model with the same prior and posterior types), in nats per example, mean and standard "
        "deviation over seeds (empty with one seed); seconds per epoch include validation; peak memory is the resident set of each run's "
        "process. `consistency_r2` (with 2 or more seeds): the mean over pairs of seeds of the R² between their "
        "test-set embeddings aligned up to the latent space's symmetries (torus translations, reflections and axis "
        "swaps; orthogonal maps for Gaussian latents), per pair in `consistency.csv`. Per-run values: "
        "`results.csv`.\n")
    figure, axis = subplots(figsize=(1.6 * len(summary) + 2, 4))
    positions = range(len(summary))
    if seeds >= 2:
        axis.errorbar(positions, summary["log_likelihood"], yerr=summary["log_likelihood_sd"], fmt="o", capsize=6,
                      elinewidth=1.5, color="tab:blue", label=f"mean ± sd over {seeds} seeds")
    else:
        axis.plot(positions, summary["log_likelihood"], "o", color="tab:blue",
                  label="one seed (no spread: run --seeds 2 or more)")
    axis.set_title("Held-out log-likelihood per config (higher is better)")
    axis.set_ylabel("held-out log-likelihood (nats per example)")
    axis.set_xlabel("config (objective)")
    axis.set_xticks(positions, [f"{c}\n({o})" for c, o in zip(summary["config"], summary["objective"])])
    axis.legend()
    figure.tight_layout()
    figure.savefig(out / "report.png", dpi=120)
    return summary


def compare(configs: list[Path], out: Path, seeds: int = 1, overrides: list[str] | None = None) -> pd.DataFrame:
    """Train every config for every seed, write ``results.csv``, ``report.md`` and ``report.png`` into ``out``."""
    import pandas as pd

    missing = [str(config) for config in configs if not config.is_file()]
    if missing:
        raise FileNotFoundError(f"No such config: {', '.join(missing)}.")
    out.mkdir(parents=True, exist_ok=True)
    overrides = list(overrides or [])
    rows = [_row(config, seed, train_run(config, seed, out / "runs", overrides)) for config in configs for seed in range(seeds)]
    table = pd.DataFrame(rows)
    table.to_csv(out / "results.csv", index=False)
    if seeds >= 2:
        pairs = seed_consistency(table)
        pairs.to_csv(out / "consistency.csv", index=False)
        table = table.merge(pairs.groupby("config")["r2"].mean().rename("consistency_r2"), on="config", how="left")
        table.to_csv(out / "results.csv", index=False)  # written before too, so a failure here loses no run
    _report(table, out, seeds, overrides)
    return table


def seed_consistency(table: pd.DataFrame) -> pd.DataFrame:
    """Per config, the aligned R² between the test-set embeddings of every pair of seeds
    (:func:`lvm.analysis.consistency.consistency`; 1: the same embedding up to the latent space's symmetries). A config whose
    embeddings cannot be compared is left out with a warning saying why."""
    import pandas as pd

    from lvm.analysis.consistency import consistency
    from lvm.analysis.embedding import embedding_table, shared_embeddings
    from lvm.runs.files import load_checkpoint

    frames = []
    for config, runs in table.groupby("config", sort=False):
        tables = []
        for ckpt in runs["checkpoint"]:
            model, datamodule = load_checkpoint(ckpt)
            tables.append(embedding_table(model, datamodule, ("test",), log_likelihood=False)[0])
        try:
            embeddings = shared_embeddings(tables, model.prior.dim)
            pairs = consistency(embeddings, bool(model.prior.periodic), names=[f"seed{seed}" for seed in runs["seed"]])
        except ValueError as error:
            warnings.warn(f"lvm.tools.compare: consistency of {config} skipped: {error}", UserWarning, stacklevel=2)
            continue
        frames.append(pairs.assign(config=config))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["config", "run_a", "run_b", "r2"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", required=True, type=Path, help="configs to train and compare")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per config (0..N-1)")
    args, overrides = parser.parse_known_args(argv)
    table = compare(args.configs, args.out, args.seeds, overrides)
    print(table.to_string(index=False))
    print(f"Wrote {args.out / 'results.csv'}, {args.out / 'report.md'} and {args.out / 'report.png'}.")


if __name__ == "__main__":
    main()
