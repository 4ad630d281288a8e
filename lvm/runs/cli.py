"""The command line: ``python train.py --config configs/X.yaml [--trainer.max_epochs 3 ...]``.

A :class:`LightningCLI` over :class:`LatentVariableModel` (every component chosen by
``class_path``/``init_args``) and any ``LightningDataModule``. One invocation fits and then
tests the best checkpoint. Each run gets its own directory under ``trainer.default_root_dir``
holding ``config.yaml``, ``checkpoints/{last,best-*}.ckpt``, ``metrics.json``, ``plots/`` and
the logger's files. ``--ckpt_path <run>/checkpoints/last.ckpt`` resumes that run in place: the checkpoint is
checked before anything is written, ``config.yaml`` is kept and the resume's own resolved config is written
beside it (``config-resume-<k>.yaml``), the W&B run is continued (same id) and the CSV history appended to;
optimizer settings that differ from the checkpoint's (or ``--reset_optimizer true``) start a fresh optimizer.
A SIGTERM (preemption) or Ctrl-C saves ``last.ckpt`` and exits with status 143 (SIGTERM) or 1 (Ctrl-C).
"""

from __future__ import annotations

import datetime
import difflib
import inspect
import os
import re
import sys
from importlib import import_module
from pathlib import Path

import lightning as L
import yaml
from jsonargparse import Namespace
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lvm.runs.checkpointing import BestAndLastCheckpoint
from lvm.runs.files import UsageError, completed_epochs, read_checkpoint, run_dir_of_checkpoint
from lvm.runs.loggers import wandb_run_id
from lvm.runs.heap import FreezeStartupHeap
from lvm.runs.metrics_file import MetricsFile
from lvm.runs.optimizer_resume import OptimizerResume
from lvm.runs.threads import limit_threads
from lvm.legacy import upgraded_path
from lvm.model import LatentVariableModel
from lvm.runs.rng_state import RNGStateCheckpoint

__all__ = ["LVMCLI", "UsageError", "cli_main", "main", "new_run_dir"]


# modules whose classes configs name, searched for suggestions when a class_path does not resolve
PLUGIN_MODULES = ("lvm.objectives", "lvm.datamodules", "lvm.callbacks", "lvm.priors", "lvm.posteriors", "lvm.likelihoods",
                  "lvm.networks", "lvm.samplers", "lvm.runs.loggers", "torch.optim", "torch.optim.lr_scheduler",
                  "lightning.pytorch.loggers", "lightning.pytorch.callbacks")
CLASS_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)+$")

DEFAULT_ROOT = "runs"
DEFAULT_LOGGER = {"class_path": "lvm.runs.loggers.WandbLogger", "init_args": {"project": "lvm"}}
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


RUN_DIR_VARIABLE = "LVM_RUN_DIR"  # the first process's run directory, which the processes it launches inherit


def _process_rank() -> int:
    """This process's rank among the training processes (0 for a run of one process)."""
    for variable in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        if os.environ.get(variable, "").isdigit():
            return int(os.environ[variable])
    return 0


def new_run_dir(root: Path, name: str) -> Path:
    """``root/<name>-<YYYYmmdd-HHMMSS>``, with a numeric suffix if that already exists; one directory for all the
    processes of a multi-process run: those that Lightning launches (DDP on one node) inherit the first one's
    (``LVM_RUN_DIR``), and processes started together by a scheduler share one name from the job
    (``<name>-job<SLURM_JOB_ID>[-<step>]`` under SLURM with several tasks, ``<name>-<TORCHELASTIC_RUN_ID>`` under
    torchrun), as their clocks and the order they start in could differ."""
    inherited = os.environ.get(RUN_DIR_VARIABLE)
    if inherited and _process_rank() > 0:
        return Path(inherited)
    if int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1 and os.environ.get("SLURM_JOB_ID"):
        step = os.environ.get("SLURM_STEP_ID")
        return root / (f"{name}-job{os.environ['SLURM_JOB_ID']}" + (f"-{step}" if step and step != "0" else ""))
    if os.environ.get("TORCHELASTIC_RUN_ID") and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        return root / f"{name}-{os.environ['TORCHELASTIC_RUN_ID']}"
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate, suffix = root / f"{name}-{stamp}", 1
    while candidate.exists():
        suffix += 1
        candidate = root / f"{name}-{stamp}-{suffix}"
    return candidate


def _closest_classes(class_path: str) -> list[str]:
    """Importable classes whose paths resemble ``class_path`` (a typo's likely intended names)."""
    candidates = []
    for module_name in PLUGIN_MODULES:
        try:
            module = import_module(module_name)
        except ImportError:
            continue
        candidates += [f"{module_name}.{name}" for name, value in vars(module).items()
                       if inspect.isclass(value) and not name.startswith("_")]
    close = difflib.get_close_matches(class_path, candidates, n=3, cutoff=0.6)
    tail = class_path.rsplit(".", 1)[-1].lower()
    return close or [c for c in candidates if c.rsplit(".", 1)[-1].lower() == tail][:3]


