"""Sequence statistics (lvm.analysis.sequences) against a known Markov chain: the transition matrix within sampling
error, geometric dwell times, the analytic entropy rate, and a permutation test that finds a real difference and
keeps its false-positive rate; boundaries between sequences; bad input; the transition graph."""

import json
import math

import numpy as np
import pytest
from matplotlib.patches import FancyArrowPatch

from lvm.analysis.sequences import (between_states_matrix, chain_entropy_rate, compare_transitions, dwell_runs,
                                    entropy_rate, sequence_statistics, split_sequences, stationary_distribution,
                                    transition_counts, transition_matrix, write_sequence_statistics)
from lvm.plotting.transitions import plot_transition_graph

CHAIN = np.array([[0.90, 0.07, 0.03],
                  [0.10, 0.80, 0.10],
                  [0.05, 0.15, 0.80]])
OTHER_CHAIN = np.array([[0.90, 0.03, 0.07],  # same dwell times, the between-state choices of 0 and 2 swapped
                        [0.10, 0.80, 0.10],
                        [0.15, 0.05, 0.80]])


def simulate(matrix, n_sequences, n_steps, rng):
    """``n_sequences`` runs ``[s, t]`` of the chain, each started from its stationary distribution."""
    cumulative = np.cumsum(matrix, axis=1)  # [K, K]
    cumulative[:, -1] = 1.0
    states = np.empty((n_sequences, n_steps), dtype=np.int64)
    states[:, 0] = rng.choice(len(matrix), size=n_sequences, p=stationary_distribution(matrix))
    for t in range(1, n_steps):
        u = rng.random(n_sequences)  # [s]
        states[:, t] = (u[:, None] > cumulative[states[:, t - 1]]).sum(axis=1)
    return states


@pytest.fixture(scope="module")
def draw():
    states = simulate(CHAIN, 20, 500, np.random.default_rng(0))  # [20, 500]
    return states.ravel(), np.repeat(np.arange(20), 500)


def test_transition_matrix_matches_the_generating_chain_within_sampling_error(draw):
    states, ids = draw
    counts = transition_counts(states, 3, ids)
    assert counts.sum() == 20 * 499  # 499 transitions per sequence: none across the 19 boundaries
    estimate = transition_matrix(states, 3, ids)
    np.testing.assert_allclose(estimate.sum(axis=1), 1.0)
    standard_error = np.sqrt(CHAIN * (1 - CHAIN) / counts.sum(axis=1, keepdims=True))  # binomial, per entry
    z = np.abs(estimate - CHAIN) / standard_error
    assert z.max() < 4.0, f"largest error {z.max():.2f} standard errors"
    between = transition_matrix(states, 3, ids, self_transitions=False)
    np.testing.assert_allclose(np.diag(between), 0.0)
    np.testing.assert_allclose(between.sum(axis=1), 1.0)
    np.testing.assert_allclose(between, between_states_matrix(estimate))
    off = CHAIN - np.diag(np.diag(CHAIN))
    np.testing.assert_allclose(between, off / off.sum(axis=1, keepdims=True), atol=0.08)


def test_dwell_times_are_geometric_with_the_chains_mean(draw):
    states, ids = draw
    runs = dwell_runs(states, 3, ids)
    assert runs.censored.sum() == 40  # the first and the last run of each of the 20 sequences
    assert np.all(runs.length[~runs.censored] >= 1) and runs.length.sum() == len(states)
    summary = sequence_statistics(states, 3, ids, time_step=0.01)["pooled"]["dwell_times"]
    for state, entry in enumerate(summary):
        lengths = runs.length[(runs.state == state) & ~runs.censored]
        assert entry["n_runs"] == len(lengths) and entry["mean_steps"] == pytest.approx(lengths.mean())
        assert entry["mean_seconds"] == pytest.approx(0.01 * lengths.mean())
        expected = 1.0 / (1.0 - CHAIN[state, state])
        assert abs(lengths.mean() - expected) < 4 * lengths.std() / math.sqrt(len(lengths))
        histogram = np.array(entry["histogram"])
        ones = histogram[0] / histogram.sum()  # Pr(L = 1) = 1 - P_ii for a geometric run length
        q = 1 - CHAIN[state, state]
        assert abs(ones - q) < 4 * math.sqrt(q * (1 - q) / histogram.sum())


