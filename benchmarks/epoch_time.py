"""Seconds per training epoch of the digits VAE (``configs/digits_vae.yaml``'s networks, batch 64, Adam) against a
plain PyTorch floor.

Side by side in one run, on the bundled digits and on MNIST-sized random data (6000 images 1 x 28 x 28):

* ``plain``: a hand-written loop (no Lightning, no validation, no logging, no checkpoints): the ELBO step only;
* ``lvm_default``: ``train.py``'s defaults for the config (W&B offline logger, progress bar, checkpoints every
  epoch, validation every epoch with the held-out estimates every ``model.eval_every_n_epochs`` = 10 epochs);
* ``lvm_fast``: validation and checkpoints every 10th epoch, the held-out estimates on the last epoch and at test
  only (``--trainer.check_val_every_n_epoch 10 --model.eval_every_n_epochs 0``), ``--trainer.logger false`` and no
  progress bar.

* ``lightning_floor``: the plain loop's step as a bare ``LightningModule`` (no logger, checkpoint, progress bar or
  validation), and ``lightning_val_ckpt_floor``: the same with an empty ``validation_step`` and ``last.ckpt`` every
  epoch: what Lightning itself costs before lvm adds anything.

An epoch's time is the mean gap between consecutive epoch starts over ``--epochs`` epochs after the first (so
validation, checkpointing and logging are included; start-up is not). Targets on the digits: ``lvm_fast_over_plain``
<= 1.2, ``lvm_default_over_plain`` <= 1.5.

``--qlvm-mnist`` times the 2-D MNIST QLVM epoch instead (``configs/qlvm_mnist.yaml``: m = 2584 lattice points,
batch 128, Adam) on MNIST-sized random images in MNIST's files (``--train-size`` training images, 55 000 as MNIST's
60 000 less the 5 000 validation images): ``lvm_s`` with the config's validation every epoch, ``lvm_train_s`` with
no validation in the timed epochs, each with ``--trainer.logger false``, no progress bar and no callbacks, and
``plain_s``, the same model's QMC step in a hand-written loop over the images kept on ``--device``. Target on a GPU:
an epoch <= 2 s.

Usage: ``python benchmarks/epoch_time.py [--epochs 21]``, or ``python benchmarks/epoch_time.py --qlvm-mnist [--epochs 3]
[--device cuda] [--train-size 55000] [--points 2584]``. The last output line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lvm.datamodules.base import SplitDataModule  # noqa: E402
from lvm.datamodules.digits import DigitsDataModule  # noqa: E402
from lvm.runs.cli import LVMCLI  # noqa: E402
from lvm.networks import MLPDecoder, MLPEncoder  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "digits_vae.yaml"
QLVM_MNIST_CONFIG = CONFIG.parent / "qlvm_mnist.yaml"


class RandomImages(SplitDataModule):
    """MNIST-sized uniform random images (6000 / 1000 / 1000) with labels, for timing only."""

    data_shape = (1, 28, 28)

    def __init__(self, batch_size: int = 64, num_workers: int = 0, seed: int = 0):
        super().__init__(batch_size, num_workers, seed)

    def build_splits(self):
        x = torch.rand(8000, *self.data_shape, generator=torch.Generator().manual_seed(0))
        y = torch.arange(8000) % 10
        return TensorDataset(x[:6000], y[:6000]), TensorDataset(x[6000:7000], y[6000:7000]), \
            TensorDataset(x[7000:], y[7000:])


class EpochClock(L.Callback):
    """Records the wall time at the start of every training epoch."""

    def __init__(self):
        self.starts: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.starts.append(time.perf_counter())


def seconds_per_epoch(starts: list[float]) -> float:
    gaps = [b - a for a, b in zip(starts[1:-1], starts[2:])]  # skip the first epoch (warm-up)
    return sum(gaps) / len(gaps)


class PlainVAE(torch.nn.Module):
    """The floor's networks and ELBO step: the digits VAE written by hand."""

    def __init__(self, data_shape):
        super().__init__()
        self.flat = int(torch.tensor(data_shape).prod())
        self.encoder, self.decoder = MLPEncoder(4, [128, 64]), MLPDecoder(list(data_shape), [64, 128])
        self.encoder(torch.zeros(1, *data_shape)), self.decoder(torch.zeros(1, 2))

    def loss(self, x):
        mean, log_var = self.encoder(x).chunk(2, dim=-1)
        z = mean + (0.5 * log_var).exp() * torch.randn_like(mean)
        x_hat = torch.sigmoid(self.decoder(z)).flatten(1)
        reconstruction = -0.5 * (x.flatten(1) - x_hat).pow(2).sum(-1) / 0.1 - 0.5 * self.flat * torch.log(
            torch.tensor(2 * torch.pi * 0.1))
        kl = 0.5 * (mean.pow(2) + log_var.exp() - log_var - 1).sum(-1)
        return (kl - reconstruction).mean()


