"""Recordings as paths through the latent space, one row per window:
``python -m lvm.tools.trajectory --ckpt CKPT --out traj.{parquet,csv,npz} [--splits ...] [--num_points N]
[--bandwidth 0.1] [--max_figures 12] [--compare FIELD [--groups A B]] [--data.init_args.* ...]``.

For a model trained on windows (or frames) of sequences: data whose per-example metadata has a ``sequence`` id and a
``time`` (the window's start from the sequence's start, in seconds): the vocalization preprocessing's shotgun windows,
the mocap windows, or one's own data with a sequence and a time column. Writes

* ``OUT``: one row per window, sorted by sequence and time: sequence, time, the posterior mean ``z1..zd``, its
  ``spread1..spreadd``, the nearest mean-shift mode of the aggregated posterior (``cluster``, from 0, densest first)
  and the posterior mass of that mode's cell (``cluster_probability``; :mod:`lvm.analysis.trajectory` defines both),
  the metadata, a conditional model's covariates (each window's posterior given its own); the provenance beside it in
  ``OUT.provenance.json`` (as ``lvm.tools.embed`` writes it);
* ``OUT_STEM.sequences.json``: transition matrix, dwell times and entropy rate of the clusters, pooled and per sequence
  (:mod:`lvm.analysis.sequences`), with the modes; with ``--compare FIELD``, the permutation test between the
  sequences of two values of that field (:func:`lvm.analysis.trajectory.compare_groups`);
* ``OUT_STEM.transitions.png``: the transition graph, the nodes at the modes;
* ``OUT_STEM.trajectories/SEQUENCE.png``: the path of each of the first ``--max_figures`` sequences over the
  aggregated posterior, coloured by time.
"""

from __future__ import annotations

import re
from pathlib import Path

from lvm.analysis.formats import FORMATS
from lvm.runs.usage import UsageError
from lvm.tools.arguments import checkpoint_model, checkpoint_parser, data_overrides, run_command

__all__ = ["output_paths", "missing_fields_message", "main"]


def output_paths(out: str | Path) -> dict[str, Path]:
    """Where the export's files go: ``table`` (``out``), ``statistics``, ``graph`` and the ``figures`` folder."""
    out = Path(out)
    stem = out.with_suffix("")
    return {"table": out, "statistics": stem.with_name(stem.name + ".sequences.json"),
            "graph": stem.with_name(stem.name + ".transitions.png"),
            "figures": stem.with_name(stem.name + ".trajectories")}


def missing_fields_message(datamodule, missing: list[str]) -> str:
    """One line: which fields the data lack, and how to give them."""
    where = getattr(datamodule, "data_description", None) or type(datamodule).__name__
    return (f"the checkpoint's data ({where}) have no per-example field(s) {', '.join(map(repr, missing))}: the "
            "per-frame export needs each window's sequence id ('sequence') and its start in seconds from the "
            "sequence's start ('time'). Recordings: write sliding windows with the vocalization preprocessing's "
            "shotgun mode (--windows.length and --windows.hop) or use the mocap windows; your own data: a metadata table with a sequence and a time "
            "column, named by --data.init_args.sequence_key and --data.init_args.time_key.")


def _file_name(sequence: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(sequence)).strip("._") or "sequence"


