"""The short ``train.py --help``: fast, readable, and true to the full parser."""

import re
import subprocess
import sys
from pathlib import Path

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
