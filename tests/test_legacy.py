"""Checkpoints written before the layered core (f407916) still load: their old class paths are upgraded on load
(:mod:`lvm.legacy`), they give the held-out log-likelihood the old code gave, and ``python -m
lvm.tools.upgrade_checkpoint`` rewrites them. The fixtures and the recorded values: ``tests/fixtures/README.md``."""

import copy
import importlib
import io
import warnings
from argparse import Namespace
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from lvm.runs.files import load_checkpoint
from lvm.legacy import RENAMED_MODULES, RENAMED_NAMES, upgrade_checkpoint, upgraded_path
from lvm.model import LatentVariableModel
from lvm.tools.upgrade_checkpoint import main as upgrade_main

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
# test/log_likelihood of each fixture on the whole test split (359 digits), computed by the code of f407916
RECORDED = {"quickstart-f407916.ckpt": -38.57945251464844, "digits_vae-f407916.ckpt": -36.56875228881836}
OBJECTIVES = {"quickstart-f407916.ckpt": "QMCObjective", "digits_vae-f407916.ckpt": "ELBO"}
LEGACY_WARNING = "paths before lvm's layered core"

# Every class that the modules of f407916 defined, by its old path (the plugins' also at their package, as configs
# name them): each must reach a class of the same name in the current code.
OLD_CLASSES = """
lvm.checkpointing.BestAndLastCheckpoint lvm.cli.UsageError lvm.cli.LVMCLI lvm.compare.EpochTimer
lvm.evaluation.HeldOutEvaluation lvm.explorer.LatentGrid lvm.geometry.Geodesic lvm.heap.FreezeStartupHeap
lvm.lattices.PointSet lvm.loggers.WandbLogger lvm.loggers.CSVLogger lvm.metrics.PosteriorCollapse
lvm.metrics.GaussianFrechetDistance lvm.metrics_file.MetricsFile lvm.plots.ImageAxes lvm.quantizers.Quantizer
lvm.quantizers.IntegerLattice lvm.quantizers.HexagonalLattice lvm.quantizers.E8Lattice lvm.quantizers.ProductLattice
lvm.rng_state.RNGStateCheckpoint
lvm.likelihoods.BernoulliLikelihood lvm.likelihoods.GaussianLikelihood lvm.likelihoods.HeteroscedasticGaussianLikelihood
lvm.networks.MLPDecoder lvm.networks.ConvDecoder lvm.networks.MLPEncoder lvm.networks.ConvEncoder
lvm.networks.HigginsEncoder lvm.networks.HigginsDecoder lvm.networks.ResidualMLPEncoder lvm.networks.ResidualMLPDecoder
lvm.networks.PythaeConvEncoder lvm.networks.PythaeConvDecoder lvm.networks.RBFPrecision
lvm.networks.MeanPrecisionDecoder lvm.networks.GatedEncoder lvm.networks.GatedDecoder
lvm.posteriors.DiagonalGaussianPosterior
lvm.posteriors.PointMassPosterior lvm.posteriors.BrownianStepPosterior lvm.priors.UnitCubePrior lvm.priors.TorusPrior
lvm.priors.StandardNormalPrior lvm.priors.BrownianMotionPrior lvm.priors.LaplaceLatticePrior
lvm.priors.GaussianProxyLatticePrior lvm.samplers.GaussianMixtureSampler lvm.model.LatentVariableModel
""".split() + [old for old in RENAMED_NAMES if old.split(".")[0] in ("objectives", "callbacks", "datamodules")]


def _resolve(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _test_log_likelihood(model, datamodule) -> float:
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False)
    return trainer.test(model, datamodule=datamodule, verbose=False)[0]["test/log_likelihood"]


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_an_old_checkpoint_loads_and_gives_the_old_codes_heldout_log_likelihood(name):
    """The model and its datamodule rebuilt from a checkpoint of f407916 (as the tools do) give the old code's
    test/log_likelihood. The estimate is deterministic (the lattice shift and the defensive proposals' draws are seeded
    by eval_shift_seed and each example), so the values agree to float32 rounding; the tolerance leaves room only for a
    reordering of the sums."""
    with pytest.warns(UserWarning, match=LEGACY_WARNING) as caught:
        model, datamodule = load_checkpoint(FIXTURES / name)
    (legacy,) = [str(w.message) for w in caught if LEGACY_WARNING in str(w.message)]  # one warning
    assert "python -m lvm.tools.upgrade_checkpoint" in legacy
    assert type(model.objective).__module__.startswith("lvm.objectives.")
    assert type(model.objective).__name__ == OBJECTIVES[name]
    assert type(datamodule).__module__.startswith("lvm.datamodules.")
    assert _test_log_likelihood(model, datamodule) == pytest.approx(RECORDED[name], rel=1e-5)