def main(argv: list[str] | None = None) -> None:
    parser = checkpoint_parser("python -m lvm.tools.trajectory", __doc__)
    parser.set_defaults(log_likelihood=False)  # one held-out evaluation per window: asked for, not by default
    parser.add_argument("--out", required=True, help=f"output table; its suffix picks the format: {', '.join(FORMATS)}")
    parser.add_argument("--bandwidth", type=float, default=0.1,
                        help="mean-shift bandwidth of the aggregated posterior's modes (latent units; torus period 1)")
    parser.add_argument("--max_figures", type=int, default=12, help="sequences drawn as trajectory figures")
    parser.add_argument("--compare", default=None, metavar="FIELD",
                        help="compare the transitions of two groups of sequences by a metadata field constant within "
                             "each sequence (a bird, a condition): a permutation test relabelling whole sequences")
    parser.add_argument("--groups", nargs=2, default=None, metavar=("A", "B"),
                        help="the two values of --compare to test (default: its only two values)")
    parser.add_argument("--permutations", type=int, default=999, help="permutations of the --compare test")
    args, rest = parser.parse_known_args(argv)

    def export() -> None:
        from lvm.analysis.provenance import provenance, write_embedding  # (after the options: --help stays fast)
        from lvm.analysis.sequences import write_sequence_statistics
        from lvm.analysis.trajectory import SEQUENCE_FIELD, TIME_FIELD, missing_sequence_fields, trajectory_table
        from lvm.plotting.transitions import plot_transition_graph
        from lvm.plotting.trajectories import plot_trajectory
        from lvm.runs.files import write_atomically

        if not args.out.endswith(FORMATS):
            raise UsageError(f"--out {args.out}: the suffix picks the format; use one of {', '.join(FORMATS)}.")
        if not args.bandwidth > 0:
            raise UsageError(f"--bandwidth {args.bandwidth}: the mean-shift bandwidth must be positive.")
        model, datamodule = checkpoint_model(args, rest)
        datamodule.setup("fit")
        missing = missing_sequence_fields(datamodule)
        if missing:
            raise UsageError(missing_fields_message(datamodule, missing))
        try:
            result = trajectory_table(model, datamodule, tuple(args.splits), args.num_points, args.batch_size,
                                      args.bandwidth, args.log_likelihood)
        except ValueError as error:  # lvm.covariates.CovariateError, no lattice, no modes, repeated times
            raise UsageError(str(error).rstrip(".") + ".") from None
        comparison = None
        if args.compare is not None:
            from lvm.analysis.trajectory import compare_groups
            try:
                comparison = compare_groups(result.table, args.compare, len(result.modes),
                                            tuple(args.groups) if args.groups else None, args.permutations)
            except ValueError as error:
                raise UsageError(str(error).rstrip(".") + ".") from None
        paths = output_paths(args.out)
        settings = {key: value for key, value in vars(args).items() if key not in ("ckpt", "out")}
        record = provenance(args.ckpt, result.fingerprints, {**settings, "data_overrides": data_overrides(rest)})
        record["trajectory"] = {"modes": result.modes.tolist(), "time_step": result.time_step,
                                "time_unit": result.time_unit, "definitions": result.statistics["definitions"]}
        table = result.table
        write_embedding(table, paths["table"], record)
        write_atomically(paths["statistics"],
                         lambda partial: write_sequence_statistics(partial, result.statistics, comparison))
        pooled = result.statistics["pooled"]["transition_matrix"]
        dim, periodic = model.prior.dim, model.prior.periodic
        graph = plot_transition_graph(pooled, positions=result.modes[:, :2] if dim >= 2 else None,
                                      state_names=[f"mode {k + 1}" for k in range(len(result.modes))],
                                      title=f"Transitions between the {len(result.modes)} modes (pooled over "
                                            f"{result.statistics['pooled']['n_sequences']} sequences)")
        write_atomically(paths["graph"], lambda partial: graph.savefig(partial, dpi=120, format="png"))
        paths["figures"].mkdir(parents=True, exist_ok=True)
        columns = [f"z{k + 1}" for k in range(dim)]
        sequences = list(dict.fromkeys(table[SEQUENCE_FIELD]))
        for sequence in sequences[:max(args.max_figures, 0)]:
            rows = table[table[SEQUENCE_FIELD] == sequence]
            figure = plot_trajectory(rows[columns].to_numpy(), rows[TIME_FIELD].to_numpy(), periodic=periodic,
                                     points=result.points, density=result.density, modes=result.modes,
                                     time_unit=result.time_unit,
                                     title=f"Sequence {sequence}: {len(rows)} windows")
            figure.savefig(paths["figures"] / f"{_file_name(sequence)}.png", dpi=110)
        print(f"Wrote {len(table)} windows of {len(sequences)} sequences ({len(result.modes)} modes) to "
              f"{paths['table']} (provenance beside it), sequence statistics to {paths['statistics']}, the transition "
              f"graph to {paths['graph']} and {min(len(sequences), max(args.max_figures, 0))} trajectory figures to "
              f"{paths['figures']}.")
        if comparison is not None:
            a, b = comparison["groups"]
            print(f"Transitions of {args.compare} = {a} ({comparison['n_sequences'][0]} sequences) against {b} "
                  f"({comparison['n_sequences'][1]}): T = {comparison['statistic']:.4f}, p = {comparison['p_value']:.4g} "
                  f"({comparison['n_permutations']} permutations of whole sequences).")

    run_command(export)


if __name__ == "__main__":
    main()
