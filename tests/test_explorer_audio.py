"""Sound in the explorer (issue 27, "Playback in the explorer"): for a model of vocalization spectrograms, preprocessed
from real WAV files, the page embeds each picture point's original clip (cut from its recording) and the sound of its
decoded spectrogram, and each grid cell's decoded sound, as Ogg/Opus data URIs; a click plays them. A recording that
is missing gets a warning naming it and the page is still built; the digits get no sound. In headless Chromium a click
on a point starts playback of a non-silent clip, and a grid cell's clip differs from a point's."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
import soundfile

from browser import render_page, when_rendered

OGG_URI = re.compile(r"data:audio/ogg;codecs=opus;base64,([A-Za-z0-9+/=]+)")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """WAV recordings of synthetic calls (:func:`write_recordings`), the real preprocessing (16 x 16 spectrograms)
    and an untrained 2-D torus model of them with its test-and-train embedding: ``(model, datamodule, table, wav)``."""
    import torch

    from lvm.analysis.embedding import embedding_table
    from lvm.datamodules import VocalizationsDataModule
    from lvm.datamodules.miniatures import write_recordings
    from lvm.datamodules.vocalizations import preprocess
    from lvm.likelihoods import BernoulliLikelihood
    from lvm.model import LatentVariableModel
    from lvm.networks import MLPDecoder
    from lvm.objectives import QMCObjective
    from lvm.priors import TorusPrior

    root = tmp_path_factory.mktemp("explorer_audio")
    truth = write_recordings(root / "wav", rates=(22_050, 32_000), subtypes=("PCM_16",), calls_per_file=8,
                             files_per_format=2)
    truth[["file", "onset", "offset", "kind"]].to_csv(root / "segments.csv", index=False)
    preprocess.main(["--audio_dir", str(root / "wav"), "--segments", str(root / "segments.csv"),
                     "--out_dir", str(root / "specs"), "--params.num_freq_bins", "16", "--params.num_time_bins", "16",
                     "--params.nperseg", "256", "--params.noverlap", "192"])
    datamodule = VocalizationsDataModule(str(root / "specs"), batch_size=16, label_key="kind")
    torch.manual_seed(0)
    model = LatentVariableModel(MLPDecoder(data_shape=[1, 16, 16], hidden=[16]), BernoulliLikelihood(),
                                TorusPrior(2), QMCObjective(55), eval_num_points=89, eval_num_samples=4)
    table, _ = embedding_table(model, datamodule, ("train", "test"), log_likelihood=False)
    return model, datamodule, table, root / "wav"


@pytest.fixture(scope="module")
def audio_page(recorded) -> str:
    from lvm.tools.explore import build_explorer

    model, datamodule, table, _ = recorded
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every recording is found
        return build_explorer(model, datamodule, table, max_images=12, per_side=3)


def clips(page: str) -> list[bytes]:
    return [base64.b64decode(encoded) for encoded in OGG_URI.findall(page)]


def test_the_page_embeds_each_picture_points_clip_and_reconstruction_and_each_cells_sound(audio_page, recorded):
    from lvm.tools.explore import original_clips

    model, datamodule, table, _ = recorded
    sounds = clips(audio_page)
    assert len(sounds) == 12 + 12 + 9  # originals, reconstructions, the 3 x 3 grid
    for sound in sounds[:3] + sounds[-3:]:
        samples, rate = soundfile.read(io.BytesIO(sound))
        assert rate in (24_000, 32_000, 48_000) and np.abs(samples).max() > 0.1  # peak-normalised, not silent
    # the original clip is the recording between the example's onset and offset
    (clip,) = original_clips(datamodule, [0])
    onset, offset = datamodule.metadata["onsets"][0], datamodule.metadata["offsets"][0]
    assert clip.sample_rate in (22_050, 32_000)
    assert len(clip.waveform) == pytest.approx((offset - onset) * clip.sample_rate, abs=2)
    assert "Playback speed" in audio_page and "playback-speed" in audio_page and "preservesPitch" in audio_page


def test_audio_false_leaves_the_sound_out(recorded):
    from lvm.tools.explore import build_explorer

    model, datamodule, table, _ = recorded
    page = build_explorer(model, datamodule, table, max_images=5, per_side=2, audio=False)
    assert "data:audio" not in page and "playback-speed" not in page and "data:image/png" in page


def test_no_sound_for_the_digits(quickstart_checkpoint):
    from lvm.runs.files import load_checkpoint
    from lvm.analysis.embedding import embedding_table
    from lvm.tools.explore import build_explorer

    model, datamodule = load_checkpoint(str(quickstart_checkpoint), {})
    table, _ = embedding_table(model, datamodule, ("test",), log_likelihood=False)
    page = build_explorer(model, datamodule, table.iloc[:50], max_images=10, per_side=3)
    assert "data:audio" not in page and "playback-speed" not in page and "data:image/png" in page


def test_a_missing_recording_is_named_in_a_warning_and_its_points_keep_their_reconstruction(recorded, tmp_path):
    from lvm.tools.explore import build_explorer

    model, datamodule, table, wav = recorded
    name = str(datamodule.metadata["audio_filenames"][0])
    moved = tmp_path / name
    shutil.move(wav / name, moved)
    try:
        with pytest.warns(UserWarning, match=re.escape(name)):
            page = build_explorer(model, datamodule, table, max_images=len(table), per_side=3)
    finally:
        shutil.move(moved, wav / name)
    missing = int((datamodule.metadata["audio_filenames"] == name).sum())
    assert 0 < missing < len(table)
    assert len(OGG_URI.findall(page)) == (len(table) - missing) + len(table) + 9  # every reconstruction remains


@pytest.fixture(scope="module")
def chromium(chromium, tmp_path_factory):
    """Chromium that lets a page play sound without a user gesture: the test's clicks are synthetic events, which
    carry no user activation, while a person's click does (a wrapper script adding the flag to render_page's command)."""
    path = chromium  # conftest's: skipped without one
    wrapper = tmp_path_factory.mktemp("chromium") / "chromium"
    wrapper.write_text(f'#!/bin/sh\nexec "{path}" --autoplay-policy=no-user-gesture-required "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


AUDIO_MARK = "explorer audio:"
ENERGY_MARK = "explorer audio energy:"

# taps the point at (px, py), then the empty spot (cx, cy), each time recording the Audio element the page created; then
# decodes both clips with Web Audio and logs what it found
TAP_ACTION = """
  const target = view.canvas_view.events_el
  const box = target.getBoundingClientRect()
  const tap = (x, y) => {
    const clientX = box.left + view.frame.x_scale.compute(x), clientY = box.top + view.frame.y_scale.compute(y)
    for (const type of ["pointerdown", "pointerup"])
      target.dispatchEvent(new PointerEvent(type, {clientX, clientY, pointerType: "mouse", pointerId: 1, button: 0,
                                                  buttons: type == "pointerdown" ? 1 : 0, isPrimary: true,
                                                  bubbles: true, composed: true}))
  }
  const energy = async (uri) => {
    const context = new OfflineAudioContext(1, 48000, 48000)
    const buffer = await context.decodeAudioData(await (await fetch(uri)).arrayBuffer())
    const samples = buffer.getChannelData(0)
    return {rms: Math.sqrt(samples.reduce((sum, v) => sum + v * v, 0) / samples.length), length: samples.length}
  }
  const snapshot = () => {
    const element = window.explorer_audio?.element
    return element == null ? null : {src: element.src, paused: element.paused, rate: element.playbackRate,
                                      preservesPitch: element.preservesPitch}
  }
  // wait (up to 3 s) for what a tap starts, rather than a fixed delay: a loaded machine runs the handlers later
  const until = (done, then, waited = 0) => done() || waited >= 3000 ? then() : setTimeout(() => until(done, then,
                                                                                                   waited + 50), 50)
  const report = {}
  document.get_model_by_name("playback-speed").value = "x0.1"  // time expansion: a tenth of the speed
  tap(%(px)r, %(py)r)
  until(() => snapshot()?.src, () => {
    report.point = snapshot()
    // a second tap within Bokeh's double-tap interval would be a double tap, which plays nothing: wait it out
    setTimeout(() => {
      tap(%(cx)r, %(cy)r)
      until(() => snapshot()?.src && snapshot().src != report.point?.src, () => {
        report.cell = snapshot()
        console.log("%(mark)s " + JSON.stringify(report))
        Promise.all([energy(report.point.src), energy(report.cell.src)])
          .then(([point, cell]) => console.log("%(energy_mark)s " + JSON.stringify({point, cell})))
          .catch((error) => console.log("%(energy_mark)s " + JSON.stringify({error: String(error)})))
      })
    }, 800)
  })
