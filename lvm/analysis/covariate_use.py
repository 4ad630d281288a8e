"""Does a conditional model use its covariates? Three checks per covariate (:mod:`lvm.covariates`), run at the end of
testing by :class:`lvm.callbacks.TrustDiagnostics` (``diagnostics.json``, section ``covariate_use``).

Forks of the QLVM authors' conditional script trained models that silently ignored their covariate (the decoded output
moved about a sixth as much across the covariate as across the latent space). A model conditioned on ``c`` can explain
the data without it, as an unconditional model does, whenever the latent space has room for the covariate's effect;
these checks say whether it did.

1. **Output spread** (:func:`output_spread`). With ``mu(z, c) = E[x | z, c]`` the decoded mean ``[D]`` (the
   counterfactual :meth:`LatentVariableModel.decode`), ``z_1..z_m`` latent points that integrate the prior (the
   randomly shifted lattice of the evaluation, ``SPREAD_POINTS`` of them; prior draws where no lattice applies) and
   ``v_1..v_L`` the covariate's values (a discrete covariate's categories; a continuous one's quantisation levels, or
   ``CONTINUOUS_GRID`` values from -2 to 2 training standard deviations when it keeps exact values), every other
   covariate held at its reference (:meth:`lvm.covariates.Covariates.reference`)::

       covariate spread  S_c = 1/m sum_j sum_d Var_l mu_d(z_j, v_l)      (across the covariate, averaged over z)
       latent spread     S_z = 1/L sum_l sum_d Var_j mu_d(z_j, v_l)      (across the latent space, averaged over c)
       ratio             S_c / S_z

   with population variances (equal weight per value and per point; the levels sit at the training quantiles, so for
   a continuous covariate that is its training distribution). A decoder that ignores ``c`` has ratio 0; a ratio near
   1 or above says the covariate moves the output as much as the whole latent space does.

2. **Shuffled-covariate held-out log-likelihood** (:func:`shuffled_log_likelihood`). The held-out estimate of
   ``test/log_likelihood`` (``model.evaluation``, nats per example) of each test example ``i`` given its own codes,
   ``l_i``, and given covariate ``k``'s codes permuted among the test examples by a seeded random permutation (the
   other covariates their own), ``l~_i``. The drop is the mean paired difference ``delta = mean_i (l_i - l~_i)``, its
   standard error ``se = sd_i(l_i - l~_i) / sqrt(n)``. The covariate is **ignored** unless the drop is both
   significant and material::

       ignored  <=>  not (delta > 2 se  and  delta > min_drop)      (min_drop = MIN_DROP = 0.01 nats per example)

   ``2 se`` is a one-sided test at about the 2 % level that the wrong covariate costs anything (the permutation
   couples the examples, so it is approximate); ``min_drop`` keeps a statistically clear but negligible dependence
   (a hundredth of a nat per example: the data's probability changes by 1 %) from passing. An ignored covariate is
   reported with a :class:`IgnoredCovariateWarning` naming it and the numbers.

3. **Decodability of the covariate from the embedding** (:func:`covariate_decodability`): the cross-validated k-NN
   balanced accuracy (discrete) or R^2 (continuous) of the covariate from the posterior means given each example's own
   covariates (:func:`lvm.analysis.decodability.knn_decodability`). A model that conditions well leaves the covariate's
   effect to the decoder, so its latent carries less of the covariate than an unconditional model's embedding of the
   same data (compare with the unconditional run's ``decodability`` of the same metadata field); a conditional model
   whose latent still encodes the covariate as well as an unconditional one explains it twice.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from lvm.analysis.decodability import knn_decodability
from lvm.batches import batch_data
from lvm.numerics.lattices import MAX_LATTICE_DIM, lattice_rule, random_shift
from lvm.priors import InvertiblePrior

__all__ = ["IgnoredCovariateWarning", "covariate_use", "output_spread", "covariate_values", "spread_latents",
           "shuffled_log_likelihood", "warn_ignored", "covariate_decodability", "embed_given", "loader_codes",
           "MIN_DROP", "SPREAD_POINTS", "CONTINUOUS_GRID"]

MIN_DROP = 0.01  # nats per example: a smaller drop of the shuffled-covariate log-likelihood is no use of it
SPREAD_POINTS = {1: 256, 2: 987, 3: 2048}  # latent points of the output spread (a Fibonacci number in 2-D)
PRIOR_DRAWS = 1024  # latent points where no lattice applies (priors not reached from the unit cube, above 3-D)
CONTINUOUS_GRID = 17  # values in [-2, 2] standard deviations of a continuous covariate kept exact (levels: null)
DECODED_VALUES_PER_CHUNK = 2**22  # decoded numbers held at once by output_spread


class IgnoredCovariateWarning(UserWarning):
    """A conditional model scores its test data as well with a covariate shuffled among the examples as with each
    example's own: its decoder does not use that covariate."""


