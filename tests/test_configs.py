"""Every shipped config parses and builds its model (data and training are not run here)."""

import contextlib
import io
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.cli import instantiate_class, instantiate_module

from lvm.cli import cli_main
from lvm.model import LatentVariableModel

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))
ABLATIONS = sorted((CONFIG_DIR / "ablations").glob("*.yaml"))
BASELINES = sorted((CONFIG_DIR / "baselines").glob("*.yaml"))


def test_the_paper_configs_exist():
    names = {c.stem for c in CONFIGS}
    assert {"quickstart", "digits_vae", "digits_iwae", "qlvm_mnist", "vae_mnist", "iwae_mnist"} <= names
    assert {"taylor_mnist", "taylor_collapse_mnist", "taylor_mnist_tanh", "taylor_digits", "taylor_celeba"} <= names
    assert {"mlae_sinusoid", "mlae_mnist", "mlae_mnist_convnet_plus", "mlae_celeba", "mlae_digits", "mlae_power",
            "mlae_gas", "mlae_hepmass", "mlae_miniboone"} <= names
    for data in ("mnist", "fashion_mnist"):
        assert {f"rvae_{data}_d{d}" for d in (2, 5, 10)} | {f"rvae_vae_{data}_d{d}" for d in (2, 5, 10)} <= names
    assert {"rvae_digits", "rvae_vae_digits", "lattice_digits"} <= names
    assert {"qlvm_celeba", "qlvm_3dshapes", "qlvm_vocalizations", "qlvm_mocap"} <= names
    assert {f"lattice_{kind}_mnist_d{d}" for kind in ("z_laplace", "z2", "a2", "e8") for d in (16, 24, 32)} <= names


def _build_model(*configs: Path) -> tuple[dict, LatentVariableModel]:
    """Resolve the configs as train.py would (``--print_config``) and build the model."""
    args = [item for config in configs for item in ("--config", str(config))]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), pytest.raises(SystemExit) as exit_info:
        cli_main([*args, "--print_config"])
    assert exit_info.value.code in (0, None)
    resolved = yaml.safe_load(printed.getvalue())
    model_config = {k: v for k, v in resolved["model"].items() if k not in ("optimizer", "lr_scheduler")}
    model = instantiate_module(LatentVariableModel, model_config)
    datamodule = instantiate_class((), resolved["data"])  # reads no data until setup
    data_shape = datamodule.data_shape or model.decoder.data_shape  # mocap: known from the skeleton file
    assert model.sample(2).shape[1:] == tuple(data_shape)
    if model.encoder is not None:
        codes = model.encoder(torch.zeros(2, *data_shape))
        assert codes.shape == (2, model.objective.encoder_outputs(model.latent.dim)[0])
    return resolved, model


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.stem)
def test_config_parses_and_builds_its_model(config):
    _build_model(config)


def test_ablation_overlays_change_only_what_they_name():
    changes = {
        "mc_points": lambda r, m: m.objective.point_set.kind == "mc",
        "fixed_lattice": lambda r, m: m.objective.point_set.kind == "qmc",
        "nonperiodic": lambda r, m: type(m.latent).__name__ == "UnitCubeLatent",
        "gaussian_prior": lambda r, m: type(m.latent).__name__ == "GaussianLatent",
    }
    assert {a.stem for a in ABLATIONS} == set(changes)
    for ablation in ABLATIONS:
        resolved, model = _build_model(CONFIG_DIR / "qlvm_mnist.yaml", ablation)
        assert changes[ablation.stem](resolved, model), ablation.stem
        assert model.objective.num_points == 2584 and resolved["data"]["class_path"] == "datamodules.MNISTDataModule"


@pytest.mark.parametrize("base", ["taylor_mnist", "taylor_mnist_tanh", "taylor_collapse_mnist", "taylor_celeba"])
def test_baseline_overlays_swap_only_the_objective(base):
    expected = {"sampling_vae": "ELBO", "iwae": "IWAE"}
    assert {b.stem for b in BASELINES} == set(expected)
    _, taylor = _build_model(CONFIG_DIR / f"{base}.yaml")
    for overlay in BASELINES:
        _, baseline = _build_model(CONFIG_DIR / f"{base}.yaml", overlay)
        assert type(baseline.objective).__name__ == expected[overlay.stem]
        assert baseline.latent.dim == taylor.latent.dim
        assert [p.shape for p in baseline.decoder.parameters()] == [p.shape for p in taylor.decoder.parameters()]
