"""A run's files: checkpoints read with a one-line error when they are unusable, a checkpoint's model and datamodule,
the run directory of a checkpoint, and writes that leave no partial file behind."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path

import torch

from lvm.legacy import upgrade_checkpoint
from lvm.runs.usage import UsageError
from lvm.model import LatentVariableModel

__all__ = ["UsageError", "read_checkpoint", "load_checkpoint", "completed_epochs", "run_dir_of_checkpoint",
           "write_atomically"]


def read_checkpoint(ckpt_path: str | Path, option: str = "--ckpt_path", upgrade: bool = True) -> dict:
    """The checkpoint, loaded on the CPU, or a :class:`UsageError` saying why it is not a usable Lightning checkpoint.
    Class paths of the layout before the layered core are rewritten to the current ones (:mod:`lvm.legacy`) unless
    ``upgrade`` is false."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise UsageError(f"{option} {ckpt_path} does not exist; pass a run's checkpoints/last.ckpt.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises anything from zip, pickle or EOF errors on a damaged file
        reason = type(error).__name__ + (f": {str(error).strip().splitlines()[0]}" if str(error).strip() else "")
        raise UsageError(f"{option} {ckpt_path} is not a readable checkpoint ({reason}): it is truncated or not a "
                         "checkpoint file. Resume from another one of the run (checkpoints/best-*.ckpt) or start afresh.") from None
    if not isinstance(checkpoint, dict) or not {"state_dict", "loops", "epoch"} <= set(checkpoint):
        raise UsageError(f"{option} {ckpt_path} is not a Lightning training checkpoint (no state_dict/loops/epoch); "
                         "pass a run's checkpoints/last.ckpt.")
    if upgrade:  # the old layout's class paths, so that resumes and tools import them
        upgrade_checkpoint(checkpoint)
    return checkpoint


def completed_epochs(checkpoint: dict) -> int:
    """Epochs trained when the checkpoint was written (a checkpoint written at an epoch's end counts that epoch as
    processed; Lightning marks it completed only after the checkpoint)."""
    return int(checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])


def run_dir_of_checkpoint(ckpt_path: str | Path) -> Path:
    """The run directory of a checkpoint: ``<run>`` for ``<run>/checkpoints/x.ckpt``, else the checkpoint's folder."""
    path = Path(ckpt_path).resolve()
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def write_atomically(out: str | Path, write: Callable[[Path], None]) -> Path:
    """``write(partial)`` into ``.<name>.partial`` beside ``out``, then renamed to ``out``: an interrupted or failing
    write leaves neither a partial file nor a damaged ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    try:
        write(partial)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return out


def load_checkpoint(ckpt: str | Path, data_overrides: dict | None = None):
    """The model (on the CPU, in eval mode) and the datamodule of a training checkpoint.

    The datamodule is rebuilt from the arguments the CLI stored in the checkpoint, with ``data_overrides``
    (``init_args`` names -> values, e.g. ``{"root": "/new/place"}``; ``"class_path"`` replaces the class) applied, and
    given the state the checkpoint kept of the training data; a datamodule that refuses it (a ``ValueError``: windows
    of another length than the model was trained on) is a one-line :class:`UsageError` naming the checkpoint.
    """
    checkpoint = read_checkpoint(str(ckpt), "--ckpt")
    overrides = dict(data_overrides or {})
    arguments = {key: value for key, value in checkpoint.get("datamodule_hyper_parameters", {}).items()
                 if key not in ("_instantiator",)}
    trained_with = arguments.pop("_class_path", None)
    class_path = overrides.pop("class_path", None) or trained_with
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
    state = checkpoint.get(type(datamodule).__qualname__)  # Lightning's key for the datamodule's state_dict
    if state and class_path == trained_with:
        try:  # e.g. the data transform fitted on the training split, the window length trained on
            datamodule.load_state_dict(state)
        except ValueError as error:  # data that do not fit the model (windows of another length)
            raise UsageError(f"{ckpt}: {error}") from None
    model = LatentVariableModel.load_from_checkpoint(str(ckpt), map_location="cpu")
    return model.eval(), datamodule