def test_entropy_rate_matches_the_chains_analytic_rate(draw):
    states, ids = draw
    assert chain_entropy_rate(np.full((3, 3), 1 / 3)) == pytest.approx(math.log(3))
    assert chain_entropy_rate(np.roll(np.eye(3), 1, axis=1)) == pytest.approx(0.0)
    analytic = chain_entropy_rate(CHAIN)
    rate = entropy_rate(states, 3, ids)
    assert rate["bits"] == pytest.approx(rate["nats"] / math.log(2))
    # spread of -log P(x_t -> x_t+1) over the transitions: the standard error of their mean (steps taken as
    # independent; the tolerance of 5 such errors allows for their dependence)
    per_step = np.concatenate([-np.log(CHAIN[s[:-1], s[1:]]) for s in split_sequences(states, 3, ids)[0]])
    tolerance = 5 * per_step.std() / math.sqrt(len(per_step))
    assert abs(rate["nats"] - analytic) < tolerance, (rate["nats"], analytic, tolerance)


def test_permutation_test_finds_a_difference_between_two_chains():
    rng = np.random.default_rng(1)
    group_a = list(simulate(CHAIN, 10, 300, rng))
    group_b = list(simulate(OTHER_CHAIN, 10, 300, rng))
    # seed 1: seed 0 happens to draw the relabelling that swaps the two groups (the same statistic) among its 199
    result = compare_transitions(group_a, group_b, 3, n_permutations=199, seed=1)
    assert result["p_value"] < 0.01 and result["n_permutations"] == 199 and result["n_sequences"] == [10, 10]
    assert result["p_value"] == pytest.approx(1 / 200)
    again = compare_transitions(group_a, group_b, 3, n_permutations=199, seed=1)
    assert again == result  # seeded
    between = compare_transitions(group_a, group_b, 3, n_permutations=199, seed=1, self_transitions=False)
    assert between["p_value"] < 0.01


def test_permutation_test_false_positive_rate_between_draws_of_one_chain():
    rng = np.random.default_rng(2)
    repeats, alpha = 40, 0.05
    p_values = []
    for repeat in range(repeats):
        group_a, group_b = list(simulate(CHAIN, 8, 200, rng)), list(simulate(CHAIN, 8, 200, rng))
        p_values.append(compare_transitions(group_a, group_b, 3, n_permutations=99, seed=repeat)["p_value"])
    rate = float(np.mean(np.array(p_values) <= alpha))
    print(f"false-positive rate at alpha={alpha}: {rate:.3f} over {repeats} repeats")
    assert rate <= 0.15


def test_transitions_never_cross_sequence_boundaries():
    states = [0, 0, 1, 2, 2, 1]
    ids = ["a", "a", "a", "b", "b", "c"]
    expected = np.zeros((3, 3), dtype=int)
    expected[0, 0] = expected[0, 1] = expected[2, 2] = 1  # no 1 -> 2 (a to b) and no 2 -> 1 (b to c)
    np.testing.assert_array_equal(transition_counts(states, 3, ids), expected)
    assert transition_counts(states, 3).sum() == 5  # as one sequence every neighbouring pair counts
    matrix = transition_matrix(states, 3, ids)
    assert np.all(np.isnan(matrix[1]))  # state 1 is never left within a sequence
    runs = dwell_runs([0, 0, 1, 1, 1, 0, 2, 2], 3, [7, 7, 7, 7, 7, 7, 8, 8])
    np.testing.assert_array_equal(runs.length, [2, 3, 1, 2])  # the run of 2s does not join the sequence before
    np.testing.assert_array_equal(runs.censored, [True, False, True, True])


