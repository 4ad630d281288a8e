"""The short ``train.py --help``: fast, readable, and true to the full parser; the tools' ``--help`` imports none of
the heavy libraries."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _train_py(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_the_short_help_imports_no_lightning_and_names_only_real_options():
    short = _train_py("--config", "configs/quickstart.yaml", "--help")
    assert short.returncode == 0 and len(short.stdout.splitlines()) < 60
    imported = subprocess.run([sys.executable, "-c", "import sys, runpy; sys.argv = ['train.py', '-h']\n"
                               "try:\n    runpy.run_path('train.py', run_name='__main__')\nexcept SystemExit:\n    pass\n"
                               "print(sorted(m for m in ('torch', 'lightning', 'jsonargparse') if m in sys.modules))"],
                              cwd=ROOT, capture_output=True, text=True)
    assert imported.stdout.strip().endswith("[]"), imported.stdout
    full = _train_py("--help-all")
    assert full.returncode == 0 and len(full.stdout.splitlines()) > 500
    real = set(re.findall(r"(--[a-z_]+(?:\.[a-z_]+)*)", full.stdout))
    named = set(re.findall(r"(--[a-z_]+(?:\.[a-z_]+)*)", short.stdout)) - {"--help", "--help-all"}
    # every option the short help names is one of the parser's (a group's help or one class's argument aside)
    unknown = {o for o in named if o not in real and not o.endswith(".help") and not o.startswith(
        ("--model.objective.init_args.", "--data.init_args.", "--optimizer."))}  # a class's own arguments
    assert not unknown, unknown
    groups = {o for o in real if "." not in o and o not in ("--help", "--config")}
    assert groups <= named, groups - named  # and every top-level option or group is in it


def test_the_help_of_one_class_still_works():
    result = _train_py("--model.objective.help", "lvm.objectives.QMCObjective")
    assert result.returncode == 0 and "--model.objective.num_points" in result.stdout


# an option each tool's help names (its own or the shared checkpoint options), and the libraries its --help must not
# import (each costs seconds: Lightning alone about 5 s on 2 cores)
TOOL_OPTIONS = {"embed": "--out", "explore": "--max_images", "trust": "--bandwidth", "compare": "--configs",
                "trajectory": "--max_figures"}
HEAVY = ("torch", "lightning", "pandas", "bokeh", "matplotlib", "sklearn")


@pytest.mark.parametrize("tool", sorted(TOOL_OPTIONS))
def test_a_tools_help_imports_neither_pytorch_nor_the_other_heavy_libraries(tool):
    """``python -m lvm.tools.<tool> --help`` as the command runs it (``runpy``, as ``-m`` does), then the heavy
    modules in ``sys.modules`` (a behavioural check, not a timing: ``benchmarks/startup.py`` times it)."""
    code = (f"import runpy, sys\nsys.argv = ['lvm.tools.{tool}', '--help']\n"
            f"try:\n    runpy.run_module('lvm.tools.{tool}', run_name='__main__', alter_sys=True)\n"
            "except SystemExit as exit:\n    assert not exit.code, exit.code\n"
            f"print('imported:', sorted(m for m in {HEAVY!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert TOOL_OPTIONS[tool] in result.stdout and "usage:" in result.stdout
    assert result.stdout.splitlines()[-1] == "imported: []"
