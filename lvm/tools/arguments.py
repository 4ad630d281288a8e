"""What the commands that read a checkpoint share: their options, ``--data.*`` overrides of the datamodule, and one
line on stderr with exit status 2 for a usage error."""

from __future__ import annotations

import argparse
import sys

import yaml

from lvm.analysis.formats import SPLITS
from lvm.runs.usage import UsageError

__all__ = ["data_overrides", "yes_or_no", "checkpoint_parser", "checkpoint_model", "checkpoint_embedding", "run_command"]


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


def yes_or_no(text: str) -> bool:
    """A yes/no option's value: 1, true or yes (any case) is true, anything else false."""
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
    parser.add_argument("--log_likelihood", type=yes_or_no, default=True,
                        help="add each example's held-out log-likelihood (true/false; one held-out evaluation)")
    return parser


def checkpoint_model(args: argparse.Namespace, rest: list[str]):
    """The model and datamodule of ``--ckpt``, the datamodule's arguments changed by the ``--data.*`` options."""
    from lvm.runs.files import load_checkpoint  # (PyTorch and the model: after the options are read)
    from lvm.runs.threads import limit_threads

    limit_threads()
    return load_checkpoint(args.ckpt, data_overrides(rest))


def checkpoint_embedding(args: argparse.Namespace, rest: list[str]):
    """The model, datamodule, embedding table and data fingerprints for the options of :func:`checkpoint_parser`."""
    from lvm.analysis.embedding import embedding_table  # (PyTorch and the model: after the options are read)
    from lvm.covariates import CovariateError

    model, datamodule = checkpoint_model(args, rest)
    try:  # a conditional model: each example's covariates, mapped by the checkpoint's encodings
        table, fingerprints = embedding_table(model, datamodule, tuple(args.splits), args.num_points, args.batch_size,
                                              args.log_likelihood)
    except CovariateError as error:  # a missing field, NaN, a category training never saw
        raise UsageError(str(error)) from None
    return model, datamodule, table, fingerprints


def run_command(body) -> None:
    """Run a command's ``body()``; a :class:`lvm.runs.cli.UsageError` becomes one line on stderr and exit status 2."""
    try:
        body()
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
