"""Runs survive resumes, faults and bad input without losing records (each test reproduces a failure of the
newcomer audit first): optimizer overrides on resume, the NaN stop's advice, CSV and W&B history across a resume,
max_epochs below the checkpoint, short errors for bad configs and checkpoints, SIGTERM, the W&B config."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lvm.runs.cli import cli_main
from lvm.runs.files import UsageError
from lvm.model import NonFiniteLossError

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "configs" / "quickstart.yaml")
FAST = ["--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "2",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--model.eval_num_points", "233", "--trainer.callbacks", "[]"]
CSV = ["--trainer.logger", "lightning.pytorch.loggers.CSVLogger"]

pytestmark = pytest.mark.slow


def _run(root, *args, config=QUICKSTART):
    cli = cli_main(["--config", config, "--trainer.default_root_dir", str(root), *FAST, *args])
    return Path(cli.trainer.default_root_dir)


def _adam_lr_and_steps(path):
    state = torch.load(path, weights_only=False)["optimizer_states"][0]
    return state["param_groups"][0]["lr"], max(int(s["step"]) for s in state["state"].values())


def test_a_learning_rate_given_on_resume_takes_effect(tmp_path):
    run = _run(tmp_path, "--trainer.max_epochs", "1", *CSV)
    last = run / "checkpoints" / "last.ckpt"
    assert _adam_lr_and_steps(last) == (1e-3, 3)
    _run(tmp_path, "--ckpt_path", str(last), "--trainer.max_epochs", "2", *CSV)  # same settings: Adam's state continues
    assert _adam_lr_and_steps(last) == (1e-3, 6)
    with pytest.warns(UserWarning, match="fresh optimizer: its settings differ"):
        _run(tmp_path, "--ckpt_path", str(last), "--trainer.max_epochs", "3", "--model.optimizer.init_args.lr", "1e-4", *CSV)
    assert _adam_lr_and_steps(last) == (1e-4, 3)  # the new rate, and fresh moments (3 steps since the resume)
    assert torch.load(last, weights_only=False)["global_step"] == 9
    with pytest.warns(UserWarning, match="--reset_optimizer"):
        _run(tmp_path, "--ckpt_path", str(last), "--trainer.max_epochs", "4", "--model.optimizer.init_args.lr", "1e-4",
             "--reset_optimizer", "true", *CSV)
    assert _adam_lr_and_steps(last) == (1e-4, 3)
    # the original config is kept; each resume's resolved config is recorded beside it
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["optimizer"]["init_args"]["lr"] == 1e-3
    assert yaml.safe_load((run / "config-resume-2.yaml").read_text())["model"]["optimizer"]["init_args"]["lr"] == 1e-4
    assert sorted(p.name for p in run.glob("config*.yaml")) == ["config-resume-1.yaml", "config-resume-2.yaml",
                                                                "config-resume-3.yaml", "config.yaml"]


def test_the_nan_stop_states_a_command_that_works(tmp_path):
    nan = tmp_path / "nan.yaml"
    nan.write_text(yaml.safe_dump({"model": {"objective": {"class_path": "test_cli.NaNAfterTwoSteps"}}}))
    with pytest.raises(NonFiniteLossError) as info:  # fails at global step 2, before any checkpoint
        _run(tmp_path, "--config", str(nan), "--trainer.max_epochs", "3", "--model.optimizer.init_args.lr", "0.01", *CSV)
    run = next(tmp_path.glob("quickstart-*"))
    message = str(info.value)
    assert "No checkpoint had been written yet" in message and "--ckpt_path" not in message
    command = message.splitlines()[-1].split()
    assert command[:4] == ["python", "train.py", "--config", str(run / "config.yaml")]
    assert command[command.index("--model.optimizer.init_args.lr") + 1] == "0.001"
    # once a checkpoint exists, the advice is a resume from it; the command it states runs
    with pytest.raises(NonFiniteLossError) as info:
        _run(tmp_path / "later", "--config", str(nan), "--trainer.max_epochs", "3", "--trainer.limit_train_batches", "1",
             "--trainer.limit_val_batches", "1", *CSV)
    command = str(info.value).splitlines()[-1].split()
    assert "--ckpt_path" in command and "--model.optimizer.init_args.lr" in command
    config = yaml.safe_load(Path(command[3]).read_text())
    config["model"]["objective"] = {"class_path": "lvm.objectives.QMCObjective", "init_args": {"num_points": 89}}
    Path(command[3]).write_text(yaml.safe_dump(config))  # the cause fixed (here: a sound objective), the resume runs
    resumed = cli_main([*command[2:], *FAST[:-2], "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1"])
    assert resumed.trainer.global_step == 3 and resumed.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(1e-4)


def test_csv_history_is_kept_across_a_resume(tmp_path):
    run = _run(tmp_path, "--trainer.max_epochs", "2", *CSV)
    before = list(csv.DictReader((run / "metrics.csv").open()))
    _run(tmp_path, "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), "--trainer.max_epochs", "3", *CSV)
    after = list(csv.DictReader((run / "metrics.csv").open()))
    assert len(after) > len(before) and [{k: r[k] for k in before[0]} for r in after[:len(before)]] == before
    assert {int(r["epoch"]) for r in after if r.get("val/loss")} == {0, 1, 2}  # every epoch is on record


def test_metrics_on_record_survive_a_resume_that_does_not_log_them_again(tmp_path):
    run = _run(tmp_path, "--trainer.max_epochs", "1", *CSV)
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["val/an_earlier_estimate"] = 1.5  # a value the resumed run will not log
    (run / "metrics.json").write_text(json.dumps(metrics))
    _run(tmp_path, "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), "--trainer.max_epochs", "2", *CSV)
    resumed = json.loads((run / "metrics.json").read_text())
    assert resumed["val/an_earlier_estimate"] == 1.5 and resumed["epoch"] == 2 and "test/log_likelihood" in resumed


def test_wandb_continues_the_same_run_and_gets_the_whole_config(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    first = cli_main(["--config", QUICKSTART, "--trainer.default_root_dir", str(tmp_path), *FAST,
                      "--trainer.max_epochs", "1", "--seed_everything", "7"])
    run = Path(first.trainer.default_root_dir)
    _run(tmp_path, "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), "--trainer.max_epochs", "2")
    _run(tmp_path, "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), "--trainer.max_epochs", "3")
    records = sorted((run / "wandb").glob("offline-run-*/run-*.wandb"))  # one folder per process, named by time
    assert len(records) == 3 and len({r.name for r in records}) == 1  # one W&B run id, resumed twice
    config = dict(first.trainer.loggers[0].experiment.config)  # what the dashboard receives
    assert config["seed_everything"] == 7 and config["trainer"]["max_epochs"] == 1
    assert config["model"]["optimizer"]["init_args"]["lr"] == 1e-3 and config["data"]["class_path"].endswith("DigitsDataModule")


def test_max_epochs_below_the_checkpoint_is_one_clear_error_and_writes_nothing(tmp_path):
    run = _run(tmp_path, "--trainer.max_epochs", "2", *CSV)
    files = sorted(p.relative_to(run) for p in run.rglob("*"))
    with pytest.raises(UsageError, match=r"--trainer.max_epochs 1 is below the 2 epochs the checkpoint has completed"):
        _run(tmp_path, "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), "--trainer.max_epochs", "1", *CSV)
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == files


def _train_py(*args, cwd=ROOT, **kwargs):
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], capture_output=True, text=True, cwd=cwd,
                          env=env, **kwargs)


def test_bad_input_gets_a_short_error_naming_it_and_writes_nothing(tmp_path):
    typo = tmp_path / "typo.yaml"
    typo.write_text(Path(QUICKSTART).read_text().replace("lvm.objectives.QMCObjective", "lvm.objectives.QMCObjectve"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("model:\n  prior: [dim: 2\n")
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    run = _run(tmp_path / "runs", "--trainer.max_epochs", "1", *CSV)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes((run / "checkpoints" / "last.ckpt").read_bytes()[:5000])
    cases = {
        ("--config", str(tmp_path / "absent.yaml")): "absent.yaml: no such file",
        ("--config", str(broken)): r"broken.yaml, line 3, column 1: not valid YAML",
        ("--config", str(typo)): r"class_path lvm.objectives.QMCObjectve does not exist. Did you mean lvm.objectives.QMCObjective",
        ("--config", QUICKSTART, "--model.prior", "lvm.priors.TorusPrio"): "Did you mean lvm.priors.TorusPrior",
        ("--config", QUICKSTART, "--ckpt_path", str(text)): "notes.ckpt is not a readable checkpoint",
        ("--config", QUICKSTART, "--ckpt_path", str(truncated)): "truncated.ckpt is not a readable checkpoint",
        ("--config", QUICKSTART, "--model.decoder.init_args.data_shape", "[1, 7, 7]"):
            r"decoder produces outputs of shape \[1, 7, 7\] but the data have shape \[1, 8, 8\]",
        ("--config", QUICKSTART, "--model.objective", "lvm.objectives.ELBO"):
            "ELBO needs model.prior: lvm.priors.StandardNormalPrior; got TorusPrior",
    }
    before = sorted(tmp_path.rglob("*"))
    for args, message in cases.items():
        result = _train_py(*args, "--trainer.default_root_dir", str(tmp_path / "runs"))
        assert result.returncode == 2, (args, result.stderr[-2000:])
        error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(error) == 1 and re.search(message, error[0]), (args, result.stderr[-2000:])
        assert "usage:" not in result.stderr and "Traceback" not in result.stderr
    assert sorted(tmp_path.rglob("*")) == before  # no run directory, config or W&B files written


def test_sigterm_saves_the_last_checkpoint_and_exits_with_a_failure_status(tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, str(ROOT / "train.py"), "--config", QUICKSTART, "--trainer.max_epochs",
                                "1000", "--trainer.default_root_dir", str(tmp_path), "--trainer.logger", "false",
                                "--trainer.enable_progress_bar", "false"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(tmp_path.glob("*/checkpoints/last.ckpt")) and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr[-2000:]
    last = next(tmp_path.glob("*/checkpoints/last.ckpt"))
    assert "resume with: python train.py" in stderr and str(last) in stderr
    checkpoint = torch.load(last, weights_only=False)
    assert checkpoint["global_step"] > 0 and "test/log_likelihood" not in (last.parent.parent / "metrics.json").read_text()


def test_a_wrongly_shaped_batch_names_the_expected_size():
    from lvm.likelihoods import GaussianLikelihood
    from lvm.model import LatentVariableModel
    from lvm.networks import MLPDecoder
    from lvm.priors import TorusPrior
    from lvm.objectives import QMCObjective

    model = LatentVariableModel(MLPDecoder([1, 8, 8], [16]), GaussianLikelihood(0.1), TorusPrior(2), QMCObjective(89))
    assert model.log_likelihood(torch.rand(3, 1, 8, 8), 89).shape == (3,)
    with pytest.raises(ValueError, match=r"x has shape \[3, 28, 28\], but the decoder models examples of 64 values"):
        model.log_likelihood(torch.rand(3, 28, 28), 89)
    with pytest.raises(ValueError, match="unsqueeze"):
        model.embed(torch.rand(64))


def test_constructor_values_are_not_mistaken_for_class_paths():
    from lvm.runs.cli import check_arguments

    check_arguments(["--config", QUICKSTART, "--data.init_args.root", "recordings.Zebra"])  # a folder, not a class
    with pytest.raises(UsageError, match="Did you mean lvm.priors.TorusPrior"):
        check_arguments(["--config", QUICKSTART, "--model.prior.class_path", "lvm.priors.TorusPrio"])


def test_a_class_path_of_the_old_layout_is_named_with_its_new_path(tmp_path):
    """Run from the repository root, ``objectives.QMCObjective`` would import the plugin folder a second time as a
    top-level package; the CLI refuses it with the new name instead."""
    from lvm.runs.cli import check_arguments

    with pytest.raises(UsageError, match="old name of lvm.objectives.QMCObjective"):
        check_arguments(["--config", QUICKSTART, "--model.objective", "objectives.QMCObjective"])
    config = tmp_path / "old.yaml"
    config.write_text("data:\n  class_path: datamodules.DigitsDataModule\n")
    with pytest.raises(UsageError, match=r"old.yaml \(data\): class_path datamodules.DigitsDataModule is the old name "
                                         r"of lvm.datamodules.DigitsDataModule"):
        check_arguments(["--config", str(config)])


def test_a_plugin_module_that_fails_on_import_is_not_called_missing(tmp_path, monkeypatch):
    from lvm.runs.cli import check_arguments

    (tmp_path / "broken_plugin.py").write_text("import a_dependency_that_is_not_installed\nclass Thing: pass\n")
    (tmp_path / "raising_plugin.py").write_text("raise RuntimeError('bad module state')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UsageError, match="importing broken_plugin failed .*a_dependency_that_is_not_installed"):
        check_arguments(["--config", QUICKSTART, "--model.objective", "broken_plugin.Thing"])
    with pytest.raises(UsageError, match="importing raising_plugin failed \\(RuntimeError: bad module state\\)"):
        check_arguments(["--config", QUICKSTART, "--model.objective", "raising_plugin.Thing"])
    with pytest.raises(UsageError, match="class_path missing_plugin.Thing does not exist"):
        check_arguments(["--config", QUICKSTART, "--model.objective", "missing_plugin.Thing"])


def test_data_that_cannot_be_read_is_one_line_before_anything_is_written(tmp_path):
    """The datamodule's file checks (prepare_data) run before the run directory exists: a missing data root and an
    HDF5 file whose array is not called ``specs`` are one error line naming the place, exit status 2, no files."""
    from lvm.datamodules.miniatures import write_vocalizations

    wrong_key = tmp_path / "wrong_key"
    wrong_key.mkdir()
    write_vocalizations(wrong_key / "bird.h5", 8, key="spectrograms")
    cpu, paper = (str(ROOT / "configs" / name) for name in ("qlvm_vocalizations_cpu.yaml", "qlvm_vocalizations.yaml"))
    small = tmp_path / "small"  # 64 x 64 against the paper's config, which states 128 x 128 (the CPU config's
    small.mkdir()  # decoder takes the files' size)
    write_vocalizations(small / "bird.h5", 8, specs=np.zeros((8, 64, 64), dtype=np.float32))
    cases = {(cpu, str(tmp_path / "absent")): r"No vocalization HDF5 files .* in .*absent",
             (cpu, str(wrong_key)): r"bird.h5: no dataset 'specs' \(it has .*'spectrograms'",
             (paper, str(small)): r"outputs of shape \[1, 128, 128\] but the data have shape \[1, 64, 64\].*"
                                  r"--params.num_freq_bins F --params.num_time_bins T\); the files in .* hold 64 x 64"}
    before = sorted(tmp_path.rglob("*"))
    for (config, root), message in cases.items():
        result = _train_py("--config", config, "--data.init_args.root", root,
                           "--trainer.default_root_dir", str(tmp_path / "runs"))
        error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.returncode == 2 and len(error) == 1 and re.search(message, error[0]), result.stderr[-2000:]
        assert "Traceback" not in result.stderr
    assert sorted(tmp_path.rglob("*")) == before
