"""Which conditional decoder trains better (issue 28): FiLM at the decoder's output (the library's, lvm.covariates)
or the covariates concatenated to the decoder's input, against the unconditional model, on data with a known truth.

Modes, trained on the same data, splits, seeds, batches, epochs, optimiser (Adam, lr 1e-3) and QMC settings:

* ``film`` (A): ``LatentVariableModel(covariates=...)``: ``params = f(z) (1 + gain(c)) + offset(c)``; the lattice is
  decoded once per step whatever the covariates (the library's defaults: covariate_hidden 64, a warm-up of a tenth of
  the run's steps, at most 200, in which only the covariates' offsets learn).
* ``concat`` (B): the decoder's input is ``[prior.features(z), covariate features]`` (one-hot for a discrete
  covariate, the standardised value for a continuous one, quantised to the same levels as (A)). Implemented here
  only (:class:`ConcatModel`): the likelihood table of a batch decodes the lattice once per DISTINCT covariate row of
  the batch and scores each group of examples against its own decoding; the held-out estimate the same way, with the
  same lattice size and shift. :func:`check_concat_table` checks that table against brute force.
* ``unconditional`` (C): the reference.
* ``film_no_warmup``: (A) with ``covariate_warmup_steps: 0``, a diagnostic of the warm-up; the verdict compares (A)
  with its defaults.

Data sets, generated here from a known latent and covariate (no downloads), so the true held-out log-likelihood
(the true model's integral over z on a fine grid) and the latent's recovery (``aligned_r2`` of the posterior mean
against the true latent, 1 = perfect up to the torus' symmetries) are known:

1. ``known_discrete`` / ``known_continuous``: the known-answer data of tests/test_conditional.py (``_synthetic``:
   1-D periodic latent, 20 features, a discrete covariate with 4 categories or a continuous one quantised to the
   library's default 32 levels), the test's model (MLP (64, 64), Gaussian with the true variance, 1-D torus, m = 256, held-out m = 1024).
2. ``mocap``: windows of 10 frames of 12 synthetic joint angles of 3 subjects whose joint offsets and amplitudes
   differ; 2-D latent (gait phase, style); Gaussian likelihood with identity mean and variance 0.1 (the mocap config),
   MLP (128, 256), m = 377, held-out m = 1597; conditioned on the subject.
3. ``vocalization``: 32 x 32 binary spectrograms of 3 birds singing harmonic stacks at bird-specific pitches (2-D
   latent: the contour's slope and bend, the syllable's length and loudness); Bernoulli likelihood, the CPU
   vocalization config's decoder kind (ConvDecoder, hidden 128, channels (16, 8)), m = 233, held-out m = 987;
   conditioned on the bird.

Seeds (model initialisation, batch order, lattice shifts; data and splits fixed): 3 for ``known_discrete`` and
``mocap``, 1 for the costlier ``known_continuous`` and ``vocalization`` (``--seeds``); held-out ll and R^2 are the
medians over the seeds (a periodic latent can settle in a folded optimum, and which mode does differs by seed).

Reported per data set and mode: held-out log-likelihood (nats/example, test split, fixed shift), its gap to the true
model's, the fraction of the unconditional model's gap that the covariate closes, aligned R^2, the median training
step (forward, backward and Adam step) during training and the median of an interleaved step benchmark (A, B, C
round-robin on the same batch, so load from other processes hits them alike). The last output line is one JSON
object with all figures and ``recommended_default``.

Usage: ``python benchmarks/conditioning_modes.py [--quick] [--epochs-scale 1.0] [--threads 1] [--only mocap,...]``
(default settings: 6 minutes on a shared 2-core CPU, 1 thread; ``--quick``: about 15 s).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import statistics
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lvm.analysis.consistency import aligned_r2  # noqa: E402
from lvm.covariates import CovariateError, Covariates  # noqa: E402
from lvm.estimators.qmc import pairwise_table  # noqa: E402
from lvm.likelihoods import BernoulliLikelihood, GaussianLikelihood  # noqa: E402
from lvm.model import LatentVariableModel  # noqa: E402
from lvm.networks import ConvDecoder, MLPDecoder  # noqa: E402
from lvm.numerics.logspace import log_mean_exp  # noqa: E402
from lvm.objectives import QMCObjective  # noqa: E402
from lvm.priors import TorusPrior  # noqa: E402

MODES = ("film", "film_no_warmup", "concat", "unconditional")


# ----- (B): the covariates concatenated to the decoder's input ------------------------------------------------------

class ConcatDecoder(nn.Module):
    """A decoder whose input is ``[prior features (latent_width), covariate features (width)]``; an input of the
    latent features only is completed with zeros (the constructor's probe of the output size)."""

    def __init__(self, inner: nn.Module, latent_width: int, width: int):
        super().__init__()
        self.inner, self.latent_width, self.width = inner, latent_width, width
        self.data_shape = getattr(inner, "data_shape", None)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if inputs.shape[1] == self.latent_width:
            inputs = torch.cat([inputs, inputs.new_zeros(len(inputs), self.width)], dim=1)
        return self.inner(inputs)


def covariate_width(encoding: Covariates) -> int:
    return sum(len(spec["categories"]) if spec["kind"] != "continuous" else 1 for spec in encoding.specs)


class ConcatModel(LatentVariableModel):
    """Input concatenation. ``encoding``: a FITTED :class:`lvm.covariates.Covariates` used for its encodings and level
    quantisation only (kept outside the module tree: its FiLM network is neither used nor trained). The examples of a
    batch are grouped by their (quantised) covariate row, the lattice is decoded once per row with that row's features
    at the input, and each group is scored against its own decoding."""

    def __init__(self, decoder: nn.Module, likelihood, prior, objective, encoding: Covariates, **kwargs):
        if not encoding.fitted:
            raise CovariateError("ConcatModel needs fitted encodings (Covariates.fit on the training split).")
        latent_width = prior.features(torch.zeros(1, prior.dim)).shape[1]
        super().__init__(ConcatDecoder(decoder, latent_width, covariate_width(encoding)), likelihood, prior, objective,
                         **kwargs)
        self.__dict__["encoding"] = encoding
        self._concat_codes: torch.Tensor | None = None

    @contextlib.contextmanager
    def given(self, covariates):
        if covariates is None:
            yield
            return
        codes = torch.as_tensor(covariates, dtype=torch.float32).reshape(-1, len(self.encoding.specs))
        previous, self._concat_codes = self._concat_codes, codes
        try:
            yield
        finally:
            self._concat_codes = previous

    def given_codes(self) -> torch.Tensor:
        if self._concat_codes is None:
            raise CovariateError("ConcatModel: give each example's covariates (with model.given(codes): ...).")
        return self._concat_codes

    def row_features(self, rows: torch.Tensor) -> torch.Tensor:
        """The decoder's covariate inputs ``[U, width]`` of covariate rows ``[U, C]``: one-hot / standardised value."""
        parts = []
        for k, spec in enumerate(self.encoding.specs):
            if spec["kind"] != "continuous":
                parts.append(F.one_hot(rows[:, k].round().long(), len(spec["categories"])).float())
            else:
                parts.append(rows[:, k:k + 1].float())
        return torch.cat(parts, dim=1)

    def decode_under(self, z: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Decoder outputs ``[n, P]`` of ``z`` ``[n, d]`` under covariate features ``[n or 1, width]``."""
        latent = self.prior.features(z)
        inputs = torch.cat([latent, features.to(latent).expand(len(z), -1)], dim=1)
        return self._decoder(inputs).flatten(start_dim=1)

    def pairwise_log_likelihood(self, x_flat: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        codes = self.given_codes()
        if len(codes) != len(x_flat):
            raise ValueError(f"{len(x_flat)} examples but covariates for {len(codes)}.")
        rows, inverse = self.encoding.rows(codes)  # the same quantisation as the FiLM model's
        features = self.row_features(rows)  # [U, width]
        if len(rows) == 1:
            return self._likelihood_table(x_flat, self.decode_under(z, features[:1]))
        order = torch.argsort(inverse, stable=True)
        counts = torch.bincount(inverse, minlength=len(rows)).tolist()
        parts = [self._likelihood_table(x_flat[members], self.decode_under(z, features[u:u + 1]))
                 for u, members in enumerate(order.split(counts)) if len(members)]  # one decoding per distinct row
        return torch.cat(parts)[torch.argsort(order)]

    def pairwise_from_params(self, x_flat, params):
        raise NotImplementedError("ConcatModel's outputs depend on the covariates: use pairwise_log_likelihood.")

    def lattice_table(self, x_flat: torch.Tensor, cube_points: torch.Tensor) -> torch.Tensor:
        z = self.lattice_latents(cube_points, x_flat)  # no cache of decoded lattices: they depend on the rows
        return pairwise_table(lambda z_: self.pairwise_log_likelihood(x_flat, z_), z, self.eval_chunk_size)

    def decoder_params(self, z: torch.Tensor) -> torch.Tensor:
        codes = self.given_codes()
        rows, inverse = self.encoding.rows(codes)
        features = self.row_features(rows)[inverse]  # [b, width]
        return self.decode_under(z, features.repeat(len(z) // len(codes), 1))


def check_concat_table(seed: int = 0) -> dict:
    """(B)'s grouped table (training and held-out paths) against brute force: every pair (x_i, z_j) decoded with
    x_i's own covariate features. Returns the largest absolute differences; raises AssertionError when they are off."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    n, dim, size = 24, 2, 7
    specs = [{"key": "animal", "kind": "discrete"}, {"key": "duration", "kind": "continuous", "levels": 5}]
    columns = {"animal": np.array(["owl", "bat", "finch"])[rng.integers(0, 3, n)], "duration": rng.uniform(0, 1, n)}
    worst = {}
    for name, likelihood in (("gaussian", GaussianLikelihood(0.1, "identity")), ("bernoulli", BernoulliLikelihood())):
        encoding = Covariates(specs, size * likelihood.params_per_dim)
        encoding.fit(columns)
        model = ConcatModel(MLPDecoder([size], [16]), likelihood, TorusPrior(dim), QMCObjective(89, chunk_size=None),
                            encoding, eval_num_points=144).eval()
        codes = encoding.encode(columns)
        x = torch.rand(n, size) if name == "gaussian" else (torch.rand(n, size) < 0.4).float()
        z = torch.rand(30, dim)
        rows, inverse = encoding.rows(codes)
        assert len(rows) > 3, "the check needs several groups"
        with torch.no_grad():
            with model.given(codes):
                table = model.pairwise_log_likelihood(x, z)  # [n, 30]
                heldout = model.log_likelihood(x, 144, 0)  # [n]
            brute = torch.stack([likelihood.log_prob(x[i], model.decode_under(z, model.row_features(rows[inverse[i]][None])))
                                 for i in range(n)])  # [n, 30], each pair under c_i
            shifted = model.lattice_latents(model.shifted_lattice(144, 0), x)
            brute_heldout = torch.stack([log_mean_exp(likelihood.log_prob(x[i], model.decode_under(
                shifted, model.row_features(rows[inverse[i]][None]))), dim=0) for i in range(n)])
            # a different row's decoding gives a different table (the covariates are used)
            other = likelihood.log_prob(x[0], model.decode_under(z, model.row_features(rows[(inverse[0] + 1) % len(rows)][None])))
        torch.testing.assert_close(table, brute, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(heldout, brute_heldout, rtol=1e-5, atol=1e-4)
        assert not torch.allclose(other, brute[0])
        worst[name] = max(float((table - brute).abs().max()), float((heldout - brute_heldout).abs().max()))
    return worst


# ----- data sets with a known truth ---------------------------------------------------------------------------------

def _load_test_conditional():
    spec = importlib.util.spec_from_file_location("_test_conditional", ROOT / "tests" / "test_conditional.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def known_answer(kind: str) -> dict:
    """tests/test_conditional.py's ``_synthetic`` data (the same generator, seeds and sizes)."""
    tc = _load_test_conditional()
    z, x, metadata, mean = tc._synthetic(kind)
    key = metadata.columns[0]

    def true_ll(rows):
        return tc._true_log_likelihood(x, rows, mean)

    spec = {"key": key, "kind": "discrete"} if kind == "discrete" else {"key": key, "kind": "continuous", "levels": 32}
    return {"x": x, "z": z[:, None], "covariate": metadata[key].to_numpy(), "spec": spec, "true_ll": true_ll,
            "shape": [tc.D], "latent_dim": 1,
            "likelihood": lambda: GaussianLikelihood(tc.SIGMA ** 2, "identity"),
            "decoder": lambda: MLPDecoder([tc.D], [64, 64]), "points": 256, "eval_points": 1024, "epochs": 100,
            "seeds": 3 if kind == "discrete" else 1}


def _grid(side: int) -> np.ndarray:
    u = (np.arange(side) + 0.5) / side
    return np.stack(np.meshgrid(u, u, indexing="ij"), -1).reshape(-1, 2)  # [side^2, 2]


def _true_ll_table(x: np.ndarray, covariate: np.ndarray, rows: np.ndarray, mean_of, grid: np.ndarray, score) -> float:
    """The true model's held-out log-likelihood: log of the mean of p(x | z, c) over a fine grid of z."""
    values = []
    xt = torch.from_numpy(x[rows]).double()
    for c in np.unique(covariate[rows]):
        members = np.flatnonzero(covariate[rows] == c)
        params = torch.from_numpy(mean_of(grid, c)).double()  # [G, D]
        table = score(xt[members], params)  # [b_c, G]
        values.append(torch.logsumexp(table, 1) - math.log(len(grid)))
    return float(torch.cat(values).mean())


MOCAP_VARIANCE, FRAMES, JOINTS = 0.1, 10, 12


def mocap(n_per_subject: int = 800, seed: int = 1) -> dict:
    """Windows [10 frames, 12 joint angles] of 3 subjects: angle_j(t) = offset_sj + amp_sj (1 + 0.35 cos(2 pi u + psi_j))
    sin(2 pi (phase + 0.05 t) + theta_j) + 0.3 amp_sj sin(2 pi u + chi_j), latent (phase, u) uniform on the torus,
    Gaussian noise of variance 0.1. The subjects' offsets (N(0, 1)) exceed the movement's signal."""
    rng = np.random.default_rng(seed)
    subjects = 3
    offsets, amps = rng.normal(size=(subjects, JOINTS)), rng.uniform(0.5, 1.5, size=(subjects, JOINTS))
    psi, theta, chi = (rng.uniform(0, 2 * np.pi, JOINTS) for _ in range(3))
    t = np.arange(FRAMES)[:, None]

    def mean_of(z, s):
        phase, u = z[:, 0, None, None], z[:, 1, None, None]
        style = 1 + 0.35 * np.cos(2 * np.pi * u + psi)
        angle = offsets[s] + amps[s] * style * np.sin(2 * np.pi * (phase + 0.05 * t) + theta) \
            + 0.3 * amps[s] * np.sin(2 * np.pi * u + chi)
        return angle.reshape(len(z), -1)  # [n, 120]

    s = np.repeat(np.arange(subjects), n_per_subject)
    z = rng.random((len(s), 2))
    x = np.concatenate([mean_of(z[s == k], k) for k in range(subjects)])
    x = x + math.sqrt(MOCAP_VARIANCE) * rng.normal(size=x.shape)
    grid = _grid(128)

    def score(xt, params):
        sq = (xt ** 2).sum(1, keepdim=True) - 2 * xt @ params.T + (params ** 2).sum(1)
        return -0.5 * sq / MOCAP_VARIANCE - 0.5 * xt.shape[1] * math.log(2 * math.pi * MOCAP_VARIANCE)

    return {"x": x.astype(np.float32), "z": z, "covariate": np.array([f"subject{k}" for k in s]),
            "spec": {"key": "subject", "kind": "discrete"},
            "true_ll": lambda rows: _true_ll_table(x.astype(np.float32), s, rows, mean_of, grid, score),
            "shape": [FRAMES, JOINTS], "latent_dim": 2,
            "likelihood": lambda: GaussianLikelihood(MOCAP_VARIANCE, "identity"),
            "decoder": lambda: MLPDecoder([FRAMES, JOINTS], [128, 256]), "points": 377, "eval_points": 1597,
            "epochs": 60, "seeds": 3}


SIDE = 32


def render(z: np.ndarray, bird: int) -> np.ndarray:
    """Bernoulli probabilities [n, 1024] of 32 x 32 spectrograms (frequency x time) of harmonic stacks: bird b's
    fundamental at F0[b] bins (harmonics at 2x, 3x with the bird's weights); z[:, 0] sets the pitch contour's slope
    and bend, z[:, 1] the syllable's length and loudness."""
    f0 = (3.5, 5.0, 6.5)[bird]
    weights = ((1.0, 0.6, 0.3), (1.0, 0.3, 0.7), (0.6, 1.0, 0.3))[bird]
    t = (np.arange(SIDE) + 0.5) / SIDE  # time
    f = np.arange(SIDE)[:, None]  # frequency bins [F, 1]
    slope = 0.3 * np.cos(2 * np.pi * z[:, 0])[:, None]
    bend = 0.3 * np.sin(2 * np.pi * z[:, 0])[:, None]
    contour = f0 * (1 + slope * (2 * t - 1) + bend * (1 - (2 * t - 1) ** 2))  # [n, T]
    length = (0.55 + 0.25 * np.cos(2 * np.pi * z[:, 1]))[:, None]
    loud = (0.75 + 0.2 * np.sin(2 * np.pi * z[:, 1]))[:, None, None]
    envelope = 1 / (1 + np.exp(-(t - 0.5 + length / 2) / 0.03)) / (1 + np.exp((t - 0.5 - length / 2) / 0.03))  # [n, T]
    image = sum(w * np.exp(-0.5 * ((f[None] - (k + 1) * contour[:, None, :]) / 0.9) ** 2)
                for k, w in enumerate(weights))  # [n, F, T]
    image = loud * envelope[:, None, :] * image
    return (0.03 + 0.9 * np.clip(image, 0, 1)).reshape(len(z), -1)


def vocalization(n_per_bird: int = 600, seed: int = 2) -> dict:
    rng = np.random.default_rng(seed)
    birds = np.repeat(np.arange(3), n_per_bird)
    z = rng.random((len(birds), 2))
    p = np.concatenate([render(z[birds == b], b) for b in range(3)])
    x = (rng.random(p.shape) < p).astype(np.float32)
    grid = _grid(64)

    def score(xt, probs):
        return xt @ probs.log().T + (1 - xt) @ torch.log1p(-probs).T

    return {"x": x.reshape(-1, 1, SIDE, SIDE), "z": z, "covariate": np.array([f"bird{b}" for b in birds]),
            "spec": {"key": "bird", "kind": "discrete"},
            "true_ll": lambda rows: _true_ll_table(x, birds, rows, render, grid, score),
            "shape": [1, SIDE, SIDE], "latent_dim": 2, "likelihood": BernoulliLikelihood,
            "decoder": lambda: ConvDecoder(hidden=128, channels=[16, 8], data_shape=[1, SIDE, SIDE]),
            "points": 233, "eval_points": 987, "epochs": 30}


DATASETS = {"known_discrete": lambda: known_answer("discrete"), "known_continuous": lambda: known_answer("continuous"),
            "mocap": mocap, "vocalization": vocalization}


# ----- training and evaluation ---------------------------------------------------------------------------------------

def build(mode: str, data: dict, train_rows: np.ndarray, seed: int):
    """The model of ``mode`` and every example's covariate codes ``[N, 1]`` (None for the unconditional model)."""
    columns = {data["spec"]["key"]: data["covariate"]}
    train_columns = {data["spec"]["key"]: data["covariate"][train_rows]}
    likelihood = data["likelihood"]()
    objective = QMCObjective(data["points"], chunk_size=None)  # one pass for every mode
    torch.manual_seed(seed)
    common = {"eval_num_points": data["eval_points"]}
    if mode.startswith("film"):
        warmup = {"covariate_warmup_steps": 0} if mode == "film_no_warmup" else {}  # else the library's default
        model = LatentVariableModel(data["decoder"](), likelihood, TorusPrior(data["latent_dim"]), objective,
                                    covariates=[dict(data["spec"])], **common, **warmup)
        model.covariates.fit(train_columns)
        model.hparams["covariates"] = [dict(spec) for spec in model.covariates.specs]
        torch.manual_seed(seed + 1)
        model.covariates._build()  # the FiLM network, built after fitting as attach_covariates does
        return model, model.covariates.encode(columns)
    if mode == "concat":
        size = math.prod(data["shape"]) * likelihood.params_per_dim
        encoding = Covariates([dict(data["spec"])], size)
        encoding.fit(train_columns)
        model = ConcatModel(data["decoder"](), likelihood, TorusPrior(data["latent_dim"]), objective, encoding, **common)
        return model, encoding.encode(columns)
    return LatentVariableModel(data["decoder"](), likelihood, TorusPrior(data["latent_dim"]), objective, **common), None


def train(model, x: torch.Tensor, codes, epochs: int, batch: int, seed: int) -> dict:
    """Adam (lr 1e-3) on shuffled batches, the same order and lattice shifts for every mode; the FiLM model's
    warm-up (only the covariates' network learns for covariate_warmup_steps) runs as under a Trainer."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    fake_trainer = model.covariates is not None
    if fake_trainer:  # _covariates_warming reads the trainer's global step
        model.__dict__["_trainer"] = types.SimpleNamespace(global_step=0, estimated_stepping_batches=epochs * math.ceil(
            len(x) / batch))
    torch.manual_seed(seed)  # the lattice shifts
    model.train()
    times, losses, step = [], [], 0
    start = time.perf_counter()
    for _ in range(epochs):
        for index in torch.randperm(len(x), generator=generator).split(batch):
            if fake_trainer:
                model.__dict__["_trainer"].global_step = step
            began = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            with model.given(None if codes is None else codes[index]):
                loss = model.objective(model, x[index])["loss"]
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - began)
            losses.append(float(loss.detach()))
            step += 1
    if fake_trainer:
        model.__dict__["_trainer"] = None
    model.eval()
    if not all(math.isfinite(v) for v in losses):
        raise FloatingPointError("a training loss was not finite")
    return {"steps": step, "train_seconds": time.perf_counter() - start, "step_ms": 1e3 * statistics.median(times),
            "final_loss": float(np.mean(losses[-max(1, len(losses) // epochs):]))}


@torch.no_grad()
def evaluate(model, x: torch.Tensor, codes, z_true: np.ndarray, points: int) -> dict:
    lls, embeddings = [], []
    for start in range(0, len(x), 512):
        chunk = slice(start, start + 512)
        with model.given(None if codes is None else codes[chunk]):
            lls.append(model.log_likelihood(x[chunk], points, 0))
            embeddings.append(model.embed(x[chunk]))
    ll, embedding = torch.cat(lls), torch.cat(embeddings).numpy()
    return {"heldout_ll": float(ll.mean()), "aligned_r2": aligned_r2(z_true, embedding, periodic=True)}


def interleaved_steps(models: dict, x: torch.Tensor, codes: dict, repeats: int) -> dict:
    """Median forward + backward of each mode's objective on the same batch, the modes round-robin."""
    times = {name: [] for name in models}
    for model in models.values():
        model.train()
    for r in range(repeats + 1):
        for name, model in models.items():
            began = time.perf_counter()
            model.zero_grad(set_to_none=True)
            with model.given(codes[name]):
                model.objective(model, x)["loss"].backward()
            if r:  # the first round warms up
                times[name].append(time.perf_counter() - began)
    for model in models.values():
        model.zero_grad(set_to_none=True)
        model.eval()
    return {name: 1e3 * statistics.median(values) for name, values in times.items()}


def run_dataset(name: str, data: dict, args) -> dict:
    """Every mode on one data set, for each seed (model initialisation, batch order, lattice shifts; the data and
    splits stay): held-out ll and aligned R^2 are the medians over the seeds (each seed's kept in ``*_per_seed``),
    the step times those of the first seed's models."""
    x_all = torch.from_numpy(data["x"])
    n = len(x_all)
    rng = np.random.default_rng(0)
    rows = rng.permutation(n)
    if args.quick:
        rows = rows[: min(n, 600)]
    cut = int(0.8 * len(rows))
    train_rows, test_rows = np.sort(rows[:cut]), np.sort(rows[cut:])
    epochs = max(1, round(data["epochs"] * args.epochs_scale)) if not args.quick else 3
    seeds = [args.seed + k for k in range(1 if args.quick else (args.seeds or data.get("seeds", 1)))]
    began = time.perf_counter()
    true_ll = data["true_ll"](test_rows)
    result = {"examples_train": len(train_rows), "examples_test": len(test_rows), "epochs": epochs,
              "batch": args.batch, "points": data["points"], "eval_points": data["eval_points"],
              "covariate": data["spec"], "true_ll": true_ll, "seeds": seeds, "modes": {}}
    models, codes_all = {}, {}
    for seed in seeds:
        for mode in MODES:
            model, codes = build(mode, data, train_rows, seed)
            fit = train(model, x_all[train_rows], None if codes is None else codes[train_rows], epochs, args.batch,
                        seed)
            scores = evaluate(model, x_all[test_rows], None if codes is None else codes[test_rows],
                              data["z"][test_rows], data["eval_points"])
            if seed == seeds[0]:
                if mode.startswith("film"):
                    fit["rows_per_batch"] = float(np.mean([len(model.covariates.rows(
                        codes[train_rows][i:i + args.batch])[0]) for i in range(0, len(train_rows), args.batch)]))
                result["modes"][mode] = {**fit, "heldout_ll_per_seed": [], "aligned_r2_per_seed": []}
                models[mode], codes_all[mode] = model, codes
            result["modes"][mode]["heldout_ll_per_seed"].append(scores["heldout_ll"])
            result["modes"][mode]["aligned_r2_per_seed"].append(scores["aligned_r2"])
    for entry in result["modes"].values():
        entry["heldout_ll"] = float(np.median(entry["heldout_ll_per_seed"]))
        entry["aligned_r2"] = float(np.median(entry["aligned_r2_per_seed"]))
        entry["gap_to_true"] = entry["heldout_ll"] - true_ll
    gap = true_ll - result["modes"]["unconditional"]["heldout_ll"]
    for mode in ("film", "film_no_warmup", "concat"):
        entry = result["modes"][mode]
        entry["gap_closed"] = (entry["heldout_ll"] - result["modes"]["unconditional"]["heldout_ll"]) / gap \
            if abs(gap) > 1e-9 else float("nan")
    batch_rows = torch.from_numpy(rng.permutation(train_rows)[: args.batch])  # a mixed batch, as in training
    step = interleaved_steps(models, x_all[batch_rows], {m: None if c is None else c[batch_rows]
                                                          for m, c in codes_all.items()}, args.repeats)
    for mode in MODES:
        result["modes"][mode]["interleaved_step_ms"] = step[mode]
    result["seconds"] = time.perf_counter() - began
    return result


def _compare(results: dict, film_mode: str) -> dict:
    """Per data set: concatenation against ``film_mode`` (held-out ll margin, a tie under max(0.5 nats, 1% of |true
    ll|), R^2 margin, step-time ratio)."""
    wins = {}
    for name, result in results.items():
        film, concat = result["modes"][film_mode], result["modes"]["concat"]
        margin = concat["heldout_ll"] - film["heldout_ll"]  # > 0: concatenation better
        tolerance = max(0.5, 0.01 * abs(result["true_ll"]))
        winner = "tie" if abs(margin) < tolerance else ("concat" if margin > 0 else "film")
        wins[name] = {"winner": winner, "concat_minus_film_nats": margin, "tie_tolerance_nats": tolerance,
                      "concat_minus_film_r2": concat["aligned_r2"] - film["aligned_r2"],
                      "step_ratio_concat_over_film": concat["interleaved_step_ms"] / film["interleaved_step_ms"]}
    return wins


def _sentence(wins: dict, film_name: str) -> str:
    groups = {w: [k for k, v in wins.items() if v["winner"] == w] for w in ("film", "concat", "tie")}
    return (f"{film_name} vs concatenation: {film_name} better on {groups['film'] or 'none'}, concatenation better on "
            f"{groups['concat'] or 'none'}, tied on {groups['tie'] or 'none'} (concat - film, nats/example: "
            + ", ".join(f"{k} {v['concat_minus_film_nats']:+.2f}" for k, v in wins.items())
            + "; aligned R^2: " + ", ".join(f"{k} {v['concat_minus_film_r2']:+.2f}" for k, v in wins.items()) + ")")


def verdict(results: dict) -> dict:
    """Which mode wins where, by how much, and the default that follows. The library's FiLM (with its defaults,
    warm-up included) against concatenation decides: the mode better on more data sets by held-out log-likelihood; on
    equal counts (ties included) the cheaper step, FiLM's. FiLM without the warm-up is compared alike, for the
    reason."""
    wins, no_warmup = _compare(results, "film"), _compare(results, "film_no_warmup")
    concat_count = sum(v["winner"] == "concat" for v in wins.values())
    film_count = sum(v["winner"] == "film" for v in wins.values())
    default = "input_concatenation" if concat_count > film_count else "film_output"
    ratios = ", ".join(f"{k} {v['step_ratio_concat_over_film']:.1f}x" for k, v in wins.items())
    reason = (f"{_sentence(wins, 'FiLM (library defaults)')}; {_sentence(no_warmup, 'FiLM without warm-up')}; "
              f"a concatenation step costs {ratios} a FiLM step (interleaved medians)")
    return {"recommended_default": default, "reason": reason, "per_dataset": wins,
            "per_dataset_film_no_warmup": no_warmup}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 600 examples, 3 epochs (< 1 min)")
    parser.add_argument("--epochs-scale", type=float, default=1.0, help="multiply every data set's epochs")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0, help="the first seed")
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds per data set (default: 3 for known_discrete and mocap, 1 for the costlier "
                             "known_continuous and vocalization; --quick: 1)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved step repeats (default 15, quick 3)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: these networks are small, and on a CPU shared with other "
                             "processes a second OpenMP thread made steps 10-30x slower)")
    parser.add_argument("--only", default=",".join(DATASETS), help="comma-separated data sets")
    args = parser.parse_args()
    args.repeats = args.repeats or (3 if args.quick else 15)
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    check = check_concat_table()
    print(f"concat table vs brute force: max |difference| {check}")
    results = {}
    for name in args.only.split(","):
        data = DATASETS[name]()
        results[name] = run_dataset(name, data, args)
        r = results[name]
        print(f"\n{name}: {r['examples_train']} train / {r['examples_test']} test, {r['epochs']} epochs, batch "
              f"{r['batch']}, m = {r['points']} (held-out {r['eval_points']}), true ll {r['true_ll']:.2f}, "
              f"{r['seconds']:.0f} s, seeds {r['seeds']} (ll, R^2: medians over the seeds)")
        print(f"  {'mode':<14}{'heldout ll':>11}{'- true':>9}{'gap closed':>11}{'aligned R2':>11}"
              f"{'step ms':>9}{'interl. ms':>11}{'train s':>9}")
        for mode, e in r["modes"].items():
            closed = f"{e['gap_closed']:.3f}" if "gap_closed" in e else "-"
            print(f"  {mode:<14}{e['heldout_ll']:>11.3f}{e['gap_to_true']:>9.3f}{closed:>11}{e['aligned_r2']:>11.3f}"
                  f"{e['step_ms']:>9.2f}{e['interleaved_step_ms']:>11.2f}{e['train_seconds']:>9.1f}"
                  + (f"   per seed ll {[round(v, 2) for v in e['heldout_ll_per_seed']]} R2 "
                     f"{[round(v, 3) for v in e['aligned_r2_per_seed']]}" if len(r["seeds"]) > 1 else ""))
        sys.stdout.flush()
    summary = verdict(results)
    print(f"\nrecommended default: {summary['recommended_default']}: {summary['reason']}")
    print(json.dumps({"quick": args.quick, "threads": args.threads, "seconds": time.perf_counter() - began,
                      "concat_check_max_abs_diff": check, "datasets": results, **summary}))


if __name__ == "__main__":
    main()
