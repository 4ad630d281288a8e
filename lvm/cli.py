"""The command line: ``python train.py --config configs/X.yaml [--trainer.max_epochs 3 ...]``.

A :class:`LightningCLI` over :class:`LatentVariableModel` (every component chosen by
``class_path``/``init_args``) and any ``LightningDataModule``. One invocation fits and then
tests the best checkpoint. Each run gets its own directory under ``trainer.default_root_dir``
holding ``config.yaml``, ``checkpoints/{last,best-*}.ckpt``, ``metrics.json``, ``plots/`` and
the logger's files. ``--ckpt_path <run>/checkpoints/last.ckpt`` resumes that run in place.
"""

from __future__ import annotations

import datetime
from importlib import import_module
from pathlib import Path

import lightning as L
from jsonargparse import Namespace
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import WandbLogger

from .checkpointing import BestAndLastCheckpoint
from .metrics_file import MetricsFile
from .model import LatentVariableModel
from .rng_state import RNGStateCheckpoint

__all__ = ["LVMCLI", "cli_main", "new_run_dir"]

DEFAULT_ROOT = "runs"
DEFAULT_LOGGER = {"class_path": "lvm.loggers.WandbLogger", "init_args": {"project": "lvm"}}
LOGGERS_WITH_SUBDIRS = ("CSVLogger", "TensorBoardLogger")
# Networks that need the latent dimension take it from the prior (stated once per config).
LATENT_DIM_TARGETS = ("model.decoder.init_args.latent_dim", "model.decoder.init_args.mean.init_args.latent_dim",
                      "model.decoder.init_args.precision.init_args.latent_dim")


def encoder_out_features(dim: int, posterior: Namespace | None) -> int | None:
    """The encoder's output size for the configured posterior family: ``posterior.output_size(dim)``."""
    if posterior is None:
        return None
    module, name = posterior.class_path.rsplit(".", 1)
    family = getattr(import_module(module), name)(**dict(posterior.get("init_args") or {}))
    return family.output_size(dim)


def new_run_dir(root: Path, name: str) -> Path:
    """``root/<name>-<YYYYmmdd-HHMMSS>``, with a numeric suffix if that already exists."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate, suffix = root / f"{name}-{stamp}", 1
    while candidate.exists():
        suffix += 1
        candidate = root / f"{name}-{stamp}-{suffix}"
    return candidate


def _run_dir_of_checkpoint(ckpt_path: str) -> Path:
    path = Path(ckpt_path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"--ckpt_path {ckpt_path} does not exist.")
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def _loggers(config: Namespace) -> list[Namespace]:
    logger = config.trainer.logger
    loggers = logger if isinstance(logger, list) else [logger]
    return [entry for entry in loggers if isinstance(entry, Namespace) and "init_args" in entry]


class LVMCLI(LightningCLI):
    """Fits, then tests the best checkpoint, inside one run directory."""

    def __init__(self, args=None, fit_and_test: bool = True, **kwargs):
        super().__init__(
            LatentVariableModel,
            L.LightningDataModule,
            subclass_mode_data=True,
            run=False,
            args=args,
            seed_everything_default=0,
            save_config_kwargs={"config_filename": "config.yaml", "overwrite": True},
            trainer_defaults={"default_root_dir": DEFAULT_ROOT, "logger": DEFAULT_LOGGER, "callbacks": [MetricsFile(), RNGStateCheckpoint()]},
            **kwargs,
        )
        if fit_and_test:
            self.run()

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--ckpt_path", type=str | None, default=None,
                            help="Resume this checkpoint's run (e.g. runs/<run>/checkpoints/last.ckpt).")
        parser.add_argument("--run_name", type=str | None, default=None,
                            help="Prefix of the run directory (default: the first config file's name).")
        for target in LATENT_DIM_TARGETS:
            parser.link_arguments("model.prior.init_args.dim", target)
        parser.link_arguments(("model.prior.init_args.dim", "model.posterior"), "model.encoder.init_args.out_features",
                              encoder_out_features)
        parser.add_lightning_class_args(BestAndLastCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.monitor": "val/log_likelihood",
            "checkpoint.mode": "max",
            "checkpoint.save_last": True,
            "checkpoint.filename": "best-epoch{epoch}",
            "checkpoint.auto_insert_metric_name": False,
        })

    def _dump_config(self) -> None:
        """Lightning's dump of the parsed config (the checkpoints' hyperparameters), with the latent dimension
        written into the nested networks too: jsonargparse leaves link targets inside nested ``init_args`` out of
        its dump, and ``load_from_checkpoint`` needs them."""
        if hasattr(self, "config_dump"):
            return
        super()._dump_config()
        for target in LATENT_DIM_TARGETS:
            if target in self.config and self.config[target] is not None:
                *parents, leaf = target.split(".")
                node = self.config_dump
                for key in parents:
                    node = node.get(key) if isinstance(node, dict) else None
                if isinstance(node, dict):
                    node[leaf] = self.config[target]

    def before_instantiate_classes(self) -> None:
        config = self.config
        if config.ckpt_path:
            run_dir = _run_dir_of_checkpoint(config.ckpt_path)
        else:
            config_files = config.get("config") or []
            name = config.run_name or (Path(str(config_files[0])).stem if config_files else "run")
            run_dir = new_run_dir(Path(config.trainer.default_root_dir or DEFAULT_ROOT), name)
        run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir = run_dir
        config.trainer.default_root_dir = str(run_dir)
        config.checkpoint.dirpath = str(run_dir / "checkpoints")
        for logger in _loggers(config):
            logger.init_args.save_dir = str(run_dir)
            if logger.class_path.rsplit(".", 1)[-1] in LOGGERS_WITH_SUBDIRS:
                logger.init_args.name, logger.init_args.version = "", ""

    def run(self) -> None:
        try:
            self.trainer.fit(self.model, datamodule=self.datamodule, ckpt_path=self.config.ckpt_path)
            best = self.trainer.checkpoint_callback.best_model_path if self.trainer.checkpoint_callback else ""
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None)
        finally:
            for logger in self.trainer.loggers:
                if isinstance(logger, WandbLogger):  # close the run so the next one in this process starts fresh
                    logger.experiment.finish()


def cli_main(args: list[str] | None = None) -> LVMCLI:
    return LVMCLI(args=args)
