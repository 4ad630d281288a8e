"""From WAV files to a coloured embedding, as the README's vocalization tutorial does it: segment, preprocess
(64 x 64), train configs/qlvm_vocalizations_cpu.yaml briefly, and check the embedding plot's legend."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest

import lvm.callbacks.latent_plots
from lvm.datamodules.vocalizations import preprocess as vocalization_preprocess, segment
from lvm.datamodules.miniatures import CALL_KINDS, write_recordings
from lvm.runs.cli import cli_main

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "qlvm_vocalizations_cpu.yaml"
SHORT = ["--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false", "--trainer.logger", "false",
         "--model.eval_num_points", "144", "--model.eval_num_samples", "4", "--model.objective.init_args.num_points", "144"]


@pytest.mark.slow
def test_wav_files_to_a_trained_cpu_model_and_an_embedding_with_named_categories(tmp_path, monkeypatch):
    truth = write_recordings(tmp_path / "wav", rates=(22_050, 48_000), calls_per_file=12, files_per_format=2)
    found = segment.main(["--audio_dir", str(tmp_path / "wav"), "--out", str(tmp_path / "segments.csv")])
    assert len(found) == len(truth)
    # the user's annotations (call type, individual) joined to the segments by file and nearest onset
    segments = pd.merge_asof(found.sort_values("onset"), truth[["file", "onset", "kind", "individual"]].sort_values("onset"),
                             on="onset", by="file", direction="nearest", tolerance=0.01).sort_values(["file", "onset"])
    assert segments.kind.notna().all()
    segments.to_csv(tmp_path / "segments.csv", index=False)
    vocalization_preprocess.main(["--audio_dir", str(tmp_path / "wav"), "--segments", str(tmp_path / "segments.csv"),
                                  "--out_dir", str(tmp_path / "specs"), "--params.num_freq_bins", "64",
                                  "--params.num_time_bins", "64"])
    figures = {}
    save = lvm.callbacks.latent_plots.save_and_log
    monkeypatch.setattr(lvm.callbacks.latent_plots, "save_and_log", lambda trainer, f: (figures.update(f), save(trainer, f)))
    run = cli_main(["--config", str(CONFIG), "--trainer.default_root_dir", str(tmp_path / "runs"), *SHORT,
                    "--data.init_args.root", str(tmp_path / "specs"), "--data.init_args.label_key", "kind"])
    root = Path(run.trainer.default_root_dir)
    metrics = json.loads((root / "metrics.json").read_text())
    assert math.isfinite(metrics["test/log_likelihood"]) and (root / "plots" / "embedding.png").is_file()
    legend = figures["embedding"].axes[0].get_legend()
    assert legend.get_title().get_text() == "kind"
    assert [t.get_text() for t in legend.get_texts()] == sorted(CALL_KINDS)
    grid = figures["decoded_grid"]
    assert grid.get_supylabel() == "frequency (kHz)" and grid.get_supxlabel().startswith("time (ms")
    test_files = set(run.datamodule.metadata["audio_filenames"][run.datamodule.test_set.indices])
    train_files = set(run.datamodule.metadata["audio_filenames"][run.datamodule.train_set.indices])
    assert test_files and test_files.isdisjoint(train_files)  # group_key: recordings never straddle splits
