"""benchmarks/conditioning_modes.py (issue 28: FiLM at the output vs input concatenation): the input-concatenation
model's grouped likelihood table equals brute force, and the ``--quick`` run ends with one JSON line of figures."""

import json
import math
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.conditioning_modes import MODES, check_concat_table  # noqa: E402


def test_the_concatenation_table_equals_brute_force():
    worst = check_concat_table(seed=3)  # raises when a table or held-out estimate differs from brute force
    assert set(worst) == {"gaussian", "bernoulli"} and max(worst.values()) < 1e-3


def test_the_quick_run_prints_every_figure_and_a_recommendation():
    torch.set_num_threads(1)
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "conditioning_modes.py"), "--quick", "--only",
                          "known_discrete,mocap", "--threads", "1"], capture_output=True, text=True, timeout=180,
                         cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    assert figures["recommended_default"] in ("film_output", "input_concatenation")
    assert set(figures["datasets"]) == {"known_discrete", "mocap"}
    for result in figures["datasets"].values():
        assert math.isfinite(result["true_ll"]) and set(result["modes"]) == set(MODES)
        for entry in result["modes"].values():
            assert math.isfinite(entry["heldout_ll"]) and entry["interleaved_step_ms"] > 0
            assert -1.0 <= entry["aligned_r2"] <= 1.0