def test_an_old_checkpoint_loads_from_a_file_object():
    data = (FIXTURES / "quickstart-f407916.ckpt").read_bytes()
    with pytest.warns(UserWarning, match=LEGACY_WARNING):
        model = LatentVariableModel.load_from_checkpoint(io.BytesIO(data), map_location="cpu")
    expected = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.equal(model.state_dict()[key], value) for key, value in expected.items())


def test_upgrade_rewrites_the_old_paths_once():
    checkpoint = torch.load(FIXTURES / "digits_vae-f407916.ckpt", map_location="cpu", weights_only=True)
    before = copy.deepcopy(checkpoint)
    assert upgrade_checkpoint(checkpoint) == [("objectives.ELBO", "lvm.objectives.ELBO"),
                                              ("datamodules.DigitsDataModule", "lvm.datamodules.DigitsDataModule")]
    assert checkpoint["hyper_parameters"]["objective"]["class_path"] == "lvm.objectives.ELBO"
    assert checkpoint["datamodule_hyper_parameters"]["_class_path"] == "lvm.datamodules.DigitsDataModule"
    assert checkpoint["hyper_parameters"]["encoder"] == before["hyper_parameters"]["encoder"]  # unchanged paths
    upgraded = copy.deepcopy({key: checkpoint[key] for key in ("hyper_parameters", "datamodule_hyper_parameters")})
    assert upgrade_checkpoint(checkpoint) == []  # idempotent
    assert {key: checkpoint[key] for key in upgraded} == upgraded


def test_a_current_checkpoint_is_left_as_it_is(quickstart_checkpoint):
    checkpoint = torch.load(quickstart_checkpoint, map_location="cpu", weights_only=False)
    before = copy.deepcopy({key: checkpoint[key] for key in ("hyper_parameters", "datamodule_hyper_parameters")})
    assert upgrade_checkpoint(checkpoint) == []
    assert {key: checkpoint[key] for key in before} == before
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=f".*{LEGACY_WARNING}")
        LatentVariableModel.load_from_checkpoint(quickstart_checkpoint, map_location="cpu")


def test_no_class_path_of_the_current_configs_is_an_old_name():
    def class_paths(value):
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "class_path" and isinstance(item, str):
                    yield item
                else:
                    yield from class_paths(item)
        elif isinstance(value, list):
            for item in value:
                yield from class_paths(item)

    paths = {path for config in ROOT.glob("configs/**/*.yaml")
             for path in class_paths(yaml.safe_load(config.read_text()))}
    assert "lvm.objectives.QMCObjective" in paths
    assert {path: upgraded_path(path) for path in paths if upgraded_path(path) != path} == {}


def test_paths_not_in_the_tables_are_left_alone():
    hyper_parameters = {
        "objective": {"class_path": "objective.QMCObjective", "init_args": {}},  # a typo of the old package
        "prior": {"class_path": "lvm.priors.TorusPrior", "init_args": {"dim": 2}},
        "decoder": {"class_path": "objectives.QMCObjectiv"},  # a typo of an old class
        "plugin": Namespace(class_path="myplugins.objectives.MyObjective"),  # a user's own package
        "datamodules": [{"class_path": "datamodules.MyDataModule"}],  # a user's own top-level datamodules package
        "optimizer": {"class_path": "torch.optim.Adam"},
    }
    checkpoint = {"hyper_parameters": copy.deepcopy(hyper_parameters)}
    assert upgrade_checkpoint(checkpoint) == []
    assert checkpoint["hyper_parameters"]["plugin"].class_path == "myplugins.objectives.MyObjective"
    assert {key: value for key, value in checkpoint["hyper_parameters"].items() if key != "plugin"} == {
        key: value for key, value in hyper_parameters.items() if key != "plugin"}


def test_nested_paths_in_lists_and_namespaces_are_upgraded():
    inner = {"class_path": "datamodules.vocalizations.VocalizationsDataModule"}
    checkpoint = {"hyper_parameters": {"objective": Namespace(class_path="objectives.qmc.QMCObjective"),
                                       "samplers": [{"class_path": "lvm.loggers.WandbLogger",
                                                     "init_args": {"inner": inner}}]}}
    assert upgrade_checkpoint(checkpoint) == [
        ("objectives.qmc.QMCObjective", "lvm.objectives.QMCObjective"),
        ("lvm.loggers.WandbLogger", "lvm.runs.loggers.WandbLogger"),
        ("datamodules.vocalizations.VocalizationsDataModule", "lvm.datamodules.VocalizationsDataModule")]
    assert checkpoint["hyper_parameters"]["objective"].class_path == "lvm.objectives.QMCObjective"


