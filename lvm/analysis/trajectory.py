"""Recordings as paths through the latent space: the per-window (per-frame) table of a model whose examples are
windows of sequences (sliding windows over recordings, frames of trials), and the statistics of its discrete states.

The data contract: the datamodule's per-example ``metadata`` has the fields ``sequence`` (the id of the recording or
trial a window belongs to) and ``time`` (the window's start, in ``datamodule.time_unit``, seconds unless it says
otherwise, from the sequence's start); :func:`missing_sequence_fields` says which are absent.

:func:`trajectory_table` (``python -m lvm.tools.trajectory`` writes it with its provenance) has one row per window,
sorted by ``sequence`` and ``time``: the columns of :func:`lvm.analysis.embedding.embedding_table` (posterior mean
``z1..zd``, ``spread1..spreadd``, metadata, covariates; a conditional model's posterior is the one given each window's
own covariates) and

* ``cluster``: the index ``k`` (0-based, densest first) of the mean-shift mode ``m_k`` of the aggregated posterior
  (:func:`lvm.analysis.clusters.aggregated_modes`, over the exported windows) nearest the window's posterior mean
  ``z(x)`` (geodesic on the torus; :func:`lvm.analysis.clusters.nearest_mode`);
* ``cluster_probability``: the posterior mass of that mode's cell, ``Pr(z in C_k | x)``. The cells ``C_k`` are the
  Voronoi partition of the latent space by the modes (the points nearer ``m_k`` than any other mode, geodesic on the
  torus: the rule that assigns the posterior mean), and the mass is the lattice posterior's, ``sum_{j: z_j in C_k}
  w_j(x)`` with ``w_j(x) = p(x | z_j) / sum_i p(x | z_i)`` on the evaluation lattice (QLVM paper, eq. 6; the weights of
  :meth:`LatentVariableModel.posterior_on_lattice`), a quadrature of ``integral_{C_k} p(z | x) dz``. Near 1: the window
  sits firmly in its cluster; near ``1 / K`` or below: its posterior straddles cells, and its cluster is uncertain.
  For a model with an encoder the position is the encoder's code but the probability is still the lattice posterior's
  (the model's own ``p(z | x)``, not the encoder's approximation).

The states of :mod:`lvm.analysis.sequences` (transition matrix, dwell times, entropy rate, per sequence and pooled) are
the ``cluster`` column in time order; one step is the typical spacing of the windows (:func:`time_step`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from lvm.analysis.clusters import aggregated_modes, nearest_mode
from lvm.analysis.embedding import dataset_indices, embedding_table
from lvm.analysis.formats import SPLITS
from lvm.analysis.sequences import compare_transitions, sequence_statistics
from lvm.batches import batch_data, given_batch

__all__ = ["SEQUENCE_FIELD", "TIME_FIELD", "Trajectories", "missing_sequence_fields", "time_unit", "time_step",
           "cell_probabilities", "trajectory_table"]

SEQUENCE_FIELD, TIME_FIELD = "sequence", "time"
DEFINITIONS = {
    "cluster": "index (0-based, densest first) of the mean-shift mode of the aggregated posterior nearest the "
               "window's posterior mean (geodesic on the torus)",
    "cluster_probability": "posterior mass of that mode's Voronoi cell (lattice points nearer that mode than any "
                           "other): sum of the window's lattice posterior weights p(z_j | x) over the cell",
    "time": "the window's start from its sequence's start, in time_unit",
}


@dataclass
class Trajectories:
    """A per-window export: ``table`` (one row per window, sorted by sequence and time), the data ``fingerprints``,
    the ``modes [K, d]``, the lattice's latent ``points [m, d]`` and the aggregated posterior ``density [m]`` on them,
    the ``time_step`` between consecutive windows and its ``time_unit``, and the sequence ``statistics``
    (:func:`lvm.analysis.sequences.sequence_statistics` of the ``cluster`` column)."""

    table: pd.DataFrame
    fingerprints: dict
    modes: np.ndarray
    points: np.ndarray
    density: np.ndarray
    time_step: float | None
    time_unit: str
    statistics: dict


def missing_sequence_fields(datamodule) -> list[str]:
    """The fields of the data contract (``sequence``, ``time``) that ``datamodule``'s per-example metadata lacks."""
    metadata = getattr(datamodule, "metadata", None) or {}
    return [name for name in (SEQUENCE_FIELD, TIME_FIELD) if name not in metadata]