"""


def test_a_click_plays_a_points_clip_and_a_grid_cell_plays_a_different_one(audio_page, recorded, chromium):
    from lvm.tools.explore import hover_images

    _, datamodule, table, _ = recorded
    _, rows = hover_images(datamodule, table, 12, flip=True)  # the points with pictures and sound, as the page chose
    point = table.iloc[rows[0]][["z1", "z2"]].to_numpy(dtype=float)
    empty = _empty_spot(table[["z1", "z2"]].to_numpy(dtype=float))
    script = when_rendered("projection z1-z2", TAP_ACTION % dict(
        px=float(point[0]), py=float(point[1]), cx=float(empty[0]), cy=float(empty[1]), mark=AUDIO_MARK,
        energy_mark=ENERGY_MARK))
    rendered = render_page(audio_page, chromium=chromium, after_load_script=script, virtual_time_ms=10_000)
    assert rendered.errors == [] and rendered.warnings == [], (rendered.errors, rendered.warnings)
    reports = [m for m in rendered.console if m.startswith(AUDIO_MARK)]
    assert len(reports) == 1, rendered.console
    report = json.loads(reports[0][len(AUDIO_MARK):])
    point, cell = report["point"], report["cell"]
    # the point's clip is playing (the cell's click paused it since), time-expanded playback lowers the pitch
    assert point["src"].startswith("data:audio/ogg") and point["paused"] is False and point["preservesPitch"] is False
    assert cell["src"].startswith("data:audio/ogg") and cell["paused"] is False and cell["src"] != point["src"]
    assert point["rate"] == pytest.approx(0.1) and cell["rate"] == pytest.approx(0.1)  # recordings <= 48 kHz
    assert point["src"] in audio_page and cell["src"] in audio_page
    for clip in (point, cell):  # non-silent: decoded here, and by the browser's Web Audio where it reported in time
        samples, _ = soundfile.read(io.BytesIO(base64.b64decode(clip["src"].split(",", 1)[1])))
        assert np.sqrt(np.mean(samples ** 2)) > 0.01
    energies = [m for m in rendered.console if m.startswith(ENERGY_MARK)]
    if energies:
        energy = json.loads(energies[0][len(ENERGY_MARK):])
        assert "error" not in energy, energy
        assert energy["point"]["rms"] > 0.01 and energy["cell"]["rms"] > 0.01, energy


def _empty_spot(points: np.ndarray) -> np.ndarray:
    """A spot in the unit square farthest from every point (a 50 x 50 search), where a click hits a grid cell only."""
    axis = (np.arange(50) + 0.5) / 50
    candidates = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    distances = np.linalg.norm(candidates[:, None] - points[None], axis=-1).min(axis=1)
    return candidates[np.argmax(distances)]


@pytest.mark.parametrize("rate, tone, stored, speed", [(32_000, 3_000.0, 48_000, 1.0),
                                                      (250_000, 60_000.0, 48_000, 250_000 / 48_000)])
def test_clips_keep_their_pitch_at_the_speed_the_page_plays_them(rate, tone, stored, speed):
    """Opus stores 8-48 kHz: a 32 kHz clip is resampled (played at speed 1), an ultrasonic one (250 kHz, a mouse's
    60 kHz call) is stored sample for sample at 48 kHz and played back 250/48 times faster, so at the page's speed x1
    it sounds at its true pitch, and at x0.1 at a tenth of it (6 kHz: audible)."""
    import base64
    import io

    import soundfile

    from lvm.plotting.explorer import Sound, audio_data_uri

    t = np.arange(int(0.05 * rate)) / rate
    uri, got_speed = audio_data_uri(Sound(np.sin(2 * np.pi * tone * t), rate))
    assert uri.startswith("data:audio/ogg;codecs=opus;base64,") and got_speed == pytest.approx(speed)
    decoded, decoded_rate = soundfile.read(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert decoded_rate == stored
    spectrum = np.abs(np.fft.rfft(decoded * np.hanning(len(decoded))))
    peak = np.fft.rfftfreq(len(decoded), 1 / decoded_rate)[spectrum.argmax()]
    assert peak * got_speed == pytest.approx(tone, rel=0.02)  # played at `speed`, the stored pitch is the true one
    assert len(decoded) / decoded_rate / got_speed == pytest.approx(0.05, abs=0.01)  # and so is the duration
