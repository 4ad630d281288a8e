"""The quick start alone and beside busy processes (issue 30: shared CPUs).

Runs ``python train.py --config configs/quickstart.yaml --trainer.logger false`` (a fresh process each time, with the
threads lvm chooses: :func:`lvm.runs.threads.limit_threads`) alone, beside 1 and beside 2 busy pure-Python processes
(``while True: pass``, as another user's analysis), and with ``--variants`` also under ``OMP_NUM_THREADS=1`` and
``OMP_WAIT_POLICY=PASSIVE`` beside one busy process. Reports the wall time of each, its ratio to the run alone, and
the run's ``test/log_likelihood`` (the same in every setting: the threads change the order of float sums only).
Targets: alone <= 60 s on 2 cores; beside one busy process <= 2x alone.

    python benchmarks/shared_cpus.py [--variants] [--epochs 150]

Measure with nothing else running on the machine. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUSY = [sys.executable, "-c", "while True: pass"]


def quickstart(root: Path, epochs: int, env: dict[str, str], busy: int) -> dict:
    """One quick start beside ``busy`` spinning processes: seconds and test/log_likelihood."""
    neighbours = [subprocess.Popen(BUSY) for _ in range(busy)]
    try:
        time.sleep(0.5 * busy)  # the neighbours are running before the run starts
        start = time.perf_counter()
        subprocess.run([sys.executable, "train.py", "--config", "configs/quickstart.yaml", "--trainer.logger", "false",
                        "--trainer.max_epochs", str(epochs), "--trainer.enable_progress_bar", "false",
                        "--trainer.default_root_dir", str(root)], cwd=ROOT, env={**os.environ, **env}, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
    finally:
        for process in neighbours:
            process.kill()
            process.wait()
    metrics = sorted(root.glob("quickstart-*/metrics.json"), key=lambda path: path.stat().st_mtime)[-1]
    return {"seconds": round(seconds, 1), "test_log_likelihood": round(json.loads(metrics.read_text())["test/log_likelihood"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=150, help="the quick start's own 150 by default")
    parser.add_argument("--variants", action="store_true", help="also OMP_NUM_THREADS=1 and OMP_WAIT_POLICY=PASSIVE")
    args = parser.parse_args()
    settings = {"alone": ({}, 0), "beside_1_busy": ({}, 1), "beside_2_busy": ({}, 2)}
    if args.variants:
        settings |= {"alone_omp_1_thread": ({"OMP_NUM_THREADS": "1"}, 0),
                     "alone_passive_wait": ({"OMP_WAIT_POLICY": "PASSIVE"}, 0),
                     "beside_1_busy_omp_1_thread": ({"OMP_NUM_THREADS": "1"}, 1),
                     "beside_1_busy_passive_wait": ({"OMP_WAIT_POLICY": "PASSIVE"}, 1)}
    report: dict = {"cpus": len(os.sched_getaffinity(0)), "epochs": args.epochs}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (env, busy) in settings.items():
            report[name] = quickstart(Path(tmp), args.epochs, env, busy)
            ratio = report[name]["seconds"] / report["alone"]["seconds"]
            report[name]["over_alone"] = round(ratio, 2)
            print(f"{name:28s} {report[name]['seconds']:7.1f} s  {ratio:5.2f}x  test/log_likelihood "
                  f"{report[name]['test_log_likelihood']}", flush=True)
    report["targets_met"] = {"alone_le_60s": report["alone"]["seconds"] <= 60,
                             "beside_1_busy_le_2x": report["beside_1_busy"]["over_alone"] <= 2}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