def _check_class_path(class_path: str, where: str) -> None:
    renamed = upgraded_path(class_path)  # a path of the layout before lvm.objectives/lvm.callbacks/lvm.datamodules
    if renamed != class_path:
        raise UsageError(f"{where}: class_path {class_path} is the old name of {renamed}; write {renamed}.")
    module_name, _, name = class_path.rpartition(".")
    try:
        found = hasattr(import_module(module_name), name)
    except ModuleNotFoundError as error:
        if error.name is None or not (module_name == error.name or module_name.startswith(error.name + ".")):
            raise UsageError(f"{where}: class_path {class_path}: importing {module_name} failed ({error}).") from None
        found = False  # the module itself (or its package) does not exist
    except Exception as error:  # the module exists but fails on import: say so, not "does not exist"
        raise UsageError(f"{where}: class_path {class_path}: importing {module_name} failed "
                         f"({type(error).__name__}: {error}).") from None
    if not found:
        suggestions = _closest_classes(class_path)
        hint = f" Did you mean {' or '.join(suggestions)}?" if suggestions else ""
        raise UsageError(f"{where}: class_path {class_path} does not exist.{hint}")


def _class_paths(node, key: str = "") -> list[tuple[str, str]]:
    """``(dotted key, class_path)`` of every ``class_path`` in a parsed YAML tree."""
    if isinstance(node, dict):
        found = [(key, node["class_path"])] if isinstance(node.get("class_path"), str) else []
        return found + [pair for k, v in node.items() for pair in _class_paths(v, f"{key}.{k}".lstrip("."))]
    if isinstance(node, list):
        return [pair for i, v in enumerate(node) for pair in _class_paths(v, f"{key}[{i}]")]
    return []


def check_arguments(args: list[str]) -> None:
    """The mistakes jsonargparse reports with a usage dump or a generic message, caught first and said shortly:
    a ``--config`` file that is missing or not valid YAML (file and line), and class paths that do not exist
    (with the closest valid names)."""
    for i, arg in enumerate(args):
        value = arg.split("=", 1)[1] if arg.startswith("--config=") else args[i + 1] if arg == "--config" and i + 1 < len(
            args) else None
        if value is not None:
            path = Path(value)
            if not path.is_file():
                raise UsageError(f"--config {value}: no such file.")
            try:
                tree = yaml.safe_load(path.read_text())
            except yaml.YAMLError as error:
                mark = getattr(error, "problem_mark", None)
                line = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
                raise UsageError(f"{value}{line}: not valid YAML ({getattr(error, 'problem', None) or error}).") from None
            for key, class_path in _class_paths(tree):
                _check_class_path(class_path, f"{value} ({key})")
        elif (arg.startswith("--") and ("init_args" not in arg or arg.endswith(".class_path")) and i + 1 < len(args)
              and CLASS_PATH.match(args[i + 1]) and args[i + 1].rsplit(".", 1)[-1][:1].isupper()):
            _check_class_path(args[i + 1], arg)  # a class given on the command line (not a constructor value)


def _keys(node, prefix: str) -> list[str]:
    """The dotted keys of every leaf of a (nested) Namespace."""
    if not isinstance(node, Namespace):
        return [prefix]
    return [key for name, value in vars(node).items() for key in _keys(value, f"{prefix}.{name}")]


def _plain(node) -> dict:
    """A Namespace of constructor arguments as a plain dict."""
    return node.as_dict() if isinstance(node, Namespace) else dict(node or {})


def _usage_error(error: Exception) -> UsageError:
    """A component's or datamodule's ``ValueError``/``KeyError``/... as a one-line :class:`UsageError` (a ``KeyError``
    by its message, not its quoted repr)."""
    message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    return UsageError(str(message).strip().splitlines()[0])


def _loggers(config: Namespace) -> list[Namespace]:
    logger = config.trainer.logger
    loggers = logger if isinstance(logger, list) else [logger]
    return [entry for entry in loggers if isinstance(entry, Namespace) and "init_args" in entry]