def _index(model, key: str) -> int:
    if model.covariates is None:
        raise ValueError("This model is unconditional (model.covariates is None); there is no covariate to check.")
    if key not in model.covariates.keys:
        raise KeyError(f"{key!r} is not a covariate of this model; it has {model.covariates.keys}.")
    return model.covariates.keys.index(key)


def covariate_values(model, key: str) -> torch.Tensor:
    """The codes ``[L]`` that :func:`output_spread` decodes covariate ``key`` at: every category index (discrete), the
    quantisation levels (continuous), or ``CONTINUOUS_GRID`` standardised values from -2 to 2 (continuous, exact)."""
    spec = model.covariates.specs[_index(model, key)]
    if spec["kind"] == "discrete":
        return torch.arange(len(spec["categories"]), dtype=torch.float32)
    if spec.get("values"):
        return torch.tensor(spec["values"], dtype=torch.float32)
    return torch.linspace(-2.0, 2.0, CONTINUOUS_GRID)


def spread_latents(model, num_points: int | None = None, seed: int = 0) -> torch.Tensor:
    """Latent points ``[m, d]`` that integrate the prior with equal weights: the lattice of ``num_points`` (default
    ``SPREAD_POINTS``) shifted by the shift drawn from ``seed``, mapped by ``prior.from_unit_cube``; for other priors
    (or above 3-D) ``num_points`` (default ``PRIOR_DRAWS``) prior draws from ``seed``."""
    prior, d = model.prior, model.prior.dim
    if isinstance(prior, InvertiblePrior) and d <= MAX_LATTICE_DIM:
        cube = random_shift(lattice_rule(num_points or SPREAD_POINTS[d], d), torch.Generator().manual_seed(seed))
        return prior.from_unit_cube(cube.to(device=model.device, dtype=torch.float32))
    with torch.random.fork_rng(devices=[model.device] if model.device.type == "cuda" else []):
        torch.manual_seed(seed)
        return prior.sample(num_points or PRIOR_DRAWS, device=model.device, immersion=model.immersion())


