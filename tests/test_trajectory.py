"""The per-frame export (lvm.tools.trajectory) against a known answer: windows of 12 recordings whose hidden states
follow a known 3-state Markov chain, each window a prototype pattern of its state plus noise; a 2-D QMC model trained
briefly through the CLI. The exported clusters recover the chain (transition matrix within sampling error, dwell
times), the table has its columns, rows and provenance, the figures are written, the explorer's sequence selector and
time slider work in headless Chromium, and data without sequence/time metadata is refused in one line."""

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lvm.analysis.sequences import dwell_runs, stationary_distribution
from lvm.analysis.provenance import read_embedding
from browser import render_page, when_rendered

ROOT = Path(__file__).resolve().parents[1]
CHAIN = np.array([[0.90, 0.07, 0.03],
                  [0.10, 0.80, 0.10],
                  [0.05, 0.15, 0.80]])
SEQUENCES, WINDOWS, FEATURES, HOP = 12, 150, 16, 0.02  # windows of HOP seconds' spacing
FAST = ["--trainer.max_epochs", "10", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--model.eval_num_points", "610",
        "--model.objective.init_args.num_points", "233", "--trainer.callbacks", "[]",
        "--model.likelihood.init_args.variance", "0.1", "--model.likelihood.init_args.learn_variance", "none"]
BANDWIDTH = "0.2"  # the posteriors of one prototype's windows form one blob of about this radius


def markov_states(rng) -> np.ndarray:
    """``[SEQUENCES, WINDOWS]`` states of the chain, each sequence started from its stationary distribution."""
    cumulative = np.cumsum(CHAIN, axis=1)
    cumulative[:, -1] = 1.0
    states = np.empty((SEQUENCES, WINDOWS), dtype=np.int64)
    states[:, 0] = rng.choice(3, size=SEQUENCES, p=stationary_distribution(CHAIN))
    for t in range(1, WINDOWS):
        states[:, t] = (rng.random(SEQUENCES)[:, None] > cumulative[states[:, t - 1]]).sum(axis=1)
    return states


