"""Recordings as sequences of discrete states (e.g. the nearest mean-shift mode of each window): transition
matrices, dwell times, the entropy rate, and a permutation test between two groups of sequences.

Functions of integer arrays, no model. ``states [n]`` holds one state in ``0..n_states-1`` per step;
``sequence_ids [n]`` (optional; one sequence when left out) names the sequence of each step. The rows of one sequence
are contiguous and in time order: an id that reappears after another id is an error, since counting a transition
across the gap would join two recordings.

Definitions (a first-order Markov chain over states ``i, j``; Norris, "Markov Chains", 1997):

* transition counts ``N_ij``: the number of steps ``t`` with ``x_t = i`` and ``x_{t+1} = j`` *within one sequence*;
  the last step of a sequence has no successor and the first step of the next sequence no predecessor;
* transition matrix ``P_ij = N_ij / sum_j N_ij`` (row-stochastic; maximum-likelihood estimate), self-transitions
  ``P_ii`` included. A state never left (no outgoing transition) has a row of NaN (JSON ``null``): nothing is known;
* the *between-states* matrix ``Q_ij = N_ij / sum_{k != i} N_ik`` for ``j != i``, ``Q_ii = 0``: where the chain goes
  when it changes state, as keypoint-MoSeq (Weinreb et al., "Keypoint-MoSeq: parsing behavior by linking point tracking
  to pose dynamics", 2024) and B-SOiD (Hsu & Yttri, "B-SOiD, an open-source unsupervised algorithm for identification
  and fast prediction of behaviors", 2021) draw their transition graphs; how long it stays is in the dwell times;
* dwell times: the lengths of the runs of equal states, in steps (and ``steps * time_step`` seconds). For a Markov chain
  a run in ``i`` is geometric, ``Pr(L = l) = P_ii^(l-1) (1 - P_ii)``, with mean ``1 / (1 - P_ii)``. A run touching a
  sequence's first or last step is *censored* (its true length is unknown, at least what is seen): it is counted and
  flagged but left out of the mean, median and histogram. Leaving them out biases the mean slightly down for runs
  comparable to the sequence length (long runs are cut more often); with runs much shorter than the sequences the
  bias is negligible;
* entropy rate ``H = -sum_i pi_i sum_j P_ij log P_ij`` (Cover & Thomas, "Elements of Information Theory", 2006,
  theorem 4.2.4), in nats and bits. ``pi_i`` is the *empirical occupancy of the origin states*, ``pi_i = N_i. / N``:
  then ``H = -sum_ij (N_ij / N) log(N_ij / N_i.)`` is the plug-in conditional entropy ``H(x_{t+1} | x_t)``. Chosen
  over the stationary distribution of ``P`` because it exists for every data set (a reducible ``P``, from recordings
  that never reach some states, has no unique stationary distribution) and for an ergodic chain it converges to the
  stationary distribution, so ``H`` converges to the chain's entropy rate (:func:`chain_entropy_rate`, which uses the
  stationary distribution, is the analytic value the tests compare with). Its bias is about ``-(K^2 - K) / (2 N)``
  nats (Miller, "Note on the bias of information estimates", 1955), negligible for thousands of transitions.

The group comparison (:func:`compare_transitions`) tests "both groups of sequences come from one transition
matrix" with the statistic ``T = sum_i w_i TV(P^A_i, P^B_i)``, ``TV(p, q) = 1/2 sum_j |p_j - q_j|`` the total-variation
distance of the two groups' rows and ``w_i = (N^A_i. + N^B_i.) / (N^A + N^B)`` the pooled occupancy of state ``i``
(the same for every relabelling, so only the rows change); rows that one group never leaves contribute 0. Its null
distribution comes from relabelling whole *sequences* between the groups (group sizes kept): steps within a sequence
are dependent, so shuffling single transitions would break that dependence, make the null too narrow and give too
many false positives; sequences are the exchangeable units. ``p = (1 + #{T_perm >= T_obs}) / (1 + n_perm)`` (Phipson &
Smyth, "Permutation p-values should never be zero", 2010).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["split_sequences", "transition_counts", "transition_matrix", "between_states_matrix",
           "stationary_distribution", "chain_entropy_rate", "entropy_rate", "Runs", "dwell_runs",
           "dwell_time_summary", "sequence_statistics", "compare_transitions", "write_sequence_statistics"]

NATS_PER_BIT = math.log(2.0)
DEFINITIONS = {  # written beside the numbers, so that a JSON file says what they are
    "transition_matrix": "P_ij = N_ij / N_i.: row-stochastic, self-transitions included, transitions within a "
                         "sequence only; null row: a state never left",
    "between_states_matrix": "P with the diagonal removed and each row renormalised over the other states",
    "dwell_times": "run lengths of equal states (steps; seconds = steps * time_step); runs touching a sequence's "
                   "first or last step are censored: counted in n_censored, excluded from mean, median, histogram "
                   "(histogram[l-1] = number of runs of length l)",
    "expected_dwell_steps": "1 / (1 - P_ii), the mean of the geometric run length of a Markov chain",
    "entropy_rate": "-sum_i pi_i sum_j P_ij log P_ij with pi_i = N_i. / N the empirical occupancy of origin states "
                    "(plug-in conditional entropy), per step, in nats and bits",
}
TIE_TOLERANCE = 1e-12  # permuted statistics within this (relative) of the observed one count as >= it


def _check_n_states(n_states) -> int:
    if isinstance(n_states, bool) or not isinstance(n_states, (int, np.integer)) or n_states < 1:
        raise ValueError(f"n_states must be a positive integer, got {n_states!r}.")
    return int(n_states)


def _states_array(states, n_states: int, name: str = "states") -> np.ndarray:
    """``states`` as a 1-D int64 array ``[n]``, each in ``0..n_states-1``."""
    values = np.asarray(states)
    if values.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one state per step), got shape {values.shape}.")
    if values.size == 0:
        return values.astype(np.int64)
    if not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
        raise ValueError(f"{name} must be integers (state indices), got dtype {values.dtype}.")
    whole = np.all(np.isfinite(values)) and np.all(values == np.round(values))
    if np.issubdtype(values.dtype, np.floating) and not whole:
        raise ValueError(f"{name} must be whole numbers (state indices); found NaN, inf or fractions.")
    if values.min() < 0:
        raise ValueError(f"{name} must be >= 0; found {values.min()} (negative state index).")
    if values.max() >= n_states:
        raise ValueError(f"{name} must be < n_states = {n_states}; found state {values.max()}.")
    return values.astype(np.int64)


def split_sequences(states, n_states: int, sequence_ids=None) -> tuple[list[np.ndarray], list]:
    """The sequences of ``states [n]`` as a list of int64 arrays, and their ids (in order of first appearance).
    Rows of one id must be contiguous; without ``sequence_ids`` all rows are one sequence (id 0)."""
    n_states = _check_n_states(n_states)
    values = _states_array(states, n_states)
    if sequence_ids is None:
        return [values], [0]
    ids = np.asarray(sequence_ids)
    if ids.ndim != 1 or len(ids) != len(values):
        raise ValueError(f"sequence_ids must have one entry per step: {ids.shape} ids for {len(values)} states.")
    if len(values) == 0:
        return [], []
    if np.issubdtype(ids.dtype, np.floating) and np.isnan(ids).any():
        raise ValueError("sequence_ids contain NaN; give every step the id of its sequence.")
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])  # [s] first row of each block
    block_ids = ids[starts]
    if len(set(block_ids.tolist())) != len(block_ids):
        _, counts = np.unique(block_ids, return_counts=True)
        repeated = np.unique(block_ids)[counts > 1][0]
        raise ValueError(f"sequence id {repeated!r} appears in separate blocks of rows; sort the rows by sequence "
                         f"and time so that each sequence is contiguous.")
    return np.split(values, starts[1:]), block_ids.tolist()


def _as_sequences(states, n_states: int, sequence_ids=None) -> list[np.ndarray]:
    return split_sequences(states, n_states, sequence_ids)[0]


def _counts_of(sequences: list[np.ndarray], n_states: int) -> np.ndarray:
    """Transition counts ``[K, K]`` summed over ``sequences`` (pairs within each sequence only)."""
    counts = np.zeros((n_states, n_states), dtype=np.int64)
    for sequence in sequences:
        np.add.at(counts, (sequence[:-1], sequence[1:]), 1)
    return counts


def transition_counts(states, n_states: int, sequence_ids=None) -> np.ndarray:
    """``N_ij [K, K]``: how often state ``i`` is followed by ``j`` within a sequence (never across a boundary
    between two sequences)."""
    return _counts_of(_as_sequences(states, n_states, sequence_ids), n_states)


def _normalise_rows(counts: np.ndarray) -> np.ndarray:
    """Rows of ``counts [K, K]`` divided by their sums; a row summing to 0 is NaN."""
    totals = counts.sum(axis=1, keepdims=True)  # [K, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, counts / np.where(totals > 0, totals, 1), np.nan)


def _without_diagonal(counts: np.ndarray) -> np.ndarray:
    off = counts.astype(float).copy()
    np.fill_diagonal(off, 0.0)
    return off


def transition_matrix(states, n_states: int, sequence_ids=None, self_transitions: bool = True) -> np.ndarray:
    """The row-stochastic transition matrix ``[K, K]`` (module docstring): ``P`` with self-transitions
    (``self_transitions=True``) or the between-states matrix ``Q`` (diagonal 0, rows renormalised over the other
    states). Rows of states never left are NaN."""
    counts = transition_counts(states, n_states, sequence_ids)
    return _normalise_rows(counts if self_transitions else _without_diagonal(counts))


def between_states_matrix(matrix) -> np.ndarray:
    """``Q`` from a transition matrix ``P [K, K]``: the diagonal removed and each row renormalised (NaN where a row
    has no off-diagonal mass)."""
    return _normalise_rows(_without_diagonal(np.asarray(matrix, dtype=float)))


def stationary_distribution(matrix) -> np.ndarray:
    """The stationary distribution ``pi [K]`` (``pi P = pi``, ``sum pi = 1``) of an irreducible transition matrix
    ``P [K, K]``, from the left eigenvector of eigenvalue 1."""
    p = np.asarray(matrix, dtype=float)
    if p.ndim != 2 or p.shape[0] != p.shape[1] or not np.allclose(p.sum(axis=1), 1.0):
        raise ValueError(f"a transition matrix must be square and row-stochastic; got shape {p.shape}.")
    values, vectors = np.linalg.eig(p.T)
    vector = np.real(vectors[:, np.argmin(np.abs(values - 1.0))])
    return vector / vector.sum()


def _row_entropies(matrix: np.ndarray) -> np.ndarray:
    """``-sum_j P_ij log P_ij`` per row ``[K]`` in nats (``0 log 0 = 0``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(matrix > 0, -matrix * np.log(np.where(matrix > 0, matrix, 1.0)), 0.0)
    return terms.sum(axis=1)


def chain_entropy_rate(matrix) -> float:
    """The entropy rate (nats per step) of the stationary Markov chain with transition matrix ``P [K, K]``:
    ``-sum_i pi_i sum_j P_ij log P_ij`` with ``pi`` its stationary distribution."""
    p = np.asarray(matrix, dtype=float)
    return float(stationary_distribution(p) @ _row_entropies(p))


def _entropy_rate_of_counts(counts: np.ndarray) -> float:
    total = counts.sum()
    if total == 0:
        return math.nan
    occupancy = counts.sum(axis=1) / total  # [K] origin-state occupancy
    return float(occupancy @ _row_entropies(np.nan_to_num(_normalise_rows(counts))))


def entropy_rate(states, n_states: int, sequence_ids=None) -> dict[str, float]:
    """The plug-in entropy rate of ``states`` (module docstring: ``pi`` = empirical occupancy of origin states), as
    ``{"nats": H, "bits": H / log 2}`` per step; NaN without any transition."""
    nats = _entropy_rate_of_counts(transition_counts(states, n_states, sequence_ids))
    return {"nats": nats, "bits": nats / NATS_PER_BIT}


@dataclass
class Runs:
    """The runs of equal states of a set of sequences, one entry per run ``[r]``: its ``state``, ``length`` in steps,
    ``sequence`` (position in the list of sequences), ``start`` (step within the sequence) and ``censored`` (the run
    touches the sequence's first or last step, so its true length may be longer)."""

    state: np.ndarray
    length: np.ndarray
    sequence: np.ndarray
    start: np.ndarray
    censored: np.ndarray


def _runs_of(sequences: list[np.ndarray]) -> Runs:
    parts = []
    for index, sequence in enumerate(sequences):
        if len(sequence) == 0:
            continue
        starts = np.flatnonzero(np.r_[True, sequence[1:] != sequence[:-1]])  # [r]
        lengths = np.diff(np.r_[starts, len(sequence)])  # [r]
        censored = (starts == 0) | (starts + lengths == len(sequence))
        parts.append((sequence[starts], lengths, np.full(len(starts), index), starts, censored))
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return Runs(empty, empty, empty, empty, np.zeros(0, dtype=bool))
    return Runs(*(np.concatenate(column) for column in zip(*parts)))


def dwell_runs(states, n_states: int, sequence_ids=None) -> Runs:
    """Every run of equal states in each sequence (runs never continue across sequences), censored ones flagged."""
    return _runs_of(_as_sequences(states, n_states, sequence_ids))


def dwell_time_summary(runs: Runs, n_states: int, time_step: float | None = None) -> list[dict]:
    """Per state ``[K]``: ``n_runs`` (uncensored), ``n_censored``, ``mean_steps``, ``median_steps`` and
    ``histogram`` (``histogram[l - 1]`` = number of uncensored runs of length ``l``), all over uncensored runs only
    (NaN mean/median without any); with ``time_step`` (seconds per step) also ``mean_seconds`` and
    ``median_seconds``."""
    n_states = _check_n_states(n_states)
    if time_step is not None and not (math.isfinite(time_step) and time_step > 0):
        raise ValueError(f"time_step must be a positive number of seconds, got {time_step!r}.")
    summary = []
    for state in range(n_states):
        mine = runs.state == state
        lengths = runs.length[mine & ~runs.censored]
        entry = {"state": state, "n_runs": int(len(lengths)), "n_censored": int(np.sum(mine & runs.censored)),
                 "mean_steps": float(lengths.mean()) if len(lengths) else math.nan,
                 "median_steps": float(np.median(lengths)) if len(lengths) else math.nan,
                 "histogram": np.bincount(lengths, minlength=1)[1:].tolist() if len(lengths) else []}
        if time_step is not None:
            entry["mean_seconds"] = entry["mean_steps"] * time_step
            entry["median_seconds"] = entry["median_steps"] * time_step
        summary.append(entry)
    return summary


def _statistics_of(sequences: list[np.ndarray], n_states: int, time_step: float | None) -> dict:
    counts = _counts_of(sequences, n_states)
    matrix = _normalise_rows(counts)
    nats = _entropy_rate_of_counts(counts)
    occupancy = np.bincount(np.concatenate(sequences), minlength=n_states) if sequences else np.zeros(n_states)
    steps = int(sum(len(s) for s in sequences))
    with np.errstate(divide="ignore"):
        expected_dwell = 1.0 / (1.0 - np.diag(matrix))  # [K] geometric mean dwell implied by P_ii
    return {"n_sequences": len(sequences), "n_steps": steps, "n_transitions": int(counts.sum()),
            "occupancy": (occupancy / steps if steps else np.full(n_states, math.nan)).tolist(),
            "transition_counts": counts.tolist(), "transition_matrix": matrix.tolist(),
            "between_states_matrix": _normalise_rows(_without_diagonal(counts)).tolist(),
            "dwell_times": dwell_time_summary(_runs_of(sequences), n_states, time_step),
            "expected_dwell_steps": expected_dwell.tolist(),
            "entropy_rate": {"nats": nats, "bits": nats / NATS_PER_BIT}}


def sequence_statistics(states, n_states: int, sequence_ids=None, time_step: float | None = None) -> dict:
    """All statistics of the module docstring, ``{"n_states", "time_step", "pooled": {...}, "sequences": [{"id",
    ...}]}``: pooled over all sequences (counts summed, runs of all sequences) and per sequence. Each has
    ``occupancy [K]``, ``transition_counts``, ``transition_matrix`` (with self-transitions), ``between_states_matrix``
    (without), ``dwell_times`` (per state), ``expected_dwell_steps`` (``1 / (1 - P_ii)``) and ``entropy_rate``."""
    n_states = _check_n_states(n_states)
    sequences, ids = split_sequences(states, n_states, sequence_ids)
    per_sequence = [{"id": _plain(sequence_id), **_statistics_of([sequence], n_states, time_step)}
                    for sequence, sequence_id in zip(sequences, ids)]
    return {"n_states": n_states, "time_step": time_step, "definitions": DEFINITIONS,
            "pooled": _statistics_of(sequences, n_states, time_step),
            "sequences": per_sequence}


def _group_sequences(group, n_states: int, name: str) -> list[np.ndarray]:
    if isinstance(group, np.ndarray) and group.ndim == 1 and group.dtype != object:
        raise ValueError(f"{name} must be a list of sequences (1-D arrays), not one array of states.")
    sequences = [_states_array(sequence, n_states, f"{name} sequence {index}") for index, sequence in enumerate(group)]
    if not sequences:
        raise ValueError(f"{name} has no sequences; each group needs at least one.")
    return sequences


def _tv_statistic(counts_a: np.ndarray, counts_b: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``sum_i w_i TV(P^A_i, P^B_i)`` for count tables ``[..., K, K]``; rows empty in either group give 0."""
    totals_a, totals_b = counts_a.sum(-1, keepdims=True), counts_b.sum(-1, keepdims=True)  # [..., K, 1]
    both = (totals_a > 0) & (totals_b > 0)
    rows_a = counts_a / np.where(totals_a > 0, totals_a, 1)
    rows_b = counts_b / np.where(totals_b > 0, totals_b, 1)
    distance = 0.5 * np.abs(rows_a - rows_b).sum(-1, keepdims=True) * both  # [..., K, 1]
    return (distance[..., 0] * weights).sum(-1)


def compare_transitions(group_a, group_b, n_states: int, n_permutations: int = 999, seed: int = 0,
                        self_transitions: bool = True) -> dict:
    """Permutation test of "the sequences of ``group_a`` and ``group_b`` (lists of 1-D state arrays) come from one
    transition matrix" (module docstring): whole sequences are relabelled between the groups, group sizes kept.

    Returns ``statistic`` (``T``, occupancy-weighted total-variation distance between the groups' rows), ``p_value``
    ``(1 + #{T_perm >= T}) / (1 + n_permutations)``, ``n_permutations``, ``seed``, the group sizes and the two
    groups' transition matrices. ``self_transitions=False`` compares the between-states matrices instead."""
    n_states = _check_n_states(n_states)
    if isinstance(n_permutations, bool) or not isinstance(n_permutations, (int, np.integer)) or n_permutations < 1:
        raise ValueError(f"n_permutations must be a positive integer, got {n_permutations!r}.")
    sequences_a = _group_sequences(group_a, n_states, "group_a")
    sequences = sequences_a + _group_sequences(group_b, n_states, "group_b")
    n_a = len(sequences_a)
    counts = np.stack([_counts_of([s], n_states) for s in sequences]).astype(float)  # [S, K, K]
    if not self_transitions:
        counts[:, np.arange(n_states), np.arange(n_states)] = 0.0
    pooled = counts.sum(0)  # [K, K]
    weights = pooled.sum(-1) / max(pooled.sum(), 1.0)  # [K] the same for every relabelling
    observed = float(_tv_statistic(counts[:n_a].sum(0), counts[n_a:].sum(0), weights))
    rng = np.random.default_rng(seed)
    in_a = np.zeros((n_permutations, len(sequences)))  # [n_perm, S] 1 where a sequence is relabelled into A
    for row in in_a:
        row[rng.permutation(len(sequences))[:n_a]] = 1.0
    flat = counts.reshape(len(sequences), -1)  # [S, K*K]
    permuted_a = (in_a @ flat).reshape(n_permutations, n_states, n_states)
    permuted = _tv_statistic(permuted_a, pooled[None] - permuted_a, weights)  # [n_perm]
    exceed = int(np.sum(permuted >= observed - TIE_TOLERANCE * max(abs(observed), 1.0)))
    return {"statistic": observed, "statistic_definition": "sum_i w_i TV(P^A_i, P^B_i), w_i the pooled occupancy of "
            "origin state i; whole sequences relabelled between the groups",
            "p_value": (1 + exceed) / (1 + n_permutations),
            "n_permutations": int(n_permutations), "seed": seed, "self_transitions": self_transitions,
            "n_sequences": [n_a, len(sequences) - n_a],
            "transition_matrix_a": _normalise_rows(counts[:n_a].sum(0)).tolist(),
            "transition_matrix_b": _normalise_rows(counts[n_a:].sum(0)).tolist()}


def _plain(value):
    """``value`` with numpy scalars and arrays as Python numbers and lists, and NaN/inf as None (JSON ``null``)."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_sequence_statistics(path, statistics: dict, comparison: dict | None = None) -> Path:
    """Write :func:`sequence_statistics` (and, optionally, a :func:`compare_transitions` result) to ``path`` as JSON:
    finite numbers, ``null`` for NaN/inf (e.g. the row of a state never left). Returns the path."""
    document = {"statistics": statistics} if comparison is None else {"statistics": statistics,
                                                                      "comparison": comparison}
    text = json.dumps(_plain(document), indent=1, allow_nan=False)
    path = Path(path)
    path.write_text(text, encoding="utf-8")
    return path
