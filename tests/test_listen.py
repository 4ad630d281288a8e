"""``python -m lvm.tools.listen``: the sounds of decoded spectrograms along a latent path, as one WAV file with gaps and
a PNG beside it; the path on the torus; a one-line error for a checkpoint trained on non-audio data."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy.io import wavfile

from lvm.datamodules.miniatures import write_vocalizations
from lvm.tools import listen

ROOT = Path(__file__).resolve().parents[1]
PARAMS = {"fs": 32000, "nperseg": 256, "noverlap": 192, "min_freq": 400.0, "max_freq": 10000.0, "mel": True,
          "max_dur": 0.2, "time_stretch": True, "spec_min_val": 2.0, "spec_max_val": 6.5}


def test_a_path_on_the_torus_goes_the_short_way_round():
    path = listen.latent_path([0.9, 0.5], [0.1, 0.5], 5, periodic=True)
    np.testing.assert_allclose(path[:, 0], [0.9, 0.95, 0.0, 0.05, 0.1], atol=1e-12)  # through the seam, not across
    np.testing.assert_allclose(listen.latent_path([0.9, 0.5], [0.1, 0.5], 3, periodic=False)[:, 0], [0.9, 0.5, 0.1])
    grid = listen.latent_points_grid(3, 2, periodic=True)
    assert grid.shape == (9, 2) and set(np.round(grid[:, 0], 6)) == {round(1 / 6, 6), 0.5, round(5 / 6, 6)}


@pytest.fixture(scope="module")
def vocal_checkpoint(tmp_path_factory) -> Path:
    from lvm.runs.cli import cli_main

    root = tmp_path_factory.mktemp("listen")
    folder = root / "specs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    rows = np.linspace(0, 1, 16)[None, :, None]
    specs = np.clip(np.exp(-((rows - rng.uniform(0.2, 0.8, (64, 1, 1))) / 0.08) ** 2) * np.ones((64, 16, 16)), 0, 1)
    path = write_vocalizations(folder / "bird.h5", 64, specs=specs.astype(np.float32))
    with h5py.File(path, "a") as handle:
        handle.attrs.update(PARAMS)
    model = {"decoder": {"class_path": "lvm.networks.MLPDecoder", "init_args": {"data_shape": [1, 16, 16],
                                                                                "hidden": [16]}},
             "likelihood": {"class_path": "lvm.likelihoods.BernoulliLikelihood"},
             "prior": {"class_path": "lvm.priors.TorusPrior", "init_args": {"dim": 2}},
             "objective": {"class_path": "lvm.objectives.QMCObjective", "init_args": {"num_points": 55}},
             "eval_num_points": 89}
    cli = cli_main(["--model", json.dumps(model), "--data", json.dumps({
        "class_path": "lvm.datamodules.VocalizationsDataModule", "init_args": {"root": str(folder), "batch_size": 16}}),
        "--trainer.max_epochs", "1", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(root / "runs")])
    return next(Path(cli.trainer.default_root_dir).glob("checkpoints/last.ckpt"))


def test_listen_writes_the_sounds_of_a_latent_path_with_gaps_and_their_spectrograms(vocal_checkpoint, tmp_path, capsys):
    out = tmp_path / "traversal.wav"
    listen.main(["--ckpt", str(vocal_checkpoint), "--path", "0.1", "0.2", "0.6", "0.7", "--steps", "4",
                 "--gap", "0.1", "--iterations", "20", "--out", str(out)])
    assert "Wrote 4 sounds" in capsys.readouterr().out
    rate, pcm = wavfile.read(out)
    assert rate == 32000 and pcm.dtype == np.int16
    duration = 0.1  # the data set's median syllable (write_vocalizations: offsets - onsets = 0.1 s)
    span = np.sqrt(duration * PARAMS["max_dur"])  # with time_stretch, what each image spans
    assert len(pcm) / rate == pytest.approx(4 * span + 3 * 0.1, abs=0.02)
    gap = pcm[int(round(span * rate)) + 100: int(round((span + 0.1) * rate)) - 100]
    assert np.abs(pcm).max() > 1000 and np.abs(gap).max() == 0  # sound, then silence between the sounds
    assert out.with_suffix(".png").is_file() and not list(tmp_path.glob(".*partial*"))

    slow = tmp_path / "slow.wav"
    listen.main(["--ckpt", str(vocal_checkpoint), "--points", "0.3", "0.3", "--rate", "0.25", "--duration", "0.05",
                 "--iterations", "10", "--out", str(slow)])
    rate, pcm = wavfile.read(slow)
    assert rate == 8000 and len(pcm) == pytest.approx(np.sqrt(0.05 * 0.2) * 32000, abs=300)  # same samples, slower


def test_listen_refuses_a_checkpoint_of_non_audio_data_in_one_line(quickstart_checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        listen.main(["--ckpt", str(quickstart_checkpoint), "--grid", "2", "--out", str(tmp_path / "x.wav")])
    error = capsys.readouterr().err
    assert stop.value.code == 2 and error.count("\n") == 1 and "DigitsDataModule" in error and "not on spectrograms" in error
    assert not (tmp_path / "x.wav").exists()


def test_listen_names_what_is_missing(vocal_checkpoint, tmp_path, capsys):
    for options, message in ((["--path", "0.1", "0.2", "0.3"], "2 per point"), (["--grid", "2", "--points", "0.1", "0.2"],
                             "give one of"), (["--grid", "2", "--rate", "0"], "--rate must be > 0"),
                            (["--grid", "2", "--covariate", "animal=bird2"], "this model is unconditional"),
                            (["--grid", "2", "--covariate", "animal"], "write KEY=VALUE")):
        with pytest.raises(SystemExit):
            listen.main(["--ckpt", str(vocal_checkpoint), *options, "--out", str(tmp_path / "x.wav")])
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x.wav").exists()