@pytest.fixture(scope="module")
def windows(tmp_path_factory):
    """The windows (``x.npy``, three prototypes 3 standard deviations apart per feature, noise 0.5) and their
    metadata table (``sequence``, ``time``, the true ``state``), and a model trained on them."""
    from lvm.runs.cli import cli_main

    folder = tmp_path_factory.mktemp("trajectory")
    rng = np.random.default_rng(0)
    states = markov_states(rng)
    prototypes = 3.0 * rng.normal(size=(3, FEATURES))
    x = prototypes[states.ravel()] + 0.5 * rng.normal(size=(SEQUENCES * WINDOWS, FEATURES))
    np.save(folder / "x.npy", x.astype(np.float32))
    pd.DataFrame({"sequence": np.repeat([f"rec{i:02d}" for i in range(SEQUENCES)], WINDOWS),
                  "time": np.tile(np.arange(WINDOWS) * HOP, SEQUENCES),
                  "state": states.ravel(),  # and two groups of recordings, for --compare (one chain: no difference)
                  "bird": np.repeat(["b1", "b2"], SEQUENCES * WINDOWS // 2)}).to_csv(folder / "meta.csv", index=False)
    np.save(folder / "plain.npy", x[:300].astype(np.float32))
    cli_main(["--config", str(ROOT / "configs" / "qlvm_array.yaml"), "--trainer.default_root_dir",
              str(folder / "run"), *FAST, "--data.init_args.path", str(folder / "x.npy"),
              "--data.init_args.metadata", str(folder / "meta.csv")])
    (ckpt,) = (folder / "run").rglob("last.ckpt")
    return folder, ckpt, states


@pytest.fixture(scope="module")
def export(windows):
    from lvm.tools import trajectory

    folder, ckpt, _ = windows
    out = folder / "out" / "traj.parquet"
    trajectory.main(["--ckpt", str(ckpt), "--out", str(out), "--bandwidth", BANDWIDTH, "--max_figures", "3",
                     "--compare", "bird", "--permutations", "99"])
    table, record = read_embedding(out)
    document = json.loads(trajectory.output_paths(out)["statistics"].read_text())
    return out, table, record, {**document["statistics"], "comparison": document["comparison"]}


def majority_map(table: pd.DataFrame) -> np.ndarray:
    """The generating state of each exported cluster ``[K]``: its windows' most frequent true state."""
    counts = pd.crosstab(table["cluster"], table["state"]).reindex(columns=range(3), fill_value=0)
    return counts.to_numpy().argmax(axis=1)


def test_the_clusters_recover_the_generating_chain(export):
    _, table, _, statistics = export
    n_modes = statistics["n_states"]
    state_of = majority_map(table)
    assert sorted(set(state_of)) == [0, 1, 2]  # every state is some cluster's majority
    assert np.mean(state_of[table["cluster"]] == table["state"]) > 0.98  # clusters do not mix states
    # the exported counts [K, K] summed over the clusters of each state: the transitions between states
    assignment = np.eye(3)[state_of]  # [K, 3]
    counts = assignment.T @ np.array(statistics["pooled"]["transition_counts"]) @ assignment  # [3, 3]
    assert counts.sum() == SEQUENCES * (WINDOWS - 1)  # none across the 11 boundaries between recordings
    estimate = counts / counts.sum(axis=1, keepdims=True)
    standard_error = np.sqrt(CHAIN * (1 - CHAIN) / counts.sum(axis=1, keepdims=True))
    assert np.max(np.abs(estimate - CHAIN) / standard_error) < 4.0, estimate
    if n_modes == 3:  # one cluster per state: the export's own matrix, permuted
        order = np.argsort(state_of)
        exported = np.array(statistics["pooled"]["transition_matrix"])[np.ix_(order, order)]
        np.testing.assert_allclose(exported, estimate, atol=1e-12)
    # dwell times: the runs of the clusters (mapped to states) are those of the true states, with the chain's mean
    sequences = table["sequence"].to_numpy()
    recovered = dwell_runs(state_of[table["cluster"].to_numpy()], 3, sequences)
    true = dwell_runs(table["state"].to_numpy(), 3, sequences)
    assert statistics["time_step"] == pytest.approx(HOP)
    for state in range(3):
        mine, theirs = [runs.length[(runs.state == state) & ~runs.censored] for runs in (recovered, true)]
        assert abs(mine.mean() - theirs.mean()) < 0.05 * theirs.mean()
        expected = 1.0 / (1.0 - CHAIN[state, state])
        assert abs(mine.mean() - expected) < 4 * mine.std() / math.sqrt(len(mine))
    pooled_dwell = statistics["pooled"]["dwell_times"]
    assert all(entry["mean_seconds"] == pytest.approx(HOP * entry["mean_steps"]) for entry in pooled_dwell
               if entry["n_runs"])
    assert len(statistics["sequences"]) == SEQUENCES and statistics["time_unit"] == "s"


def test_the_table_has_one_row_per_window_in_time_order_with_provenance(export, windows):
    out, table, record, statistics = export
    assert len(table) == SEQUENCES * WINDOWS and table["example"].nunique() == len(table)
    assert list(table.columns[:2]) == ["sequence", "time"]
    for column in ("z1", "z2", "spread1", "spread2", "cluster", "cluster_probability", "split"):
        assert column in table
    for _, rows in table.groupby("sequence", sort=False):
        np.testing.assert_allclose(rows["time"].to_numpy(), np.arange(WINDOWS) * HOP)  # sorted by time
    assert list(dict.fromkeys(table["sequence"])) == sorted(set(table["sequence"]))  # contiguous, sorted by id
    probability = table["cluster_probability"].to_numpy()
    assert np.all((probability >= 0) & (probability <= 1 + 1e-9)) and np.median(probability) > 0.5
    assert np.all((table["cluster"] >= 0) & (table["cluster"] < statistics["n_states"]))
    assert record["checkpoint"] == str(windows[1].resolve()) and len(record["checkpoint_sha256"]) == 64
    assert set(record["data_sha256"]) == {"train", "val", "test"} and record["settings"]["bandwidth"] == 0.2
    assert np.array(record["trajectory"]["modes"]).shape == (statistics["n_states"], 2)
    assert Path(str(out) + ".provenance.json").is_file()


def test_the_export_compares_two_groups_of_recordings(export):
    comparison = export[3]["comparison"]
    assert comparison["field"] == "bird" and comparison["groups"] == ["b1", "b2"]
    assert comparison["n_sequences"] == [SEQUENCES // 2, SEQUENCES // 2] and comparison["n_permutations"] == 99
    assert 0 < comparison["p_value"] <= 1


def test_the_figures_are_written(export):
    from lvm.tools import trajectory

    out = export[0]
    paths = trajectory.output_paths(out)
    figures = sorted(paths["figures"].glob("*.png"))
    assert [figure.name for figure in figures] == ["rec00.png", "rec01.png", "rec02.png"]  # --max_figures 3
    assert all(path.stat().st_size > 20_000 for path in [*figures, paths["graph"]])


def test_the_trajectory_figure_labels_time_and_axes():
    from lvm.plotting.trajectories import plot_trajectory

    t = np.arange(40) * 0.01
    z = np.stack([0.5 + 0.3 * np.cos(t * 20), (0.1 + t * 2.4) % 1.0], axis=1)  # wraps round z2 once
    points = np.random.default_rng(0).random((200, 2))
    figure = plot_trajectory(z, t, periodic=True, points=points, density=np.full(200, 1 / 200),
                             modes=np.array([[0.5, 0.5]]), time_unit="s", title="Sequence a")
    ax = figure.axes[0]
    assert ax.get_xlabel().startswith("z1") and ax.get_ylabel().startswith("z2")
    labels = [axis.get_ylabel() for axis in figure.axes[1:]]  # the colour bars
    assert any("time" in label and "(s)" in label for label in labels) and any("aggregated" in l for l in labels)
    assert {text.get_text().split(" (")[0] for text in ax.get_legend().get_texts()} == {
        "start", "end", "mean-shift modes"}
    (lines,) = ax.collections[1:2]
    assert len(lines.get_segments()) == 38  # 39 steps, the one across the edge left out


MARKER_MARK = "trajectory marker:"


def test_the_explorer_draws_a_sequence_and_its_slider_moves_the_marker(windows, chromium, tmp_path):
    from lvm.tools import explore

    _, ckpt, _ = windows
    out = tmp_path / "explorer.html"
    explore.main(["--ckpt", str(ckpt), "--out", str(out), "--per_side", "6", "--max_images", "2000",
                  "--log_likelihood", "false"])
    page = out.read_text()
    assert "first 12" not in page and "all 12 sequences" in page  # the page says how many it offers
    script = when_rendered("projection z1-z2", """
  const doc = Bokeh.documents[0]
  const marker = doc.get_model_by_name("trajectory-marker z1-z2"), path = doc.get_model_by_name("trajectory-path z1-z2")
  const report = (what) => console.log("%s " + JSON.stringify({what, x: marker.data.x[0], y: marker.data.y[0],
      points: path.data.x.filter(Number.isFinite).length,
      window: doc.get_model_by_name("sequence-window").text.replace(/<img[^>]*>/g, "IMG")}))
  report("start")
  doc.get_model_by_name("time-slider").value = 1.5  // (CustomJS callbacks run asynchronously)
  setTimeout(() => {
    report("slid")
    doc.get_model_by_name("sequence-selector").value = "rec03"
    setTimeout(() => report("rec03"), 500)
  }, 500)""" % MARKER_MARK)
    rendered = render_page(page, chromium=chromium, after_load_script=script)
    assert rendered.errors == [] and rendered.warnings == [], rendered.console
    reports = {entry["what"]: entry for entry in (json.loads(message[len(MARKER_MARK):])
                                                  for message in rendered.console if message.startswith(MARKER_MARK))}
    assert reports["start"]["points"] == WINDOWS  # rec00's path: every window
    assert (reports["start"]["x"], reports["start"]["y"]) != (reports["slid"]["x"], reports["slid"]["y"])
    assert "time 1.5 s, window 76 of 150" in reports["slid"]["window"] and "IMG" in reports["slid"]["window"]
    assert reports["rec03"]["window"].startswith("IMG") and "sequence rec03, time 0 s" in reports["rec03"]["window"]


def test_an_explorer_of_data_without_sequences_has_no_selector():
    from lvm.plotting.explorer import explorer_html
    from lvm.tools.explore import sequence_paths

    table = pd.DataFrame({"z1": [0.1, 0.5], "z2": [0.2, 0.6], "split": ["train", "test"]})
    assert sequence_paths(table) is None
    assert "sequence-selector" not in explorer_html(table, ["z1", "z2"], periodic=True)
    many = pd.DataFrame({"sequence": np.repeat([f"s{i:03d}" for i in range(50)], 4), "time": np.tile(np.arange(4.), 50)})
    paths = sequence_paths(many, max_sequences=30, max_windows=100)
    assert paths.total == 50 and paths.names == [f"s{i:03d}" for i in range(25)]  # 25 x 4 windows: the cap


def test_data_without_sequence_or_time_is_refused_in_one_line_and_nothing_is_written(windows, tmp_path):
    folder, ckpt, _ = windows
    out = tmp_path / "traj.parquet"
    result = subprocess.run([sys.executable, "-m", "lvm.tools.trajectory", "--ckpt", str(ckpt), "--out", str(out),
                             "--data.init_args.path", str(folder / "plain.npy"), "--data.init_args.metadata", "null"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert re.search(r"no per-example field\(s\) 'sequence', 'time'", line)
    assert "sequence_key" in line and "shotgun" in line
    assert list(tmp_path.iterdir()) == []


def _chain_table(matrices: dict, sequences_per_group: int = 8, steps: int = 200, seed: int = 0) -> pd.DataFrame:
    """Cluster sequences drawn from one Markov chain per group (``{group: P}``), as an export's table."""
    rng = np.random.default_rng(seed)
    rows = []
    for group, matrix in matrices.items():
        for k in range(sequences_per_group):
            state, states = 0, []
            for _ in range(steps):
                states.append(state)
                state = rng.choice(3, p=matrix[state])
            rows.append(pd.DataFrame({"sequence": f"{group}-{k}", "time": np.arange(steps) * 0.05, "bird": group,
                                      "cluster": states}))
    return pd.concat(rows, ignore_index=True)


def test_comparing_groups_of_sequences_finds_a_difference_only_where_the_chains_differ():
    from lvm.analysis.trajectory import compare_groups
    sticky = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    other = np.array([[0.9, 0.09, 0.01], [0.1, 0.8, 0.1], [0.01, 0.19, 0.8]])  # other between-state choices
    differ = compare_groups(_chain_table({"bird1": sticky, "bird2": other}), "bird", 3, n_permutations=199)
    assert differ["groups"] == ["bird1", "bird2"] and differ["p_value"] <= 0.01
    same = compare_groups(_chain_table({"bird1": sticky, "bird2": sticky}, seed=1), "bird", 3, n_permutations=199)
    assert same["p_value"] > 0.05
    table = _chain_table({"a": sticky, "b": sticky, "c": sticky}, sequences_per_group=2, steps=20)
    with pytest.raises(ValueError, match="has 3 values"):
        compare_groups(table, "bird", 3)
    assert compare_groups(table, "bird", 3, ("a", "c"), n_permutations=9)["groups"] == ["a", "c"]
    with pytest.raises(ValueError, match="not a column"):
        compare_groups(table, "species", 3)
    table.loc[3, "bird"] = "b"
    with pytest.raises(ValueError, match="changes within sequence 'a-0'"):
        compare_groups(table, "bird", 3)