@torch.no_grad()
def output_spread(model, key: str, num_points: int | None = None, seed: int = 0) -> dict:
    """The spread of the decoded mean across covariate ``key``'s values relative to its spread across the latent
    space (the module docstring, check 1): ``ratio`` = ``covariate_spread`` / ``latent_spread`` (sums over the ``D``
    outputs of population variances, in the data's squared units), ``num_values`` (L) and ``num_latents`` (m). NaN
    ratio when the decoded mean is constant everywhere."""
    k = _index(model, key)
    values = covariate_values(model, key)  # [L]
    rows = model.covariates.reference().repeat(len(values), 1)  # [L, C]: the others at their reference
    rows[:, k] = values
    z = spread_latents(model, num_points, seed)  # [m, d]
    chunk = max(1, DECODED_VALUES_PER_CHUNK // (len(values) * model.data_size))
    across_covariate, total, total_sq, shift = 0.0, 0.0, 0.0, None
    with model.full_precision():
        for z_chunk in z.split(chunk):
            means = torch.stack([model.decode(z_chunk, row).flatten(start_dim=1).double()
                                 for row in rows])  # [L, c, D]
            across_covariate += means.var(dim=0, unbiased=False).sum().item()  # sum over the chunk's z and D
            shift = means[:, :1] if shift is None else shift  # [L, 1, D]: keeps the sums of squares well conditioned
            centred = means - shift
            total, total_sq = total + centred.sum(dim=1), total_sq + centred.pow(2).sum(dim=1)  # [L, D]
    m = len(z)
    latent = (total_sq / m - (total / m) ** 2).clamp_min(0).sum(dim=1).mean().item()  # mean over L of sum_d Var_j
    covariate = across_covariate / m
    ratio = covariate / latent if latent > 0 else math.inf if covariate > 0 else math.nan
    return {"ratio": ratio, "covariate_spread": covariate, "latent_spread": latent, "num_values": len(values),
            "num_latents": m}


def loader_codes(model, batches) -> torch.Tensor:
    """The covariate codes ``[n, C]`` of every example of ``batches`` (``(x, label, codes)``), in their order."""
    return torch.cat([model.batch_covariates(batch).cpu() for batch in batches]).float()


def _held_out(model, x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """The held-out estimate of ``test/log_likelihood`` ``[b]`` (nats per example) given ``codes`` ``[b, C]``."""
    with model.given(codes), model.full_precision():
        return model.evaluation.log_likelihood(model, x)["log_likelihood"].double().cpu()


@torch.no_grad()
def shuffled_log_likelihood(model, batches, seed: int = 0, min_drop: float = MIN_DROP, warn: bool = True
                            ) -> dict[str, dict]:
    """Check 2 of the module docstring for every covariate: ``{key: {log_likelihood_own, log_likelihood_shuffled,
    drop, drop_se, threshold, min_drop, ignored, changed_fraction, n, seed}}`` (nats per example; ``threshold`` =
    ``max(2 se, min_drop)``, the drop the covariate must exceed; ``changed_fraction``: the examples whose code the permutation
    changed). ``batches``: an iterable (re-iterated once per covariate, in the same order, e.g. a test DataLoader) of
    ``(x, label, codes)``. Warns (:class:`IgnoredCovariateWarning`) for each ignored covariate when ``warn``.

    Each covariate ``k`` has its own permutation, drawn from ``seed + k``. Where the model's last test pass covered the
    loader's data set (:meth:`LatentVariableModel.results_for`), its per-example estimates are the own-codes values."""
    dataset = getattr(batches, "dataset", None)
    done = model.results_for(dataset) if dataset is not None else None
    own = done["log_likelihood"].double().cpu() if done is not None and "log_likelihood" in done else None
    if own is None:
        parts, codes = [], []
        for batch in batches:
            batch_codes = model.batch_covariates(batch)
            parts.append(_held_out(model, batch_data(batch).to(model.device), batch_codes))
            codes.append(batch_codes.cpu())
        own, codes = torch.cat(parts), torch.cat(codes).float()
    else:
        codes = loader_codes(model, batches)
    if len(codes) != len(own):
        raise ValueError(f"{len(own)} held-out estimates for {len(codes)} examples.")
    results = {}
    for k, key in enumerate(model.covariates.keys):
        order = torch.randperm(len(codes), generator=torch.Generator().manual_seed(seed + k))
        wrong = codes.clone()
        wrong[:, k] = codes[order, k]
        shuffled, start = [], 0
        for batch in batches:
            x = batch_data(batch)
            shuffled.append(_held_out(model, x.to(model.device), wrong[start:start + len(x)]))
            start += len(x)
        difference = own - torch.cat(shuffled)  # [n]: what each example loses with the wrong covariate
        n = len(difference)
        drop = difference.mean().item()
        se = difference.std().item() / math.sqrt(n) if n > 1 else math.nan
        threshold = max(2 * se, min_drop) if math.isfinite(se) else min_drop
        ignored = not drop > threshold
        changed = (wrong[:, k] != codes[:, k]).double().mean().item()
        results[key] = {"log_likelihood_own": own.mean().item(), "log_likelihood_shuffled": own.mean().item() - drop,
                        "drop": drop, "drop_se": se, "threshold": threshold, "min_drop": min_drop, "ignored": ignored,
                        "changed_fraction": changed, "n": n, "seed": seed + k}
        if ignored and warn:
            warn_ignored(key, results[key])
    return results


def warn_ignored(key: str, result: dict, spread: dict | None = None) -> None:
    """An :class:`IgnoredCovariateWarning` naming covariate ``key`` and its numbers."""
    ratio = f"; its output spread ratio is {spread['ratio']:.3g}" if spread else ""
    warnings.warn(
        f"Covariate {key!r} looks ignored by this conditional model: the held-out log-likelihood is "
        f"{result['log_likelihood_own']:.4f} nats per example with each test example's own {key} and "
        f"{result['log_likelihood_shuffled']:.4f} with them shuffled among the examples (a drop of "
        f"{result['drop']:.4f} +- {result['drop_se']:.4f} s.e., not above {result['threshold']:.4f} = max(2 s.e., "
        f"{result['min_drop']})){ratio}. The "
        "decoder explains the data without it; its effect, if any, is in the latent space.",
        IgnoredCovariateWarning, stacklevel=2)


def covariate_decodability(model, embedding, codes: torch.Tensor, periodic: bool, k: int = 10, folds: int = 5,
                           seed: int = 0) -> dict[str, dict]:
    """Check 3 of the module docstring: ``{key: knn_decodability(...)}`` of each covariate from ``embedding`` ``[n, d]``
    (posterior means given the examples' own covariates), with ``codes`` ``[n, C]`` the examples' codes: category
    names by classification (balanced accuracy), continuous values in data units by regression (R^2)."""
    embedding = np.asarray(embedding, dtype=np.float64)
    if len(embedding) != len(codes):
        raise ValueError(f"an embedding of {len(embedding)} examples and covariates of {len(codes)}.")
    results = {}
    for index, spec in enumerate(model.covariates.specs):
        column = codes[:, index].double().numpy()
        if spec["kind"] == "discrete":
            labels = np.asarray(spec["categories"], dtype=object)[np.rint(column).astype(np.int64)].astype(str)
            results[spec["key"]] = knn_decodability(embedding, labels, periodic, k, folds, seed, task="classification")
        else:
            values = column * spec["scale"] + spec["mean"]
            results[spec["key"]] = knn_decodability(embedding, values, periodic, k, folds, seed, task="regression")
    return results


@torch.no_grad()
def embed_given(model, batches, num_points: int | None = None) -> np.ndarray:
    """The posterior means ``[n, d]`` of every example of ``batches`` given its own covariates."""
    parts = []
    for batch in batches:
        with model.given(model.batch_covariates(batch)):
            parts.append(model.embed(batch_data(batch).to(model.device), "mean", num_points).double().cpu())
    return torch.cat(parts).numpy()


def _direct(analysis: str, compute, *args):
    return compute(*args)


def covariate_use(model, batches, embedding=None, seed: int = 0, min_drop: float = MIN_DROP, k: int = 10,
                  folds: int = 5, spread_points: int | None = None, guard=_direct) -> dict[str, dict]:
    """All three checks for every covariate of a conditional model on ``batches`` (e.g. its test DataLoader, batches
    ``(x, label, codes)``): ``{key: {kind, output_spread, shuffled, ignored, decodability}}``. ``embedding``: the
    posterior means ``[n, d]`` of the examples given their own covariates (in the order of ``batches``), computed when
    ``None``; ``spread_points``: the latent points of the output spread. Warns for each ignored covariate.

    ``guard(analysis, compute, *args)`` runs each part (:class:`lvm.callbacks.TrustDiagnostics` passes one that skips
    a failing part with a warning and returns ``None``); a part that returns ``None`` is left out of the result."""
    was_training = model.training
    model.eval()  # dropout and batch statistics off, as at test time
    try:
        shuffled = guard("the shuffled-covariate log-likelihood", shuffled_log_likelihood, model, batches, seed,
                         min_drop, False) or {}
        spreads = {key: guard(f"the output spread of {key}", output_spread, model, key, spread_points, seed)
                   for key in model.covariates.keys}
        if embedding is None:
            embedding = guard("the embedding given the covariates", embed_given, model, batches)
        codes = guard("the covariates of the examples", loader_codes, model, batches)
        decodability = {} if embedding is None or codes is None else guard(
            "decodability of the covariates", covariate_decodability, model, embedding, codes,
            bool(model.prior.periodic), k, folds, seed) or {}
    finally:
        model.train(was_training)
    results = {}
    for spec in model.covariates.specs:
        key = spec["key"]
        if key in shuffled and shuffled[key]["ignored"]:
            warn_ignored(key, shuffled[key], spreads[key])
        parts = {"output_spread": spreads[key], "shuffled": shuffled.get(key), "decodability": decodability.get(key),
                 "ignored": shuffled[key]["ignored"] if key in shuffled else None}
        results[key] = {"kind": spec["kind"]} | {name: part for name, part in parts.items() if part is not None}
    return results
