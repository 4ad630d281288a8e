"""KL warm-up (R-VAE paper, appendix C.1): the schedule, the weighted ELBO, checkpointing and resuming, refusals."""

import json
import tempfile
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from lvm.callbacks import KLWarmup
from lvm.runs.cli import LVMCLI, cli_main
from lvm.estimators.variational import elbo_terms

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"
BASE = str(CONFIG_DIR / "digits_vae.yaml")
FAST = ["--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.logger", "false", "--trainer.num_sanity_val_steps", "0", "--model.eval_num_points", "55",
        "--model.eval_num_samples", "4"]

RECORDED: list[tuple[int, float]] = []  # (epoch, the objective's kl_weight) at every training batch


class RecordKLWeight(L.Callback):
    """Records the KL weight every training batch sees."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        RECORDED.append((trainer.current_epoch, pl_module.objective.kl_weight))


def _config(tmp_path: Path, epochs: int = 4, start: float = 0.0) -> str:
    path = tmp_path / "warmup.yaml"
    path.write_text(yaml.safe_dump({"trainer": {"callbacks": [
        {"class_path": "lvm.callbacks.KLWarmup", "init_args": {"epochs": epochs, "start": start}},
        {"class_path": f"{__name__}.RecordKLWeight"}]}}))
    return str(path)


def _run(tmp_path: Path, *args) -> Path:
    cli = cli_main(["--config", BASE, "--config", _config(tmp_path), "--trainer.default_root_dir", str(tmp_path / "runs"),
                    *FAST, *args])
    return Path(cli.trainer.default_root_dir)


def _warmup_state(checkpoint: Path) -> dict:
    (state,) = [v for k, v in torch.load(checkpoint, weights_only=False)["callbacks"].items() if k.startswith("KLWarmup")]
    return state


def test_the_kl_weight_rises_linearly_to_one_over_the_stated_epochs_and_stays_there():
    # The R-VAE authors' beta = min(epoch / annealing_epochs, 1), epochs counted from 1 (Lightning counts from 0).
    assert [KLWarmup(epochs=4).weight(e) for e in range(7)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0]
    assert [KLWarmup(epochs=100).weight(e) for e in (0, 49, 98, 99, 100, 299)] == pytest.approx([0.01, 0.5, 0.99, 1, 1, 1])
    assert [KLWarmup(epochs=2, start=0.2).weight(e) for e in range(3)] == pytest.approx([0.6, 1.0, 1.0])
    resumed = KLWarmup(epochs=5)
    with pytest.warns(UserWarning, match="differs from this run's"):  # a resume with another schedule says so
        resumed.load_state_dict({"epochs": 4, "start": 0.0, "kl_weight": 0.5, "epoch": 1})
    assert resumed.weight(2) == 0.6
    for bad in ({"epochs": 0}, {"epochs": 2.5}, {"start": -0.1}, {"start": 1.5}):
        with pytest.raises(ValueError, match="KLWarmup"):
            KLWarmup(**bad)


def test_the_training_loss_weights_the_kl_term_while_the_logged_elbo_stays_unweighted():
    with tempfile.TemporaryDirectory() as root:
        model = LVMCLI(["--config", BASE, "--trainer.default_root_dir", root, "--trainer.logger", "false"],
                       fit_and_test=False).model
    objective, x = model.objective, torch.rand(8, 1, 8, 8)
    assert objective.kl_weight == 1.0
    objective.kl_weight = 0.3
    model.train()
    with torch.no_grad():
        [*model.encoder.modules()][-1].bias.fill_(1.5)  # posterior means away from 0: a KL of several nats
        objective(model, x)  # the first call initialises lazily and draws from the generator
        torch.manual_seed(0)
        outputs = {k: v.item() for k, v in objective(model, x).items()}
        torch.manual_seed(0)
        terms = elbo_terms(lambda z: model.log_prob(x, z), model.posterior, model.prior, model.encode(x))
        elbo, reconstruction, kl = (t.mean().item() for t in terms)
    assert kl > 1
    assert outputs["loss"] == pytest.approx(-reconstruction + 0.3 * kl, rel=1e-5)
    assert outputs["elbo"] == pytest.approx(elbo, rel=1e-5) and elbo == pytest.approx(reconstruction - kl, rel=1e-5)
    assert outputs["reconstruction"] == pytest.approx(reconstruction, rel=1e-5)
    assert outputs["kl"] == pytest.approx(kl, rel=1e-5)
    model.eval()  # held-out batches: the unweighted negative ELBO, comparable across the schedule
    with torch.no_grad():
        outputs = objective(model, x)
    assert outputs["loss"].item() == pytest.approx(-outputs["elbo"].item(), rel=1e-6)


@pytest.mark.slow
def test_the_schedule_is_followed_in_training_saved_in_checkpoints_and_continued_on_resume(tmp_path):
    RECORDED.clear()
    run_dir = _run(tmp_path, "--trainer.max_epochs", "2")
    assert RECORDED == [(0, 0.25), (0, 0.25), (1, 0.5), (1, 0.5)]  # every batch of an epoch sees that epoch's weight
    last = run_dir / "checkpoints" / "last.ckpt"
    assert _warmup_state(last) == {"epochs": 4, "start": 0.0, "kl_weight": 0.5, "epoch": 1}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train/kl_weight"] == 0.5
    weighted = -(metrics["train/reconstruction"] - 0.5 * metrics["train/kl"])  # the last batch's terms
    assert metrics["train/loss"] == pytest.approx(weighted, rel=1e-5)  # weighted in training ...
    assert metrics["train/elbo"] == pytest.approx(metrics["train/reconstruction"] - metrics["train/kl"], rel=1e-5)
    assert metrics["test/loss"] == pytest.approx(-metrics["test/elbo"])  # ... never on held-out data

    RECORDED.clear()
    resumed_dir = _run(tmp_path, "--trainer.max_epochs", "4", "--ckpt_path", str(last))
    assert resumed_dir == run_dir
    assert RECORDED == [(2, 0.75), (2, 0.75), (3, 1.0), (3, 1.0)]  # continued, not restarted
    assert _warmup_state(last) == {"epochs": 4, "start": 0.0, "kl_weight": 1.0, "epoch": 3}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train/kl_weight"] == 1.0 and metrics["train/loss"] == pytest.approx(-metrics["train/elbo"])


@pytest.mark.slow
def test_an_objective_without_a_kl_term_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"objective lvm\.objectives\.iwae\.IWAE has no weighted KL term"):
        _run(tmp_path, "--trainer.max_epochs", "1", "--model.objective", "lvm.objectives.IWAE")


def test_the_rvae_vae_baselines_warm_up_over_their_first_phase_and_the_rvaes_do_not():
    vaes = sorted(CONFIG_DIR.glob("rvae_vae_*.yaml"))
    assert len(vaes) == 7
    for path in vaes:
        callbacks = {c["class_path"]: c.get("init_args", {}) for c in yaml.safe_load(path.read_text())["trainer"]["callbacks"]}
        assert callbacks["lvm.callbacks.KLWarmup"]["epochs"] == callbacks["lvm.callbacks.TwoPhaseTraining"]["switch_epoch"], path.name
    for path in set(CONFIG_DIR.glob("rvae_*.yaml")) - set(vaes):  # the R-VAE's first phase is an autoencoder (C.1)
        callbacks = [c["class_path"] for c in yaml.safe_load(path.read_text())["trainer"]["callbacks"]]
        assert "lvm.callbacks.KLWarmup" not in callbacks, path.name
