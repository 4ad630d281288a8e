"""Known factors of the data (covariates) and how a conditional decoder uses them.

A scientist usually knows part of what varies in the data: which animal sang, the syllable's duration, the session.
A conditional model ``p(x | c) = integral p(x | z, c) p(z) dz`` lets those known factors ``c`` explain their part, so
that the 1-3 latent dimensions are left to what is not known (the extension named in section 5 of "Quasi-Monte Carlo
latent variable models", Martinez and Williams, 2024).

Covariates are named in the config (``model.covariates``), each ``{key, kind}``:

* ``kind: discrete`` (an animal, a session, a subject): the categories seen in the training split, sorted; each is a
  learned embedding of ``dim`` numbers (default ``min(8, number of categories)``). A category never seen in training
  is refused with an error naming it.
* ``kind: session`` (recording sessions whose examples have different feature counts: a different number of
  neurons per session): a discrete covariate whose every category owns a block of the features. The datamodule lays
  each session's examples out in its own columns of one table ``[N, D_1 + ... + D_S]`` (zeros elsewhere;
  :class:`lvm.datamodules.SessionsDataModule`) and names the blocks; the decoder's last layer, one output per column,
  is then one output head per session on a shared trunk, and an example's likelihood is over its own session's
  columns only. At most one covariate is a session.
* ``kind: continuous`` (duration, pitch, speed): standardised with the training split's mean and standard deviation,
  then quantised to ``levels`` values (default 32) at the training split's quantiles; the decoder is a smooth function
  of the level's (standardised) value. ``levels: null`` keeps every value exact.

The encodings (category lists, means, scales, levels) are fitted once on the training split (:meth:`Covariates.fit`)
and stored with the model (its hyperparameters, so a checkpoint carries them), so new data map to the same codes.

**How the decoder uses them (feature-wise linear modulation at the output).** The decoder ``f(z)`` runs on the latent
values only; a small network of the covariates gives a gain and an offset per decoder output,

    params(z, c) = f(z) * (1 + gain(c)) + offset(c),

(FiLM: "FiLM: Visual Reasoning with a General Conditioning Layer", Perez, Strub, de Vries, Dumoulin and Courville,
2018) with the last layer started at zero, so a conditional model starts as its unconditional one. Because the
covariate enters after the latent part, a QMC step decodes its lattice once whatever the covariates: the examples of
a batch are grouped by their covariate row (discrete categories and continuous levels), each distinct row modulates
the lattice's outputs (elementwise, ``[m, P]``), and each example is scored against its own row's outputs only, so the
likelihood table costs what the unconditional one does (:meth:`Covariates.pairwise`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["Covariates", "CovariateError", "KINDS"]

KINDS = ("discrete", "continuous", "session")


class CovariateError(ValueError):
    """Covariates that cannot be used as given: a missing key, NaN values, a category training never saw."""


def _category(value) -> str:
    """A category's name: text as is, integral numbers without a decimal point (``3.0`` from a CSV is ``"3"``)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _spec(raw: Mapping) -> dict:
    """A covariate's config entry, checked and completed with its defaults."""
    if not isinstance(raw, Mapping) or "key" not in raw:
        raise CovariateError(f"Each entry of model.covariates is {{key: <metadata field>, kind: discrete|continuous}}; "
                             f"got {raw!r}.")
    spec = dict(raw)
    spec.setdefault("kind", "discrete")
    if spec["kind"] not in KINDS:
        raise CovariateError(f"Covariate {spec['key']!r}: kind must be one of {KINDS}; got {spec['kind']!r}.")
    unknown = set(spec) - {"key", "kind", "dim", "levels", "categories", "mean", "scale", "values", "min",
                                "max", "blocks"}
    if unknown:
        raise CovariateError(f"Covariate {spec['key']!r}: unknown setting(s) {sorted(unknown)}; a covariate takes key, "
                             "kind, dim (discrete: embedding size) and levels (continuous: quantisation levels).")
    if spec["kind"] == "continuous":
        spec.setdefault("levels", 32)
        if spec["levels"] is not None and int(spec["levels"]) < 2:
            raise CovariateError(f"Covariate {spec['key']!r}: levels must be >= 2 or null (exact values); "
                                 f"got {spec['levels']}.")
    return spec


