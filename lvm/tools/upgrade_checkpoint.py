"""Rewrite a checkpoint written before the layered core (f407916 and earlier) with the current class paths:
``python -m lvm.tools.upgrade_checkpoint OLD.ckpt NEW.ckpt`` (or ``OLD.ckpt --in_place``); the same for a config
(``OLD.yaml``, e.g. an old run's ``config.yaml``, to resume it with ``--config``): its ``class_path`` values are
rewritten in the text, so comments and layout stay.

Old checkpoints name their classes ``objectives.QMCObjective``, ``datamodules.DigitsDataModule``, ...; the plugins are
now ``lvm.objectives``, ``lvm.datamodules`` and ``lvm.callbacks`` (the table is in :mod:`lvm.legacy`). Loading such a
checkpoint upgrades it in memory each time, with a warning; this command rewrites the file once. Only the class paths
change: the weights, optimizer states and training progress are copied as they are, so the new file also resumes
training. Each renamed path is printed; a current checkpoint is copied unchanged.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import torch

from lvm.tools.arguments import run_command
from lvm.legacy import upgrade_checkpoint, upgraded_path
from lvm.runs.files import UsageError, read_checkpoint, write_atomically

__all__ = ["main", "upgrade_config_text"]

CLASS_PATH_VALUE = re.compile(r"(\b_?class_path:\s*['\"]?)([A-Za-z_][\w.]*)")


def upgrade_config_text(text: str) -> tuple[str, list[tuple[str, str]]]:
    """A YAML config's text with every old ``class_path`` value replaced by its current path, and the renames."""
    changes: list[tuple[str, str]] = []

    def rename(match: re.Match) -> str:
        new = upgraded_path(match.group(2))
        if new != match.group(2):
            changes.append((match.group(2), new))
        return match.group(1) + new

    return CLASS_PATH_VALUE.sub(rename, text), changes


def _same_file(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lvm.tools.upgrade_checkpoint", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old", metavar="OLD.ckpt", help="a checkpoint of train.py")
    parser.add_argument("new", metavar="NEW.ckpt", nargs="?", default=None,
                        help="where the upgraded checkpoint is written (not OLD.ckpt, unless --in_place)")
    parser.add_argument("--in_place", action="store_true", help="rewrite OLD.ckpt itself (NEW.ckpt may be left out)")
    args = parser.parse_args(argv)

    def upgrade() -> None:
        old = Path(args.old)
        new = Path(args.new) if args.new is not None else None
        if new is None and not args.in_place:
            raise UsageError(f"give the file to write (python -m lvm.tools.upgrade_checkpoint {old} NEW.ckpt), or "
                             "--in_place to rewrite OLD.ckpt itself.")
        if new is not None and _same_file(old, new) != args.in_place:
            raise UsageError(f"NEW.ckpt {new} is OLD.ckpt; pass --in_place to rewrite it." if not args.in_place else
                             f"--in_place rewrites OLD.ckpt {old} itself; leave out NEW.ckpt {new} or --in_place.")
        out = new or old
        if old.suffix in (".yaml", ".yml"):
            if not old.is_file():
                raise UsageError(f"OLD {old} does not exist.")
            text, changes = upgrade_config_text(old.read_text())
            checkpoint = None
        else:
            checkpoint = read_checkpoint(old, "OLD.ckpt", upgrade=False)
            changes = upgrade_checkpoint(checkpoint)
        changes = list(dict.fromkeys(changes))  # each renaming once, in the order met
        for before, after in changes:
            print(f"{before} -> {after}")
        if not changes and _same_file(old, out):
            print(f"{old} already uses the current class paths; left as it is.")
            return
        if checkpoint is None:
            write_atomically(out, lambda partial: partial.write_text(text))
        else:
            write_atomically(out, lambda partial: torch.save(checkpoint, partial))
        print(f"Wrote {out}" + (f" ({len(changes)} class paths renamed)." if changes
                                 else ": a copy; it already used the current class paths."))

    run_command(upgrade)


if __name__ == "__main__":
    main()
