"""The commands' usage: :class:`UsageError`, and the short ``python train.py --help``: the options a person starts with and where the rest are, printed without
importing Lightning or PyTorch (the full help builds a parser of every class a config may name: seconds and about
3000 lines). ``--help-all`` prints that full help; ``--GROUP.help CLASS`` the arguments of one class."""

from __future__ import annotations

import sys

__all__ = ["UsageError", "SHORT_HELP", "FULL_HELP_FLAG", "handle_help"]


class UsageError(Exception):
    """A mistake in the command line, a config file or a checkpoint, said in a few lines (no usage dump); the commands
    print it as one ``error:`` line with exit status 2."""


FULL_HELP_FLAG = "--help-all"

SHORT_HELP = """\
usage: python train.py --config CONFIG [--config OVERLAY ...] [--GROUP.OPTION VALUE ...]

Train a latent variable model and test it: checkpoints, metrics.json, metrics.csv, plots and the resolved
config.yaml under runs/<config name>-<date>-<time>/ (W&B offline files too).

main options:
  -c, --config FILE        a config (configs/*.yaml); repeat it to overlay one on another
                           (e.g. --config configs/qlvm_mnist.yaml --config configs/ablations/mc_points.yaml)
  --print_config           print the resolved config, every default included, and exit: the place to see
                           every option of the classes a config names
  --ckpt_path CKPT         resume that run in place (runs/<run>/checkpoints/last.ckpt)
  --reset_optimizer BOOL   on a resume, start a fresh optimizer and scheduler (default: false)
  --run_name NAME          prefix of the run directory (default: the first config's file name)
  --seed_everything SEED   the run's seed (default: 0)
  -h, --help               this help; --help-all: every option of every group (about 3000 lines)

option groups (each argument of the classes a config names, written with dots):
  --trainer.*              Lightning's Trainer: --trainer.max_epochs 3, --trainer.accelerator gpu,
                           --trainer.devices 2, --trainer.logger false
  --model.*                the model: --model.decoder, --model.likelihood, --model.prior, --model.objective,
                           --model.encoder, --model.posterior (each a class_path with init_args, e.g.
                           --model.objective.init_args.num_points 610), --model.eval_num_points 2584
  --data.*                 the datamodule: --data lvm.datamodules.ArrayDataModule --data.init_args.path x.npy
  --checkpoint.*           checkpoint files: --checkpoint.save_top_k 3
  --optimizer, --lr_scheduler
                           e.g. --optimizer torch.optim.AdamW --optimizer.lr 1e-4

the arguments of one class:
  python train.py --model.objective.help lvm.objectives.QMCObjective
  python train.py --data.help lvm.datamodules.ArrayDataModule
  python train.py --config configs/quickstart.yaml --print_config

See the README ("Quick start", "Using it") for more.
"""


def handle_help(argv: list[str]) -> list[str] | None:
    """``None`` once :data:`SHORT_HELP` is printed, when ``argv`` asks for help (``--help``/``-h``, with or without
    configs: the options are the same); otherwise ``argv`` for the full command line, ``--help-all`` read as the
    full ``--help``."""
    if FULL_HELP_FLAG in argv:
        return ["--help" if arg == FULL_HELP_FLAG else arg for arg in argv]
    if "-h" in argv or "--help" in argv:
        sys.stdout.write(SHORT_HELP)
        return None
    return argv
