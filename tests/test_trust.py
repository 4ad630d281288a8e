"""``python -m lvm.tools.trust`` on quick-start checkpoints, and ``lvm.tools.compare --seeds 2``'s consistency."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lvm.tools import embed, trust
from lvm.runs.cli import cli_main
from lvm.tools.compare import main as compare_main
from lvm.analysis.consistency import consistency
from lvm.analysis.provenance import read_embedding

ROOT = Path(__file__).resolve().parents[1]
SHORT = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "5", "--trainer.limit_val_batches", "1",
         "--trainer.enable_progress_bar", "false", "--model.eval_num_points", "233", "--trainer.callbacks", "[]"]


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory) -> list[Path]:
    checkpoints = []
    for seed in (0, 1):
        root = tmp_path_factory.mktemp(f"seed{seed}")
        cli = cli_main(["--config", str(ROOT / "configs" / "quickstart.yaml"), "--trainer.default_root_dir", str(root),
                        "--trainer.logger", "false", "--seed_everything", str(seed), *SHORT])
        checkpoints.append(Path(cli.trainer.default_root_dir) / "checkpoints" / "last.ckpt")
    return checkpoints


def test_trust_reports_decodability_clusters_and_consistency(two_seeds, tmp_path, capsys):
    out = tmp_path / "trust.json"
    trust.main(["--ckpt", *map(str, two_seeds), "--out", str(out)])
    report = json.loads(out.read_text())
    assert "consistency over 1 pairs" in capsys.readouterr().out
    for result in report["runs"].values():
        label = result["decodability"]["label"]
        assert label["chance_balanced_accuracy"] == pytest.approx(0.1)
        assert 0 <= label["balanced_accuracy"] <= 1 and result["n"] == 359
        assert result["clusters"]["num_modes"] == len(result["clusters"]["modes"])
    # the consistency equals the diagnostics function on the exported embeddings of the same test examples
    tables = []
    for k, ckpt in enumerate(two_seeds):
        embed.main(["--ckpt", str(ckpt), "--out", str(tmp_path / f"e{k}.csv"), "--splits", "test",
                    "--log_likelihood", "false"])
        tables.append(read_embedding(tmp_path / f"e{k}.csv")[0])
    assert (tables[0]["example"] == tables[1]["example"]).all()
    expected = consistency([table[["z1", "z2"]].to_numpy() for table in tables], periodic=True)["r2"].item()
    assert report["consistency"]["mean_r2"] == pytest.approx(expected, abs=1e-9)
    assert report["consistency"]["mean_r2"] < 0.999  # two seeds do not give the same embedding


def test_a_checkpoint_is_perfectly_consistent_with_itself(two_seeds, tmp_path):
    out = tmp_path / "self.json"
    trust.main(["--ckpt", str(two_seeds[0]), str(two_seeds[0]), "--out", str(out)])
    assert json.loads(out.read_text())["consistency"]["mean_r2"] == pytest.approx(1.0, abs=1e-9)


def test_unknown_field_is_a_one_line_error(two_seeds, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        trust.main(["--ckpt", str(two_seeds[0]), "--out", str(tmp_path / "t.json"), "--fields", "species"])
    assert stop.value.code == 2 and "--fields species: not a column" in capsys.readouterr().err
    assert not (tmp_path / "t.json").exists()


@pytest.mark.slow
def test_compare_with_two_seeds_reports_their_consistency(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    compare_main(["--configs", str(ROOT / "configs" / "quickstart.yaml"), "--out", str(tmp_path), "--seeds", "2",
                  *SHORT, "--trainer.limit_test_batches", "2"])
    pairs = pd.read_csv(tmp_path / "consistency.csv")
    assert list(pairs[["config", "run_a", "run_b"]].itertuples(index=False, name=None)) == [
        ("quickstart", "seed0", "seed1")]
    results = pd.read_csv(tmp_path / "results.csv")
    assert np.allclose(results["consistency_r2"], pairs["r2"].item()) and math.isfinite(pairs["r2"].item())
    assert "consistency_r2" in (tmp_path / "report.md").read_text()