def plain_loop(train_set, data_shape, epochs: int) -> float:
    """The floor: the same networks and ELBO step in a hand-written loop."""
    torch.manual_seed(0)
    vae = PlainVAE(data_shape)
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3)
    loader = DataLoader(train_set, batch_size=64, shuffle=True)
    starts = []
    for _ in range(epochs + 1):
        starts.append(time.perf_counter())
        for x, _ in loader:
            loss = vae.loss(x)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return seconds_per_epoch(starts)


class LightningVAE(L.LightningModule):
    """:class:`PlainVAE`'s step in Lightning's loop, with an empty validation step."""

    def __init__(self, data_shape):
        super().__init__()
        self.vae = PlainVAE(data_shape)

    def training_step(self, batch, batch_idx):
        return self.vae.loss(batch[0])

    def validation_step(self, batch, batch_idx):
        pass

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def lightning_floor(datamodule, epochs: int, validate_and_checkpoint: bool) -> float:
    """Lightning's own cost: the plain step in a bare LightningModule; optionally validating (nothing) and writing
    ``last.ckpt`` every epoch."""
    torch.manual_seed(0)
    clock = EpochClock()
    with tempfile.TemporaryDirectory() as root:
        callbacks = [clock, ModelCheckpoint(save_last=True)] if validate_and_checkpoint else [clock]
        trainer = L.Trainer(max_epochs=epochs + 1, logger=False, enable_checkpointing=validate_and_checkpoint,
                            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                            default_root_dir=root, callbacks=callbacks)
        loader = partial(DataLoader, batch_size=64)
        trainer.fit(LightningVAE(datamodule.data_shape), loader(datamodule.train_set, shuffle=True),
                    loader(datamodule.val_set) if validate_and_checkpoint else None)
    return seconds_per_epoch(clock.starts)


def lvm_run(extra: list[str], epochs: int, config: Path = CONFIG) -> float:
    with tempfile.TemporaryDirectory() as root:
        cli = LVMCLI(["--config", str(config), "--trainer.default_root_dir", root, "--trainer.max_epochs",
                      str(epochs + 1), "--trainer.callbacks", "[]", *extra], fit_and_test=False)
        clock = EpochClock()
        cli.trainer.callbacks.append(clock)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        for logger in cli.trainer.loggers:
            if hasattr(logger, "experiment") and hasattr(logger.experiment, "finish"):
                logger.experiment.finish()
    return seconds_per_epoch(clock.starts)