def _by_group(groups: torch.Tensor, compute: Callable[[int, torch.Tensor], torch.Tensor], dim: int) -> torch.Tensor:
    """``compute(g, members)`` for each group ``g`` present in ``groups`` ``[b]`` (``members``: the indices of its
    examples), each result having its examples along ``dim``, put back in the batch's order along ``dim``."""
    order = torch.argsort(groups, stable=True)  # examples grouped
    counts = torch.bincount(groups).tolist()
    parts = [compute(g, members) for g, members in enumerate(order.split(counts)) if len(members)]
    return torch.cat(parts, dim=dim).index_select(dim, torch.argsort(order))


class Covariates(nn.Module):
    """The covariates of a conditional model: their encodings and the FiLM network of the decoder's outputs.

    Args:
        specs: one dict per covariate, ``{key, kind, dim?, levels?}`` (see the module docstring); after
            :meth:`fit` they also hold the fitted encodings (``categories``; ``mean``, ``scale``, ``min``, ``max`` in
            data units and ``values``, the levels in standardised units), which is how a checkpoint stores them.
        num_outputs: P, the decoder's outputs per example (``data_size * likelihood.params_per_dim``).
        hidden: the width of the FiLM network's hidden layer.
    """

    def __init__(self, specs: Sequence[Mapping], num_outputs: int, hidden: int = 64):
        super().__init__()
        self.specs = [_spec(raw) for raw in specs]
        if not self.specs:
            raise CovariateError("model.covariates is empty; leave it unset for an unconditional model.")
        keys = [spec["key"] for spec in self.specs]
        if len(set(keys)) != len(keys):
            raise CovariateError(f"model.covariates names a key twice: {keys}.")
        sessions = [k for k, spec in enumerate(self.specs) if spec["kind"] == "session"]
        if len(sessions) > 1:
            raise CovariateError(f"model.covariates names {len(sessions)} session covariates; at most one covariate "
                                 "has kind: session.")
        self.session = sessions[0] if sessions else None  # the column of the session covariate
        self.num_outputs, self.hidden = num_outputs, hidden
        self.embeddings = nn.ModuleDict()
        self.film: nn.Sequential | None = None
        if self.fitted:
            self._build()

    # ----- encodings -------------------------------------------------------------------------------------------

    @property
    def keys(self) -> list[str]:
        return [spec["key"] for spec in self.specs]

    @property
    def fitted(self) -> bool:
        return all(("mean" in s) if s["kind"] == "continuous" else ("categories" in s) and
                   (s["kind"] != "session" or "blocks" in s) for s in self.specs)

    @property
    def has_sessions(self) -> bool:
        return self.session is not None

    def fit(self, columns: Mapping[str, np.ndarray], where: str = "the training split",
            blocks: Mapping[str, Sequence[int]] | None = None) -> None:
        """Fit the encodings on the training split's raw values (``columns[key]``: ``[n]``) and build the network. A
        session covariate also takes each session's block of feature columns, ``blocks[name] = (start, stop)``."""
        for spec in self.specs:
            values = self._column(columns, spec["key"], where)
            if spec["kind"] == "session":
                if blocks is None:
                    raise CovariateError(f"Session covariate {spec['key']!r} needs a datamodule that lays sessions out in "
                                         "blocks of columns (lvm.datamodules.SessionsDataModule).")
                spec["categories"] = sorted(_category(name) for name in blocks)
                spec["blocks"] = {_category(name): [int(start), int(stop)] for name, (start, stop) in blocks.items()}
                ends = max(stop for _, stop in spec["blocks"].values())
                if ends > self.num_outputs:
                    raise CovariateError(f"The sessions' feature blocks end at column {ends}, beyond the decoder's "
                                         f"{self.num_outputs} outputs; set the decoder's data_shape to the table's width.")
            elif spec["kind"] == "discrete":
                spec["categories"] = sorted({_category(value) for value in values})
            else:
                numbers = self._numbers(values, spec["key"], where)
                mean, scale = float(numbers.mean()), float(numbers.std())
                spec["mean"], spec["scale"] = mean, scale if scale > 0 else 1.0
                spec["min"], spec["max"] = float(numbers.min()), float(numbers.max())  # the training range
                standard = (numbers - mean) / spec["scale"]
                if spec["levels"] is not None:
                    quantiles = np.quantile(standard, (np.arange(spec["levels"]) + 0.5) / spec["levels"])
                    spec["values"] = [float(v) for v in np.unique(quantiles)]
        self._build()

    def check(self, columns: Mapping[str, np.ndarray], where: str = "the data") -> None:
        """Refuse a missing key or NaN/infinite continuous values anywhere in ``columns`` (rows as given), before
        :meth:`fit` sees a part of them."""
        for spec in self.specs:
            values = self._column(columns, spec["key"], where)
            if spec["kind"] == "continuous":
                self._numbers(values, spec["key"], where)

    def encode(self, columns: Mapping[str, np.ndarray], where: str = "the data") -> torch.Tensor:
        """The codes ``[n, C]`` (float32) of raw values: a discrete covariate's category index, a continuous one's
        standardised value. Refuses a missing key, NaN or infinite values and categories training never saw, naming
        ``where`` (a file, a split)."""
        if not self.fitted:
            raise CovariateError("The covariates' encodings are not fitted yet (they are fitted on the training split "
                                 "when training starts).")
        codes = []
        for spec in self.specs:
            values = self._column(columns, spec["key"], where)
            if spec["kind"] != "continuous":
                index = {name: k for k, name in enumerate(spec["categories"])}
                names = [_category(value) for value in values]
                unseen = sorted(set(names) - set(index))
                if unseen:
                    raise CovariateError(
                        f"{where}: covariate {spec['key']!r} has categor{'ies' if len(unseen) > 1 else 'y'} "
                        f"{unseen[:5]}{' ...' if len(unseen) > 5 else ''} that the training split never had (it had "
                        f"{spec['categories'][:10]}{' ...' if len(spec['categories']) > 10 else ''}); a conditional "
                        "model has no decoder for them. Keep those categories in training (e.g. do not split by this "
                        "key: data.init_args.group_key) or drop their examples.")
                codes.append(np.asarray([index[name] for name in names], dtype=np.float64))
            else:
                numbers = self._numbers(values, spec["key"], where)
                codes.append((numbers - spec["mean"]) / spec["scale"])
        return torch.as_tensor(np.stack(codes, axis=1), dtype=torch.float32).reshape(-1, len(self.specs))  # [n, C]

    @staticmethod
    def _column(columns: Mapping[str, np.ndarray], key: str, where: str) -> np.ndarray:
        if key not in columns:
            raise CovariateError(f"Covariate {key!r} is not a metadata field of {where}; choose one of "
                                 f"{sorted(columns) or 'none'} (model.covariates).")
        return np.asarray(columns[key])

    @staticmethod
    def _numbers(values: np.ndarray, key: str, where: str) -> np.ndarray:
        try:
            numbers = values.astype(np.float64)
        except (TypeError, ValueError):
            raise CovariateError(f"{where}: continuous covariate {key!r} holds values that are not numbers (e.g. "
                                 f"{values[0]!r}); use kind: discrete for categories.") from None
        bad = ~np.isfinite(numbers)
        if bad.any():
            raise CovariateError(f"{where}: covariate {key!r} has {int(bad.sum())} NaN or infinite value(s) (the first "
                                 f"at row {int(np.flatnonzero(bad)[0])}); fill or drop those rows.")
        return numbers

    def index(self, key: str) -> int:
        """The column of covariate ``key`` in the codes ``[n, C]``."""
        if key not in self.keys:
            raise CovariateError(f"{key!r} is not one of this model's covariates {self.keys}.")
        return self.keys.index(key)

    def reference(self) -> torch.Tensor:
        """The codes ``[1, C]`` used where none are given (a sample, a decoded grid): each discrete covariate's first
        category and each continuous one's training mean."""
        return torch.zeros(1, len(self.specs))

    def describe(self, codes: torch.Tensor) -> list[dict]:
        """The raw values of codes ``[n, C]``: one dict per row (category names, continuous values in data units)."""
        rows = []
        for code in codes.tolist():
            row = {}
            for spec, value in zip(self.specs, code):
                if spec["kind"] != "continuous":
                    row[spec["key"]] = spec["categories"][int(round(value))]
                else:
                    row[spec["key"]] = value * spec["scale"] + spec["mean"]
            rows.append(row)
        return rows

    # ----- the FiLM network ----------------------------------------------------------------------------------

    def _build(self) -> None:
        width = 0
        for k, spec in enumerate(self.specs):
            if spec["kind"] != "continuous":
                count = len(spec["categories"])
                dim = int(spec.get("dim") or min(8, count))
                self.embeddings[str(k)] = nn.Embedding(count, dim)
                width += dim
            else:
                width += 1
        last = nn.Linear(self.hidden, 2 * self.num_outputs)
        nn.init.zeros_(last.weight), nn.init.zeros_(last.bias)  # starts as the unconditional decoder
        self.film = nn.Sequential(nn.Linear(width, self.hidden), nn.SiLU(), last)

    def rows(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The distinct covariate rows of codes ``[b, C]`` (continuous values moved to their nearest level) ``[U, C]``
        and each example's row ``[b]``."""
        codes = codes.reshape(len(codes), len(self.specs)).float()
        columns = []
        for k, spec in enumerate(self.specs):
            column = codes[:, k]
            if spec["kind"] == "continuous" and spec.get("values"):
                levels = torch.tensor(spec["values"], dtype=column.dtype, device=column.device)
                column = levels[(column[:, None] - levels).abs().argmin(dim=1)]
            columns.append(column)
        return torch.unique(torch.stack(columns, dim=1), dim=0, return_inverse=True)  # [U, C], [b]

    def representatives(self, codes: torch.Tensor) -> torch.Tensor:
        """The index ``[U]`` of the first example of each distinct covariate row of codes ``[b, C]``."""
        _, inverse = self.rows(codes)
        first = torch.full((int(inverse.max()) + 1,), len(inverse), dtype=torch.long, device=inverse.device)
        return first.scatter_reduce(0, inverse, torch.arange(len(inverse), device=inverse.device), "amin")

    def features(self, rows: torch.Tensor) -> torch.Tensor:
        """The FiLM network's input ``[U, F]`` for rows ``[U, C]``."""
        parts = []
        for k, spec in enumerate(self.specs):
            if spec["kind"] != "continuous":
                parts.append(self.embeddings[str(k)](rows[:, k].round().long()))
            else:
                parts.append(rows[:, k:k + 1])
        return torch.cat(parts, dim=1)

    def modulation(self, rows: torch.Tensor, dtype: torch.dtype | None = None, offsets_only: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gain and offset ``[U, P]`` of rows ``[U, C]``: ``params = outputs * (1 + gain) + offset``; ``offsets_only``
        (the model's covariate warm-up): the gains held at zero."""
        gain, offset = self.film(self.features(rows)).chunk(2, dim=1)
        if offsets_only:
            gain = torch.zeros_like(gain)
        return (gain, offset) if dtype is None else (gain.to(dtype), offset.to(dtype))

    def modulate(self, outputs: torch.Tensor, codes: torch.Tensor, offsets_only: bool = False) -> torch.Tensor:
        """Conditioned parameters ``[n, P]`` of decoder outputs ``[n, P]`` whose example ``i`` has codes
        ``codes[i]`` (``[n, C]``). Before :meth:`fit` the outputs as they are (the network starts at zero)."""
        if self.film is None:
            return outputs
        rows, inverse = self.rows(codes)
        gain, offset = self.modulation(rows.to(outputs.device), outputs.dtype, offsets_only)  # [U, P]
        return outputs * (1 + gain[inverse]) + offset[inverse]

    def pairwise(self, x_flat: torch.Tensor, outputs: torch.Tensor, codes: torch.Tensor,
                 pairwise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 modulated: Callable[..., torch.Tensor | None] | None = None, offsets_only: bool = False
                 ) -> torch.Tensor:
        """``log p(x_i | z_j, c_i)`` ``[b, m]`` for data ``[b, D]``, the decoder's outputs on ``m`` latent points
        ``[m, P]`` and the examples' codes ``[b, C]``.

        Where the likelihood can score per-example modulated parameters in matrix products (``modulated(x, outputs,
        gain [b, P], offset [b, P]) -> [b, m]``, or ``None`` where it cannot:
        :meth:`lvm.likelihoods.Likelihood.modulated_pairwise_log_prob`), one call does it for the whole batch.
        Otherwise the examples are grouped by covariate row, each row modulates the outputs once (``[m, P]``
        elementwise), and ``pairwise(x_group, params) -> [b_u, m]`` scores a group against its own row only.
        ``offsets_only``: as :meth:`modulation`."""
        if len(codes) != len(x_flat):
            raise ValueError(f"{len(x_flat)} examples but covariates for {len(codes)}.")
        if self.film is None:  # not fitted yet: the unconditional decoder
            return pairwise(x_flat, outputs)
        rows, inverse = self.rows(codes)
        gain, offset = self.modulation(rows.to(outputs.device), outputs.dtype, offsets_only)  # [U, P]
        if modulated is not None and self.session is None:
            inverse = inverse.to(outputs.device)
            table = modulated(x_flat, outputs, gain[inverse], offset[inverse])  # [b, m]
            if table is not None:
                return table
        if len(rows) == 1:
            block = self.block(rows[0])
            return pairwise(x_flat[:, block], outputs[:, block] * (1 + gain[0, block]) + offset[0, block])

        def score(u: int, members: torch.Tensor) -> torch.Tensor:  # [b_u, m]
            block = self.block(rows[u])  # a session's own columns (all columns without sessions)
            return pairwise(x_flat[members][:, block], outputs[:, block] * (1 + gain[u, block]) + offset[u, block])

        return _by_group(inverse.to(outputs.device), score, dim=0)  # [b, m]

    def block(self, row: torch.Tensor) -> slice:
        """The feature columns of a covariate row ``[C]``: its session's block, or all columns."""
        if self.session is None:
            return slice(None)
        spec = self.specs[self.session]
        start, stop = spec["blocks"][spec["categories"][int(round(float(row[self.session])))]]
        return slice(start, stop)

    def log_prob(self, x_flat: torch.Tensor, params: torch.Tensor, codes: torch.Tensor,
                 log_prob: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``log p(x_b | params_kb)`` ``[k, b]`` for data ``[b, P]`` and conditioned parameters ``[k, b, P]``, each
        example over its own session's columns (``log_prob(x [b_s, D_s], params [k, b_s, D_s]) -> [k, b_s]``)."""
        if self.session is None:
            return log_prob(x_flat[None], params)
        spec = self.specs[self.session]

        def score(category: int, members: torch.Tensor) -> torch.Tensor:  # [k, b_s]
            start, stop = spec["blocks"][spec["categories"][category]]
            return log_prob(x_flat[members, start:stop][None], params[:, members, start:stop])

        sessions = codes[:, self.session].round().long().to(x_flat.device)  # [b] each example's session
        return _by_group(sessions, score, dim=1)  # [k, b]
