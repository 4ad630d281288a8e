"""Start-up of the commands: wall time and peak memory of each command's ``--help`` (a fresh interpreter each,
the median of ``--repeats``), beside the full ``train.py --help-all`` and a bare ``import lightning`` (the floor of any
command that trains or reads a checkpoint). Targets (the speed issue): ``train.py --help`` <= 5 s and
``python -m lvm.tools.{embed,explore,trust,compare} --help`` <= 3 s each on 2 cores (none of them imports PyTorch or
Lightning). Last line: one JSON object.

    python benchmarks/startup.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "train_help": ["train.py", "--help"],
    "embed_help": ["-m", "lvm.tools.embed", "--help"],
    "explore_help": ["-m", "lvm.tools.explore", "--help"],
    "trust_help": ["-m", "lvm.tools.trust", "--help"],
    "compare_help": ["-m", "lvm.tools.compare", "--help"],
    "train_help_all": ["train.py", "--help-all"],
    "import_lightning": ["-c", "import lightning"],
}


def _run(args: list[str]) -> tuple[float, float, int]:
    """Seconds, peak resident MB of that process (``os.wait4``'s usage of the one child) and the lines it printed."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=out, stderr=subprocess.DEVNULL, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode:
            raise SystemExit(f"{' '.join(args)} failed with status {process.returncode}")
        out.seek(0)
        return seconds, usage.ru_maxrss / 1024, len(out.read().splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    report = {}
    for name, command in COMMANDS.items():
        runs = [_run(command) for _ in range(args.repeats)]
        report[name] = {"seconds": round(statistics.median(r[0] for r in runs), 3),
                        "peak_mb": round(max(r[1] for r in runs)), "lines": runs[0][2]}
        print(f"{name:18s} {report[name]['seconds']:7.2f} s  {report[name]['peak_mb']:6d} MB  {report[name]['lines']:5d} lines", flush=True)
    report["targets_met"] = {"train_help_le_5s": report["train_help"]["seconds"] <= 5,
                             **{f"{tool}_help_le_3s": report[f"{tool}_help"]["seconds"] <= 3
                                for tool in ("embed", "explore", "trust", "compare")}}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
