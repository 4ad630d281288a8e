"""Every shipped config parses and builds its model (data and training are not run here)."""

import contextlib
import io
from pathlib import Path

import pytest
import yaml
from lightning.pytorch.cli import instantiate_module

from lvm.cli import cli_main
from lvm.model import LatentVariableModel

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_the_paper_configs_exist():
    names = {c.stem for c in CONFIGS}
    assert {"quickstart", "digits_vae", "digits_iwae", "qlvm_mnist", "vae_mnist", "iwae_mnist"} <= names


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.stem)
def test_config_parses_and_builds_its_model(config):
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), pytest.raises(SystemExit) as exit_info:
        cli_main(["--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    resolved = yaml.safe_load(printed.getvalue())
    model_config = {k: v for k, v in resolved["model"].items() if k not in ("optimizer", "lr_scheduler")}
    model = instantiate_module(LatentVariableModel, model_config)
    assert model.sample(2).shape[1:] == tuple(resolved["model"]["decoder"]["init_args"]["data_shape"])