def test_statistics_per_sequence_and_pooled_are_written_as_json(tmp_path):
    states, ids = [0, 0, 1, 1, 0, 2, 2, 2], ["x"] * 5 + ["y"] * 3
    statistics = sequence_statistics(states, 3, ids, time_step=0.5)
    assert [s["id"] for s in statistics["sequences"]] == ["x", "y"]
    assert statistics["pooled"]["n_transitions"] == 4 + 2
    assert set(statistics["definitions"]) >= {"transition_matrix", "between_states_matrix", "dwell_times"}
    assert statistics["sequences"][1]["entropy_rate"]["nats"] == 0.0  # 2 -> 2 -> 2
    comparison = compare_transitions([np.array(states[:5])], [np.array(states[5:])], 3, n_permutations=9)
    path = write_sequence_statistics(tmp_path / "sequences.json", statistics, comparison)
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    document = json.loads(text)
    assert document["statistics"]["sequences"][1]["transition_matrix"][0] == [None, None, None]  # never left
    assert document["comparison"]["n_permutations"] == 9


@pytest.mark.parametrize("call, message", [
    (lambda: transition_counts([0, -1, 2], 3), "negative"),
    (lambda: transition_counts([0, 1, 3], 3), "must be < n_states = 3"),
    (lambda: transition_counts([0, 1.5], 3), "whole numbers"),
    (lambda: transition_counts([0, 1, 2], 3, [0, 0]), "one entry per step"),
    (lambda: transition_counts([0, 1, 2], 3, [0, 1, 0]), "separate blocks"),
    (lambda: transition_counts([0, 1], 0), "n_states must be a positive integer"),
    (lambda: transition_counts([0, 1], 2, [0.0, float("nan")]), "sequence_ids contain NaN"),
    (lambda: transition_counts([True, False], 2), "must be integers"),
    (lambda: compare_transitions([], [np.array([0, 1])], 2), "group_a has no sequences"),
    (lambda: compare_transitions([np.array([0, 1])], [], 2), "group_b has no sequences"),
    (lambda: compare_transitions([np.array([0, 5])], [np.array([0])], 2), "group_a sequence 0"),
    (lambda: dwell_runs([[0, 1]], 2), "must be 1-D"),
])
def test_bad_input_is_one_line(call, message):
    with pytest.raises(ValueError, match=message) as error:
        call()
    assert "\n" not in str(error.value)


def test_transition_graph_figure(tmp_path):
    figure = plot_transition_graph(CHAIN, state_names=["A", "B", "C"], title="3-state chain")
    ax = figure.axes[0]
    assert ax.get_title() == "3-state chain"
    arrows = [patch for patch in ax.patches if isinstance(patch, FancyArrowPatch)]
    assert len(arrows) == 6  # every off-diagonal entry is >= 0.02
    assert len(ax.collections[0].get_offsets()) == 3  # the nodes
    assert len(figure.axes) == 2  # with its colour bar
    figure.savefig(tmp_path / "graph.png")
    assert (tmp_path / "graph.png").stat().st_size > 0
    placed = plot_transition_graph(CHAIN, positions=[[0.1, 0.2], [0.5, 0.9], [0.8, 0.3]], min_probability=0.05)
    ax = placed.axes[0]
    assert ax.get_ylabel() == "z2" and ax.get_xlabel().startswith("z1")
    assert len([p for p in ax.patches if isinstance(p, FancyArrowPatch)]) == 5  # all but the 0.03
    placed.savefig(tmp_path / "placed.png")


def test_the_transition_graph_keeps_its_title_caption_and_colour_bar_inside_the_figure():
    """Regression: the export's graph (a long title, the two-line caption under the axis) was drawn past the figure's
    edges and clipped in the PNG ("ansitions between the 3 modes ...")."""
    for positions in (None, [[0.6, 0.15], [0.45, 0.7], [0.05, 0.3]]):
        figure = plot_transition_graph(CHAIN, positions=positions, state_names=["mode 1", "mode 2", "mode 3"],
                                       title="Transitions between the 3 modes (pooled over 12 sequences)")
        renderer = figure.canvas.get_renderer()
        figure.draw(renderer)
        page = figure.bbox
        axes, bar = figure.axes
        for artist in (axes.title, axes.xaxis.label, bar.yaxis.label):
            box = artist.get_window_extent(renderer)
            assert page.x0 - 1 <= box.x0 and box.x1 <= page.x1 + 1 and page.y0 - 1 <= box.y0 and box.y1 <= page.y1 + 1, \
                (artist.get_text(), box, page)