def time_unit(datamodule) -> str:
    """The unit of the ``time`` field: the datamodule's ``time_unit``, seconds by default."""
    return str(getattr(datamodule, "time_unit", None) or "s")


def time_step(table: pd.DataFrame) -> float | None:
    """The typical time between consecutive windows of a sequence (the hop): the median of the positive differences
    of ``time`` within each sequence of ``table`` (sorted by sequence and time); ``None`` without two windows."""
    same = table[SEQUENCE_FIELD].to_numpy()[1:] == table[SEQUENCE_FIELD].to_numpy()[:-1]  # [n - 1]
    steps = np.diff(table[TIME_FIELD].to_numpy(dtype=float))[same]
    steps = steps[steps > 0]
    return float(np.median(steps)) if len(steps) else None


def _sorted_by_time(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` sorted by sequence, then time; an error naming a sequence with two windows at one time."""
    if table[TIME_FIELD].isna().any():
        raise ValueError(f"{int(table[TIME_FIELD].isna().sum())} windows have no time (NaN in the field "
                         f"{TIME_FIELD!r}); give every window its start time.")
    table = table.assign(**{SEQUENCE_FIELD: table[SEQUENCE_FIELD].astype(str)})
    repeated = table.duplicated([SEQUENCE_FIELD, TIME_FIELD])
    if repeated.any():
        first = table[repeated].iloc[0]
        raise ValueError(f"sequence {first[SEQUENCE_FIELD]!r} has two windows at time {first[TIME_FIELD]:g}: ids must "
                         f"name one recording each (two recordings share an id?).")
    return table.sort_values([SEQUENCE_FIELD, TIME_FIELD], kind="stable").reset_index(drop=True)


def _split_batches(model, datamodule, split: str, batch_size: int | None):
    """The batches of ``split`` in the order of :func:`embedding_table` (its unshuffled loader): ``(x,)``, or
    ``(x, None, codes)`` with each example's covariate codes for a conditional model (as
    :func:`lvm.batches.given_batch` reads them)."""
    dataset = getattr(datamodule, f"{split}_set")
    loader = DataLoader(dataset, batch_size=batch_size or getattr(datamodule, "batch_size", 256), shuffle=False)
    codes = None
    if getattr(model, "covariates", None) is not None:
        codes = torch.as_tensor(datamodule.covariate_codes)[torch.as_tensor(dataset_indices(dataset))]  # [n, C]
    start = 0
    for batch in loader:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        yield (x,) if codes is None else (x, None, codes[start:start + len(x)])
        start += len(x)


@torch.no_grad()
def cell_probabilities(model, batches, cells: np.ndarray, n_cells: int, num_points: int | None = None) -> np.ndarray:
    """The lattice posterior's mass of each cell ``[n, K]`` for the examples of ``batches`` (``(x,)``, or ``(x,
    label, codes)`` for a conditional model): ``sum_{j: cells[j] = k} w_j(x)`` with ``cells [m]`` the cell of each lattice point."""
    membership = torch.zeros(len(cells), n_cells, dtype=torch.float64)  # [m, K] one-hot
    membership[torch.arange(len(cells)), torch.as_tensor(cells)] = 1.0
    masses = []
    for batch in batches:
        x = batch_data(batch).to(model.device)
        with given_batch(model, batch), model.full_precision():
            _, weights = model.posterior_on_lattice(x, num_points)  # [b, m]
        masses.append((weights.double().cpu() @ membership).numpy())  # [b, K]
    return np.concatenate(masses) if masses else np.zeros((0, n_cells))


@torch.no_grad()
def compare_groups(table: pd.DataFrame, field: str, n_states: int, groups: tuple[str, str] | None = None,
                   n_permutations: int = 999, seed: int = 0) -> dict:
    """The permutation test between two groups of sequences (:func:`lvm.analysis.sequences.compare_transitions`) on
    the clusters of a per-window ``table``: the sequences whose ``field`` (constant within a sequence: a bird, a
    condition) is ``groups[0]`` against those where it is ``groups[1]`` (``None``: the field's two values). A
    ``ValueError`` names a missing field, one that changes within a sequence, or groups without sequences."""
    if field not in table:
        raise ValueError(f"--compare {field!r} is not a column of the export; choose a per-window metadata field, one of "
                         f"{sorted(c for c in table.columns if c not in (SEQUENCE_FIELD, TIME_FIELD))[:20]}")
    values = table.groupby(SEQUENCE_FIELD, sort=False)[field].agg(lambda column: set(map(str, column)))
    mixed = [sequence for sequence, found in values.items() if len(found) > 1]
    if mixed:
        raise ValueError(f"--compare {field!r} changes within sequence {mixed[0]!r} ({sorted(values[mixed[0]])[:5]}); "
                         "compare by a field that is constant within each sequence (a bird, a session, a condition)")
    per_sequence = values.map(lambda found: next(iter(found)))
    names = sorted(set(per_sequence))
    if groups is None:
        if len(names) != 2:
            raise ValueError(f"--compare {field!r} has {len(names)} values ({names[:10]}); name the two groups to "
                             "compare with --groups A B")
        groups = (names[0], names[1])
    states = {sequence: rows["cluster"].to_numpy() for sequence, rows in table.groupby(SEQUENCE_FIELD, sort=False)}
    members = [[states[s] for s, value in per_sequence.items() if value == str(group)] for group in groups]
    for group, sequences in zip(groups, members):
        if not sequences:
            raise ValueError(f"--compare {field!r}: no sequence has the value {group!r}; its values are {names[:10]}")
    result = compare_transitions(members[0], members[1], n_states, n_permutations, seed)
    return {"field": field, "groups": [str(group) for group in groups], **result}


def trajectory_table(model, datamodule, splits: tuple[str, ...] = SPLITS, num_points: int | None = None,
                     batch_size: int | None = None, bandwidth: float = 0.1,
                     log_likelihood: bool = False) -> Trajectories:
    """The per-window export of ``model`` on ``datamodule`` (module docstring): one row per window of ``splits``,
    sorted by sequence and time, its cluster and cluster probability, and the sequence statistics of the clusters.
    ``bandwidth``: the mean-shift's (latent units; the torus has period 1). A ``ValueError`` where the data lack the
    ``sequence``/``time`` fields, the model's prior has no lattice (above 3-D) or its aggregated posterior has no
    mode (flat)."""
    datamodule.setup("fit")
    missing = missing_sequence_fields(datamodule)
    if missing:
        raise ValueError(f"the data have no per-example field(s) {', '.join(map(repr, missing))}.")
    table, fingerprints = embedding_table(model, datamodule, tuple(splits), num_points, batch_size, log_likelihood)
    was_training = model.training
    model.eval()
    try:
        batches = lambda: (batch for split in splits  # noqa: E731 (two passes over the same batches)
                           for batch in _split_batches(model, datamodule, split, batch_size))
        points, density, modes = aggregated_modes(model, batches(), bandwidth, num_points)
        if len(modes) == 0:
            raise ValueError("the aggregated posterior is flat (the decoder ignores z): it has no modes to assign "
                             "windows to.")
        periodic = model.prior.periodic
        cells = nearest_mode(points, modes, periodic)  # [m] the Voronoi cell of each lattice point
        mass = cell_probabilities(model, batches(), cells, len(modes), num_points)  # [n, K]
    finally:
        model.train(was_training)
    latents = table[[f"z{k + 1}" for k in range(model.prior.dim)]].to_numpy()
    cluster = nearest_mode(latents, modes, periodic)  # [n]
    table["cluster"] = cluster
    table["cluster_probability"] = np.clip(mass[np.arange(len(table)), cluster], 0.0, 1.0)  # float32 weights
    first = [SEQUENCE_FIELD, TIME_FIELD]
    table = _sorted_by_time(table[first + [c for c in table.columns if c not in first]])
    step = time_step(table)
    statistics = sequence_statistics(table["cluster"].to_numpy(), len(modes), table[SEQUENCE_FIELD].to_numpy(), step)
    statistics["time_unit"] = time_unit(datamodule)
    statistics["modes"] = modes.tolist()
    statistics["bandwidth"] = bandwidth
    statistics["definitions"] = {**statistics["definitions"], **DEFINITIONS}
    return Trajectories(table, fingerprints, modes, points, density, step, time_unit(datamodule), statistics)
