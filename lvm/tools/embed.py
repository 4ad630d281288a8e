"""Export the embedding of a trained model: ``python -m lvm.tools.embed --ckpt CKPT --out FILE.{csv,parquet,npz}``.

One row per example of every split (:mod:`lvm.analysis.embedding` lists the columns), with the provenance beside it in
``FILE.provenance.json``. The datamodule is the one the run trained on; ``--data.init_args.*`` options change its
arguments (e.g. ``--data.init_args.root`` where the data have moved).

For a conditional model (``model.covariates``) each example's posterior is the one given its own covariates (read
from the datamodule's metadata and encoded as in training; a category training never saw is refused in one line),
and the covariates' raw values are columns of the export.
"""

from __future__ import annotations

from lvm.analysis.formats import FORMATS
from lvm.runs.usage import UsageError
from lvm.tools.arguments import checkpoint_embedding, checkpoint_parser, data_overrides, run_command

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    parser = checkpoint_parser("python -m lvm.tools.embed", __doc__)
    parser.add_argument("--out", required=True, help=f"output file; its suffix picks the format: {', '.join(FORMATS)}")
    args, rest = parser.parse_known_args(argv)

    def export() -> None:
        from lvm.analysis.provenance import provenance, write_embedding  # (after the options: --help stays fast)

        if not args.out.endswith(FORMATS):
            raise UsageError(f"--out {args.out}: the suffix picks the format; use one of {', '.join(FORMATS)}.")
        _, _, table, fingerprints = checkpoint_embedding(args, rest)
        settings = {key: value for key, value in vars(args).items() if key not in ("ckpt", "out")}
        out = write_embedding(table, args.out, provenance(args.ckpt, fingerprints,
                                                          {**settings, "data_overrides": data_overrides(rest)}))
        counts = ", ".join(f"{split} {count}" for split, count in table["split"].value_counts(sort=False).items())
        print(f"Wrote {len(table)} rows ({counts}) to {out} and its provenance to {out}.provenance.json.")

    run_command(export)


if __name__ == "__main__":
    main()