def plain_qmc_loop(train_set, device: torch.device, points: int, epochs: int) -> float:
    """The QLVM floor: the config's model and QMC step, Adam, batches of 128 drawn from images kept on ``device``."""
    from lvm.likelihoods import BernoulliLikelihood
    from lvm.model import LatentVariableModel
    from lvm.objectives import QMCObjective
    from lvm.priors import TorusPrior

    torch.manual_seed(0)
    x = next(iter(DataLoader(train_set, batch_size=len(train_set))))[0].to(device)  # [n, 1, 28, 28]
    model = LatentVariableModel(MLPDecoder([1, 28, 28], [256, 512]), BernoulliLikelihood(), TorusPrior(2),
                                QMCObjective(points)).to(device)
    model.decoder_params(torch.zeros(1, 2, device=device))  # materialise the lazy first layer
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    starts = []
    for _ in range(epochs + 1):
        sync()
        starts.append(time.perf_counter())
        for index in torch.randperm(len(x), device=device).split(128):
            loss = model.objective(model, x[index])["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return seconds_per_epoch(starts)


def qlvm_mnist(args) -> dict:
    """The 2-D MNIST QLVM epoch: lvm with and without validation, and the plain loop."""
    from datamodules.miniatures import write_mnist
    from lvm.datamodules import MNISTDataModule

    device = torch.device(args.device)
    val_size = min(5000, max(1, args.train_size // 10))
    quiet = ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
             "--trainer.enable_model_summary", "false"]
    with tempfile.TemporaryDirectory() as root:
        write_mnist(Path(root), args.train_size + val_size, 100)  # uniform random grey levels in MNIST's IDX files
        common = ["--data.init_args.root", root, "--data.init_args.download", "false", "--data.init_args.val_size",
                  str(val_size), "--model.objective.init_args.num_points", str(args.points),
                  "--trainer.accelerator", "gpu" if device.type == "cuda" else "cpu", "--trainer.devices", "1", *quiet]
        with_validation = lvm_run(common, args.epochs, QLVM_MNIST_CONFIG)
        train_only = lvm_run([*common, "--trainer.check_val_every_n_epoch", str(args.epochs + 2)], args.epochs,
                             QLVM_MNIST_CONFIG)
        datamodule = MNISTDataModule(root, download=False, val_size=val_size)
        datamodule.setup("fit")
        plain = plain_qmc_loop(datamodule.train_set, device, args.points, args.epochs)
    figures = {"device": str(device), "train_size": args.train_size, "points": args.points, "batch": 128,
               "epochs_timed": args.epochs - 1, "plain_s": plain, "lvm_s": with_validation, "lvm_train_s": train_only,
               "lvm_over_plain": with_validation / plain, "lvm_train_over_plain": train_only / plain}
    print(f"2-D MNIST QLVM, {args.train_size} images, m = {args.points}, batch 128, {device}: plain {plain:.2f} "
          f"s/epoch; "
          f"lvm {train_only:.2f} s/epoch without validation ({train_only / plain:.2f}x), {with_validation:.2f} s with "
          f"the config's validation ({with_validation / plain:.2f}x); target <= 2 s on a GPU", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=21)
    parser.add_argument("--qlvm-mnist", action="store_true", help="time the 2-D MNIST QLVM epoch instead")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="with --qlvm-mnist: where the model trains")
    parser.add_argument("--train-size", type=int, default=55_000, help="with --qlvm-mnist: training images")
    parser.add_argument("--points", type=int, default=2584, help="with --qlvm-mnist: lattice points m")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    if args.qlvm_mnist:
        if args.epochs < 2:
            parser.error("--qlvm-mnist times the epochs after the first: --epochs must be >= 2")
        print(json.dumps({"qlvm_mnist": qlvm_mnist(args)}))
        return
    fast = ["--model.eval_every_n_epochs", "0", "--trainer.check_val_every_n_epoch", "10", "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    data = {
        "digits": (DigitsDataModule(batch_size=64), []),
        "random_mnist": (RandomImages(), ["--data", f"{__name__}.RandomImages" if __name__ != "__main__"
                                          else "benchmarks.epoch_time.RandomImages",
                                          "--model.decoder.init_args.data_shape", "[1, 28, 28]"]),
    }
    figures = {}
    for name, (datamodule, overrides) in data.items():
        datamodule.setup("fit")
        plain = plain_loop(datamodule.train_set, datamodule.data_shape, args.epochs)
        floor = lightning_floor(datamodule, args.epochs, validate_and_checkpoint=False)
        val_ckpt_floor = lightning_floor(datamodule, args.epochs, validate_and_checkpoint=True)
        default = lvm_run(overrides, args.epochs)
        fast_time = lvm_run([*overrides, *fast], args.epochs)
        figures[name] = {"plain_s": plain, "lightning_floor_s": floor, "lightning_val_ckpt_floor_s": val_ckpt_floor,
                         "lvm_default_s": default, "lvm_fast_s": fast_time,
                         "lightning_floor_over_plain": floor / plain,
                         "lightning_val_ckpt_floor_over_plain": val_ckpt_floor / plain,
                         "lvm_default_over_plain": default / plain, "lvm_fast_over_plain": fast_time / plain}
        print(f"{name:13s} plain {plain * 1e3:7.1f} ms/epoch; Lightning floor {floor * 1e3:7.1f} "
              f"({floor / plain:.2f}x), with validation + last.ckpt {val_ckpt_floor * 1e3:7.1f} "
              f"({val_ckpt_floor / plain:.2f}x); lvm default {default * 1e3:7.1f} ({default / plain:.2f}x), "
              f"lvm fast {fast_time * 1e3:7.1f} ({fast_time / plain:.2f}x)", flush=True)
    figures.update(lvm_default_over_plain=figures["digits"]["lvm_default_over_plain"],
                   lvm_fast_over_plain=figures["digits"]["lvm_fast_over_plain"])
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