@pytest.mark.parametrize("old", OLD_CLASSES)
def test_every_old_class_path_reaches_its_class(old):
    new = upgraded_path(old)
    assert upgraded_path(new) == new
    target = _resolve(new)
    assert isinstance(target, type) and target.__name__ == old.rpartition(".")[2]


def test_every_table_entry_resolves_and_no_new_path_is_an_old_one():
    for old, new in RENAMED_NAMES.items():
        assert _resolve(new).__name__ == old.rpartition(".")[2], old
        assert upgraded_path(new) == new, new
    for new in RENAMED_MODULES.values():
        importlib.import_module(new)
        assert new not in RENAMED_MODULES


def test_the_command_writes_a_checkpoint_that_loads_without_upgrading(tmp_path, capsys):
    old = FIXTURES / "quickstart-f407916.ckpt"
    new = tmp_path / "upgraded.ckpt"
    upgrade_main([str(old), str(new)])
    out = capsys.readouterr().out
    assert "objectives.QMCObjective -> lvm.objectives.QMCObjective" in out
    assert "datamodules.DigitsDataModule -> lvm.datamodules.DigitsDataModule" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["upgraded.ckpt"]
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=f".*{LEGACY_WARNING}")
        model = LatentVariableModel.load_from_checkpoint(new, map_location="cpu")
    expected = torch.load(old, map_location="cpu", weights_only=True)
    assert all(torch.equal(model.state_dict()[key], value) for key, value in expected["state_dict"].items())
    written = torch.load(new, map_location="cpu", weights_only=True)
    assert written["datamodule_hyper_parameters"]["_class_path"] == "lvm.datamodules.DigitsDataModule"
    assert written["loops"] == expected["loops"] and written["epoch"] == expected["epoch"]
    upgrade_main([str(new), str(tmp_path / "again.ckpt")])  # a current checkpoint: copied, nothing renamed
    assert "->" not in capsys.readouterr().out


@pytest.mark.parametrize("content", [b"", b"not a checkpoint\n" * 10, None])
def test_the_command_refuses_an_unusable_file_in_one_line(tmp_path, capsys, content):
    old = tmp_path / "old.ckpt"
    if content is not None:
        old.write_bytes(content)
    before = sorted(tmp_path.iterdir())
    with pytest.raises(SystemExit) as exit_:
        upgrade_main([str(old), str(tmp_path / "new.ckpt")])
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert sorted(tmp_path.iterdir()) == before  # nothing written, no partial file


def test_the_command_rewrites_in_place_only_when_asked(tmp_path, capsys):
    old = tmp_path / "old.ckpt"
    old.write_bytes((FIXTURES / "digits_vae-f407916.ckpt").read_bytes())
    for argv in ([str(old), str(old)], [str(old)]):
        with pytest.raises(SystemExit) as exit_:
            upgrade_main(argv)
        assert exit_.value.code == 2 and "--in_place" in capsys.readouterr().err
    assert old.read_bytes() == (FIXTURES / "digits_vae-f407916.ckpt").read_bytes()
    upgrade_main([str(old), "--in_place"])
    assert "objectives.ELBO -> lvm.objectives.ELBO" in capsys.readouterr().out
    assert upgrade_checkpoint(torch.load(old, map_location="cpu", weights_only=True)) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.ckpt"]


OLD_RUN_CONFIG = """# an old run's config.yaml (the layout of f407916)
model:
  objective:
    class_path: objectives.ELBO  # the plugin was a top-level package
  prior:
    class_path: lvm.priors.StandardNormalPrior
trainer:
  logger:
    class_path: lvm.loggers.WandbLogger
  callbacks:
  - class_path: callbacks.LatentPlots
data:
  class_path: "datamodules.DigitsDataModule"
"""


def test_the_command_rewrites_an_old_config_keeping_its_comments(tmp_path, capsys):
    from lvm.runs.cli import check_arguments

    old, new = tmp_path / "config.yaml", tmp_path / "config-upgraded.yaml"
    old.write_text(OLD_RUN_CONFIG)
    upgrade_main([str(old), str(new)])
    printed = capsys.readouterr().out
    assert "objectives.ELBO -> lvm.objectives.ELBO" in printed and "lvm.loggers.WandbLogger -> lvm.runs.loggers.WandbLogger" in printed
    text = new.read_text()
    assert "# the plugin was a top-level package" in text and old.read_text() == OLD_RUN_CONFIG
    tree = yaml.safe_load(text)
    assert tree["model"]["objective"]["class_path"] == "lvm.objectives.ELBO"
    assert tree["trainer"]["callbacks"][0]["class_path"] == "lvm.callbacks.LatentPlots"
    assert tree["data"]["class_path"] == "lvm.datamodules.DigitsDataModule"
    assert tree["model"]["prior"]["class_path"] == "lvm.priors.StandardNormalPrior"  # current paths stay
    check_arguments(["--config", str(new)])  # every class path resolves