class LVMCLI(LightningCLI):
    """Fits, then tests the best checkpoint, inside one run directory."""

    def __init__(self, args=None, fit_and_test: bool = True, test: bool = True, **kwargs):
        self.test_after_fit = test  # False: fit only (the scikit-learn estimator, whose every row may train)
        self.read_data = fit_and_test  # False: only build the model (no data files are read)
        limit_threads()  # as many intra-op threads as CPUs this process may use (affinity, cgroup quota)
        super().__init__(
            LatentVariableModel,
            L.LightningDataModule,
            subclass_mode_data=True,
            run=False,
            args=args,
            seed_everything_default=0,
            save_config_kwargs={"config_filename": "config.yaml", "overwrite": True},
            trainer_defaults={"default_root_dir": DEFAULT_ROOT, "logger": DEFAULT_LOGGER,
                              "callbacks": [MetricsFile(), RNGStateCheckpoint(), FreezeStartupHeap(), OptimizerResume()]},
            **kwargs,
        )
        self._check_before_writing()
        self.run_dir.mkdir(parents=True, exist_ok=True)  # only now: a mistake found above leaves nothing behind
        if _process_rank() == 0:
            os.environ[RUN_DIR_VARIABLE] = str(self.run_dir)  # for the processes DDP launches from this one
        if fit_and_test:
            self.run()

    def instantiate_classes(self) -> None:
        """Lightning's, with the components' own checks of the configuration (an objective that needs another prior, a
        posterior without an encoder, ...: their ``ValueError``) said as a :class:`UsageError`."""
        try:
            super().instantiate_classes()
        except ValueError as error:
            raise _usage_error(error) from error

    def _fill_from_datamodule(self, config: Namespace) -> None:
        """What the data say about themselves, stated once where the data are named: decoders whose ``data_shape`` the
        config leaves out (``null``) get the datamodule's ``data_shape``, and an unset ``model.quantization_step`` the
        datamodule class's (the spacing of quantised data's levels, for bits/dim). A datamodule is built here to read
        the shape (ours read only the file's header, and cache what they open for the run's own instance)."""
        data = config.data
        module_name, _, class_name = data.class_path.rpartition(".")
        datamodule_class = getattr(import_module(module_name), class_name)  # resolved by the parser already
        if "quantization_step" in config.model and config.model.quantization_step is None:
            config.model.quantization_step = getattr(datamodule_class, "quantization_step", None)
        targets = [key for key in _keys(config.model.get("decoder"), "model.decoder") if key.endswith(".data_shape")
                   and config[key] is None and config.get(key.replace(".data_shape", ".image_size")) is None]
        # (a decoder given its image_size keeps it: a mismatch with the data is then the shape check's error, with
        # the datamodule's hint on how to write the data at that size)
        if not targets:
            return
        try:
            datamodule = datamodule_class(**_plain(data.get("init_args")))
            data_shape = getattr(datamodule, "data_shape", None)
            if data_shape is None and self.read_data and int(os.environ.get("LOCAL_RANK", 0)) == 0:
                datamodule.prepare_data()  # absent or unreadable files: their error, not a decoder's missing shape
        except (FileNotFoundError, KeyError, ValueError, TypeError) as error:
            raise _usage_error(error) from error
        if data_shape is None:  # a decoder that needs it says so (e.g. ConvDecoder without image_size)
            return
        for key in targets:
            config[key] = [int(size) for size in data_shape]

    def _check_before_writing(self) -> None:
        """The checks of the data, and of the data against the model, run before the run directory, the config file or
        the logger's files are written: the datamodule's ``prepare_data`` (our datamodules check their files there:
        present, readable, the expected arrays and shapes; on the first process of a node only, as Lightning calls it)
        and the model's :meth:`check_data_shape`. A failure is a :class:`UsageError` naming the file and what is
        wrong. A CLI that only builds the model (``fit_and_test=False``) skips the data's files."""
        if self.read_data and int(os.environ.get("LOCAL_RANK", 0)) == 0:
            try:
                self.datamodule.prepare_data()
            except (FileNotFoundError, KeyError, ValueError) as error:
                raise _usage_error(error) from error
        data_shape = getattr(self.datamodule, "data_shape", None)
        if data_shape is not None:
            try:
                self.model.check_data_shape(tuple(data_shape))
            except ValueError as error:  # a datamodule may say how its data could take another shape
                hint = getattr(self.datamodule, "shape_hint", None)
                raise UsageError(f"{error}" + (f" Or: {hint}" if hint else "")) from None
        if self.read_data and getattr(self.model, "covariates", None) is not None:  # model.covariates: keys, NaN,
            try:                                                                     # categories training lacks
                self.model.attach_covariates(self.datamodule)
            except (KeyError, ValueError, TypeError) as error:
                raise _usage_error(error) from error
        state = (getattr(self, "_resumed", None) or {}).get(type(self.datamodule).__qualname__)
        if self.read_data and state is not None:  # a resume: the datamodule refuses a checkpoint of other data
            try:                                  # (e.g. windows of another length) before anything is written
                self.datamodule.load_state_dict(state)
            except (KeyError, ValueError) as error:
                raise _usage_error(error) from error
        if self.read_data and hasattr(self.datamodule, "check_support"):  # counts for a count likelihood, ...
            try:
                self.datamodule.check_support(getattr(self.model.likelihood, "support", "real"))
            except ValueError as error:
                raise _usage_error(error) from error

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--ckpt_path", type=str | None, default=None,
                            help="Resume this checkpoint's run (e.g. runs/<run>/checkpoints/last.ckpt).")
        parser.add_argument("--reset_optimizer", type=bool, default=False,
                            help="On resume, start a fresh optimizer and scheduler from the current settings (automatic "
                                 "when those differ from the checkpoint's).")
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
        self._fill_from_datamodule(config)
        if config.ckpt_path:
            checkpoint = read_checkpoint(config.ckpt_path)  # before anything is written into the run
            self._resumed = checkpoint
            done, max_epochs = completed_epochs(checkpoint), config.trainer.max_epochs
            if max_epochs is not None and max_epochs != -1 and max_epochs < done:
                raise UsageError(f"--trainer.max_epochs {max_epochs} is below the {done} epochs the checkpoint has "
                                 f"completed; pass a larger value (e.g. --trainer.max_epochs {done + max(done // 2, 10)}) "
                                 "to train on.")
            run_dir = run_dir_of_checkpoint(config.ckpt_path)
            resumes = len(list(run_dir.glob("config-resume-*.yaml")))
            self.save_config_kwargs["config_filename"] = f"config-resume-{resumes + 1}.yaml"  # config.yaml is kept
            run_id = wandb_run_id(run_dir)
            for logger in _loggers(config):
                if logger.class_path.rsplit(".", 1)[-1] == "WandbLogger" and run_id:
                    logger.init_args.id, logger.init_args.resume = run_id, "allow"
        else:
            config_files = config.get("config") or []
            name = config.run_name or (Path(str(config_files[0])).stem if config_files else "run")
            run_dir = new_run_dir(Path(config.trainer.default_root_dir or DEFAULT_ROOT), name)
        self.run_dir = run_dir  # created once the instantiated model and data are checked
        config.trainer.default_root_dir = str(run_dir)
        config.checkpoint.dirpath = str(run_dir / "checkpoints")
        for logger in _loggers(config):
            logger.init_args.save_dir = str(run_dir)
            if logger.class_path.rsplit(".", 1)[-1] in LOGGERS_WITH_SUBDIRS:
                logger.init_args.name, logger.init_args.version = "", ""
            if logger.class_path == "lightning.pytorch.loggers.CSVLogger":
                logger.class_path = "lvm.runs.loggers.CSVLogger"  # the same logger, appending to metrics.csv on resume

    def _log_config_to_wandb(self) -> None:
        """The whole resolved config (trainer, model with optimizer and scheduler, data, seed) on the W&B run; the
        model's own hyperparameters hold only its components."""
        loggers = [logger for logger in self.trainer.loggers if isinstance(logger, WandbLogger)]
        if loggers and self.trainer.is_global_zero:
            resolved = yaml.safe_load(self.parser.dump(self.config, skip_none=False, skip_check=True))
            for logger in loggers:
                logger.experiment.config.update(resolved, allow_val_change=True)

    def run(self) -> None:
        for callback in self.trainer.callbacks:
            if isinstance(callback, OptimizerResume):
                callback.reset = self.config.reset_optimizer
        try:
            self._log_config_to_wandb()
            self.trainer.fit(self.model, datamodule=self.datamodule, ckpt_path=self.config.ckpt_path)
            best = self.trainer.checkpoint_callback.best_model_path if self.trainer.checkpoint_callback else ""
            if self.test_after_fit:
                self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None)
        except SIGTERMException:
            last = Path(self.trainer.default_root_dir) / "checkpoints" / "last.ckpt"
            print(f"Stopped by SIGTERM at epoch {self.trainer.current_epoch}, step {self.trainer.global_step}; "
                  + (f"resume with: python train.py --config {Path(self.trainer.default_root_dir) / 'config.yaml'} "
                     f"--ckpt_path {last}" if last.is_file() else "no checkpoint was written."), file=sys.stderr)
            raise SystemExit(143) from None  # 128 + SIGTERM: a scheduler sees the preemption, not a success
        finally:
            for logger in self.trainer.loggers:
                if isinstance(logger, WandbLogger):  # close the run so the next one in this process starts fresh
                    logger.experiment.finish()


def cli_main(args: list[str] | None = None) -> LVMCLI:
    check_arguments(sys.argv[1:] if args is None else args)
    return LVMCLI(args=args)


def main() -> None:
    """``train.py``: :func:`cli_main`, with mistakes said in one short message and exit status 2 (the environment
    variable ``LVM_DEBUG=1`` shows the traceback instead)."""
    try:
        cli_main()
    except UsageError as error:
        if os.environ.get("LVM_DEBUG"):
            raise
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
