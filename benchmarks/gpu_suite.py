"""Every benchmark in one command, at the papers' sizes on a GPU (issue 30), in about 8 minutes.

Runs each benchmark script as a subprocess with its own timeout, most important first: the QMC training step and the
held-out evaluation at m = 2584 and 6765 on MNIST-sized data, the 2-D MNIST QLVM epoch, the test phase, then the same
QMC step and held-out evaluation on 128 x 128 spectrogram-sized data, the QMC step and the test phase under bf16 mixed
precision, the chunked QMC step's memory, the other likelihoods' QMC steps, the MLAE, Taylor and R-VAE steps and the
spectrogram inversion's throughput and the test phase with a compiled decoder. Whatever no longer fits in ``--budget-s`` is skipped with a note; a benchmark that
fails or times out is recorded with its exit status and error, and the suite goes on.

Each benchmark's last output line (one JSON object) is kept in ``<out>/<stem>/<benchmark>.json`` with its command, wall
time and status, and ``<out>/<stem>.md`` has one table of them all: the torch version and device, each command, its
wall time, its key figures and ``targets_met`` where the benchmark reports them, and the issue's GPU targets where the
figures exist (the QMC step <= 1.05x the decoder-only pass, the 2-D MNIST QLVM epoch at m = 2584 and batch 128 <= 2 s,
the held-out evaluation <= 1.5x its matrix-product floor). ``<stem>`` is ``<device name>-<YYYY-MM-DD>`` (``-tiny``
added at tiny sizes); both files are rewritten after every benchmark, so a suite cut short keeps what it measured.

``--tiny`` (the default where no CUDA device is found) runs every benchmark script at tiny sizes with one repeat (a
run that only repeats another's with other sizes is left out), which takes about 5 minutes on 2 CPU cores: the suite's
own test, not a measurement.

    python benchmarks/gpu_suite.py [--tiny | --paper] [--budget-s 480] [--out benchmarks/results] [--only NAME ...]

The last output line is one JSON object: the summary.
"""

from __future__ import annotations

import argparse
import datetime
import fnmatch
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TAIL_CHARS = 4000


@dataclass(frozen=True)
class Benchmark:
    """One run of a benchmark script: its options at the papers' sizes and at tiny sizes, its timeout at the papers'
    sizes, the dotted names (shell-style patterns) of the figures the table shows, whether it takes ``--device``, and
    ``tiny_as``: the benchmark whose run it repeats at tiny sizes, with other numbers only (left out at tiny sizes when
    that one runs, as it would only check the same code again)."""

    name: str
    script: str
    paper: tuple[str, ...]
    tiny: tuple[str, ...]
    timeout_s: float
    figures: tuple[str, ...]
    takes_device: bool = True
    tiny_as: str | None = None


_QMC = ("qmc_over_decoder_only", "naive_over_qmc_time", "naive_over_qmc_memory", "iwae_over_qmc_time",
        "time_ms.decoder_only", "time_ms.qmc", "peak_memory_mb.qmc")
_HELDOUT = ("seconds", "matmul_floor_seconds", "over_floor", "examples_per_s", "peak_memory_mb")
_TEST_PHASE = ("test_loop_s", "test_phase_s", "phase_over_loop", "heldout_s", "embed_s", "embed_over_heldout")
_SPECTROGRAM = ("--data", "spectrogram", "--no-naive")

# most important first: the suite skips from the end when the budget runs out
BENCHMARKS = (
    Benchmark("qmc_step_mnist_m2584", "qmc_step.py", ("--points", "2584", "--batch", "128", "--repeats", "5"),
              ("--points", "144", "--batch", "16", "--repeats", "1"), 90, _QMC),
    Benchmark("heldout_mnist_m6765", "heldout_eval.py",
              ("--examples", "10000", "--points", "6765", "--batch", "1000"),
              ("--examples", "200", "--points", "144", "--batch", "100"), 60, _HELDOUT),
    Benchmark("epoch_qlvm_mnist", "epoch_time.py", ("--qlvm-mnist", "--epochs", "3"),
              ("--qlvm-mnist", "--epochs", "2", "--train-size", "512", "--points", "144"), 150,
              ("qlvm_mnist.lvm_train_s", "qlvm_mnist.lvm_s", "qlvm_mnist.plain_s", "qlvm_mnist.lvm_train_over_plain")),
    Benchmark("test_phase", "test_phase.py", ("--train", "5000", "--test", "10000", "--steps", "40"),
              ("--train", "1200", "--test", "300", "--steps", "3"), 180, _TEST_PHASE, takes_device=False),
    Benchmark("qmc_step_mnist_m6765", "qmc_step.py", ("--points", "6765", "--batch", "128", "--repeats", "5"),
              ("--points", "233", "--batch", "16", "--repeats", "1"), 90, _QMC, tiny_as="qmc_step_mnist_m2584"),
    Benchmark("heldout_mnist_m2584", "heldout_eval.py",
              ("--examples", "10000", "--points", "2584", "--batch", "1000"),
              ("--examples", "200", "--points", "89", "--batch", "100"), 60, _HELDOUT,
              tiny_as="heldout_mnist_m6765"),
    Benchmark("qmc_step_spectrogram_m2584", "qmc_step.py",
              (*_SPECTROGRAM, "--points", "2584", "--batch", "128", "--repeats", "5"),
              (*_SPECTROGRAM, "--points", "34", "--batch", "4", "--repeats", "1"), 150, _QMC),
    Benchmark("heldout_spectrogram_m6765", "heldout_eval.py",
              ("--data", "spectrogram", "--examples", "10000", "--points", "6765", "--batch", "1000"),
              ("--data", "spectrogram", "--examples", "20", "--points", "34", "--batch", "10"), 90,
              _HELDOUT),
    Benchmark("qmc_step_mnist_m2584_bf16", "qmc_step.py",
              ("--points", "2584", "--batch", "128", "--repeats", "5", "--precision", "bf16-mixed"),
              ("--points", "144", "--batch", "16", "--repeats", "1", "--precision", "bf16-mixed"), 90, _QMC),
    Benchmark("test_phase_bf16", "test_phase.py",
              ("--train", "5000", "--test", "10000", "--steps", "40", "--precision", "bf16-mixed"),
              ("--train", "1200", "--test", "300", "--steps", "3", "--precision", "bf16-mixed"), 180, _TEST_PHASE,
              takes_device=False),
    Benchmark("qmc_step_spectrogram_m6765", "qmc_step.py",
              (*_SPECTROGRAM, "--points", "6765", "--batch", "128", "--repeats", "5"),
              (*_SPECTROGRAM, "--points", "55", "--batch", "4", "--repeats", "1"), 180, _QMC,
              tiny_as="qmc_step_spectrogram_m2584"),
    Benchmark("heldout_spectrogram_m2584", "heldout_eval.py",
              ("--data", "spectrogram", "--examples", "10000", "--points", "2584", "--batch", "1000"),
              ("--data", "spectrogram", "--examples", "20", "--points", "21", "--batch", "10"), 90,
              _HELDOUT, tiny_as="heldout_spectrogram_m6765"),
    Benchmark("qmc_memory", "qmc_memory.py", ("--points", "610", "2584", "--batch", "32", "--repeats", "3"),
              ("--points", "34", "89", "--batch", "2", "--repeats", "1"), 150,
              ("peak_mb_*", "chunk_size_*", "chunked_over_single_time", "gradient_rel_diff")),
    Benchmark("likelihood_step", "likelihood_step.py", ("--points", "2584", "--batch", "128", "--repeats", "5"),
              ("--points", "144", "--batch", "16", "--repeats", "1"), 90,
              ("*_over_bernoulli",)),
    Benchmark("mlae_step", "mlae_step.py", ("--networks", "convnet", "mlp"),
              ("--networks", "mlp", "--batch", "8", "--repeats", "1"), 120,
              ("networks.*.max_ratio", "networks.*.ratio_spread")),
    Benchmark("taylor_step", "taylor_step.py", ("--batch", "64", "--repeats", "5"),
              ("--batch", "4", "--repeats", "1"), 120,
              ("per_latent_dim.*.taylor_over_vae", "per_latent_dim.*.taylor_over_floor", "dense_step_over_taylor_step",
               "dense_over_woodbury")),
    Benchmark("rvae_epoch", "rvae_epoch.py", ("--batch", "100", "--repeats", "11", "--pairs", "64"),
              ("--batch", "16", "--repeats", "1", "--pairs", "4"), 120,
              ("epoch_ratio_paper_schedule", "prior_phase_over_vae", "geodesic_solves_per_s")),
    Benchmark("inversion", "inversion.py", ("--repeats", "3", "--cpu-batches", "16", "--cuda-batches", "64", "256", "1024"),
              ("--repeats", "1", "--syllables", "8", "--cpu-batches", "4", "--cuda-batches", "8"), 90,
              ("devices.*.best_syllables_per_s", "quality.all.spectral_convergence_median"), takes_device=False),
    Benchmark("test_phase_compile", "test_phase.py",
              ("--train", "5000", "--test", "10000", "--steps", "40", "--compile"),
              ("--train", "1200", "--test", "300", "--steps", "3", "--compile"), 240, _TEST_PHASE, takes_device=False),
)


@dataclass(frozen=True)
class Target:
    """A GPU target of the issue: ``figure`` (dotted) of each successful run of ``script`` must be <= ``limit``."""

    label: str
    script: str
    figure: str
    limit: float


TARGETS = (
    Target("QMC step <= 1.05x decoder-only", "qmc_step.py", "qmc_over_decoder_only", 1.05),
    Target("2-D MNIST QLVM epoch (m = 2584, batch 128) <= 2 s", "epoch_time.py", "qlvm_mnist.lvm_train_s", 2.0),
    Target("held-out evaluation <= 1.5x the GEMM floor", "heldout_eval.py", "over_floor", 1.5),
)


def figure(result: dict | None, dotted: str):
    """``result["a"]["b"]`` for ``"a.b"``; ``None`` where any part is missing."""
    value = result
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def format_value(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def flatten(result: dict | None, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    flat = {}
    for key, value in (result or {}).items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def key_figures(benchmark: Benchmark, result: dict | None) -> dict:
    """The figures of the result that the table shows: those matching the benchmark's patterns, in their order."""
    flat = flatten(result)
    return {name: value for pattern in benchmark.figures for name, value in flat.items()
            if fnmatch.fnmatchcase(name, pattern) and value is not None}


def evaluate_targets(records: list[dict]) -> list[dict]:
    """Each target evaluated on every successful run of its benchmark script that reports its figure."""
    rows = []
    for target in TARGETS:
        for record in records:
            value = figure(record.get("result"), target.figure)
            if record.get("script") != target.script or record.get("status") != "ok" or \
                    not isinstance(value, (int, float)):
                continue
            rows.append({"target": target.label, "benchmark": record["name"], "figure": target.figure,
                         "value": value, "limit": target.limit, "met": value <= target.limit})
    return rows


def last_json(stdout: str) -> dict | None:
    """The benchmark's last non-empty output line as a JSON object, or ``None``."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        return None
    try:
        value = json.loads(lines[-1])
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def command_for(benchmark: Benchmark, tiny: bool, device: str, python: str = sys.executable) -> list[str]:
    options = list(benchmark.tiny if tiny else benchmark.paper)
    if benchmark.takes_device:
        options += ["--device", device]
    return [python, str(Path("benchmarks") / benchmark.script), *options]


def display(command: list[str]) -> str:
    """The command as a reader would type it (``python`` for this interpreter)."""
    return shlex.join(["python", *command[1:]])


def run_benchmark(benchmark: Benchmark, command: list[str], timeout_s: float, env: dict[str, str] | None = None,
                  cwd: Path = ROOT) -> dict:
    """Runs one benchmark and returns its record; never raises for the benchmark's failure or timeout."""
    record = {"name": benchmark.name, "script": benchmark.script, "command": display(command), "argv": command,
              "timeout_s": round(timeout_s, 1), "status": None, "returncode": None, "wall_s": None, "result": None,
              "error": None, "stdout_tail": "", "stderr_tail": ""}
    start = time.perf_counter()
    try:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, start_new_session=True)  # its own group: a timeout ends its children too
    except OSError as error:
        record.update(status="failed", error=f"could not start: {error}", wall_s=0.0)
        return record
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
        timed_out = False
    except subprocess.TimeoutExpired:
        _kill_group(process)
        stdout, stderr = process.communicate()
        timed_out = True
    except BaseException:  # interrupted: leave no benchmark running
        _kill_group(process)
        process.communicate()
        raise
    record.update(wall_s=round(time.perf_counter() - start, 2), returncode=process.returncode,
                  stdout_tail=stdout[-TAIL_CHARS:], stderr_tail=stderr[-TAIL_CHARS:])
    result = last_json(stdout)
    if timed_out:
        record.update(status="timeout", error=f"timed out after {timeout_s:.0f} s")
    elif process.returncode != 0:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        record.update(status="failed", error=f"exit status {process.returncode}: {tail}")
    elif result is None:
        record.update(status="failed", error="exit status 0, but the last output line is not a JSON object")
    else:
        record.update(status="ok", result=result)
    return record


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()


def skipped_record(benchmark: Benchmark, command: list[str], note: str) -> dict:
    return {"name": benchmark.name, "script": benchmark.script, "command": display(command), "argv": command,
            "timeout_s": None, "status": "skipped", "returncode": None, "wall_s": None, "result": None, "error": note,
            "stdout_tail": "", "stderr_tail": ""}


def probe(env: dict[str, str] | None = None) -> dict:
    """torch's version and the CUDA device, asked in a fresh process (the suite itself never initialises CUDA)."""
    code = ("import json, platform, torch; cuda = torch.cuda.is_available(); print(json.dumps({'torch': "
            "torch.__version__, 'cuda': cuda, 'cuda_version': torch.version.cuda, 'python': platform.python_version(), "
            "'device_name': torch.cuda.get_device_name() if cuda else 'cpu'}))")
    try:
        output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
        found = last_json(output.stdout)
    except (OSError, subprocess.TimeoutExpired):
        found = None
    return found or {"torch": "unknown", "cuda": False, "cuda_version": None, "python": sys.version.split()[0],
                     "device_name": "cpu"}


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "device"


def result_stem(device_name: str, tiny: bool, today: datetime.date | None = None) -> str:
    today = today or datetime.datetime.now(datetime.timezone.utc).date()
    return f"{slug(device_name)}-{today.isoformat()}" + ("-tiny" if tiny else "")


def markdown(info: dict, records: list[dict], targets: list[dict]) -> str:
    """The summary page: the setting, the issue's GPU targets, one row per benchmark, the commands and the errors."""
    counts = {status: sum(r["status"] == status for r in records) for status in ("ok", "failed", "timeout", "skipped")}
    sizes = ("tiny (a check that every benchmark runs, not a measurement: the targets are for the papers' sizes on a "
             "GPU)" if info["tiny"] else "the papers'")
    lines = [
        f"# Benchmark suite: {info['device_name']}, {info['date']}", "",
        f"- command: `{info['command']}`",
        f"- sizes: {sizes}",
        f"- device: {info['device']} ({info['device_name']}); torch {info['torch']}, CUDA {info['cuda_version']}, "
        f"Python {info['python']}",
        f"- wall time: {info['wall_s']:.0f} s of a {info['budget_s']:.0f} s budget; " +
        ", ".join(f"{n} {status}" for status, n in counts.items()),
        f"- each benchmark's JSON (its last output line under `result`, its command, wall time and status): "
        f"`{info['stem']}/<benchmark>.json`", "",
        "## Targets (issue 30, on a GPU)", "",
    ]
    if targets:
        lines += ["| target | benchmark | figure | value | limit | met |", "|---|---|---|---|---|---|"]
        lines += [f"| {t['target']} | {t['benchmark']} | `{t['figure']}` | {format_value(t['value'])} | {t['limit']} | "
                  f"{'yes' if t['met'] else '**no**'} |" for t in targets]
    else:
        lines.append("No benchmark that a target reads finished.")
    lines += ["", "## Benchmarks", "", "| benchmark | status | wall (s) | key figures | targets_met |",
              "|---|---|---|---|---|"]
    for record in records:
        shown = key_figures(_BY_NAME[record["name"]], record["result"]) if record["name"] in _BY_NAME else {}
        figures = "<br>".join(f"{name} {format_value(value)}" for name, value in shown.items()) or "-"
        met = figure(record["result"], "targets_met")
        met = "<br>".join(f"{k}: {'yes' if v else '**no**'}" for k, v in met.items()) if isinstance(met, dict) else "-"
        wall = "-" if record["wall_s"] is None else f"{record['wall_s']:.1f}"
        lines.append(f"| {record['name']} | {record['status']} | {wall} | {figures} | {met} |")
    lines += ["", "## Commands", ""]
    lines += [f"- {record['name']}: `{record['command']}`" for record in records]
    problems = [record for record in records if record["status"] != "ok"]
    if problems:
        lines += ["", "## Failures and skips", ""]
        for record in problems:
            lines += [f"- {record['name']} ({record['status']}):", "", "  ```",
                      *(f"  {line}" for line in (record["error"] or "").splitlines()[-15:]), "  ```"]
    return "\n".join(lines) + "\n"


_BY_NAME = {benchmark.name: benchmark for benchmark in BENCHMARKS}


def select(patterns: list[str] | None) -> list[Benchmark]:
    """The benchmarks whose names match any of ``patterns`` (shell-style), in the suite's order; all without."""
    if not patterns:
        return list(BENCHMARKS)
    unknown = [p for p in patterns if not any(fnmatch.fnmatchcase(b.name, p) for b in BENCHMARKS)]
    if unknown:
        raise ValueError(f"no benchmark is called {', '.join(unknown)}; the suite's: "
                         f"{', '.join(b.name for b in BENCHMARKS)}")
    return [b for b in BENCHMARKS if any(fnmatch.fnmatchcase(b.name, p) for p in patterns)]


def write_results(out: Path, stem: str, info: dict, records: list[dict], targets: list[dict]) -> Path:
    folder = out / stem
    folder.mkdir(parents=True, exist_ok=True)
    for record in records:
        (folder / f"{record['name']}.json").write_text(json.dumps({**record, "torch": info["torch"],
                                                                   "device": info["device"],
                                                                   "device_name": info["device_name"],
                                                                   "tiny": info["tiny"]}, indent=2) + "\n")
    page = out / f"{stem}.md"
    page.write_text(markdown(info, records, targets))
    return page


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--tiny", action="store_true", help="tiny sizes, 1 repeat (default without a CUDA device)")
    sizes.add_argument("--paper", action="store_true", help="the papers' sizes (default with a CUDA device)")
    parser.add_argument("--device", help="what the benchmarks run on (default: cuda where there is one, else cpu)")
    parser.add_argument("--budget-s", type=float, default=480.0,
                        help="the whole suite's wall time; a benchmark is skipped when less than half its timeout is "
                             "left, and none runs past it")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the Markdown page and the JSON files go")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks (shell-style patterns)")
    parser.add_argument("--list", action="store_true", help="print the benchmarks' names and commands and stop")
    args = parser.parse_args(argv)
    try:
        chosen = select(args.only)
    except ValueError as error:
        parser.error(str(error))

    started = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("WANDB_MODE", "offline")
    env.setdefault("WANDB_SILENT", "true")
    found = probe(env)
    device = args.device or ("cuda" if found["cuda"] else "cpu")
    tiny = args.tiny or (not args.paper and not found["cuda"])
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # the Lightning-run benchmarks (no --device) stay on the CPU too
    if args.list:
        for benchmark in chosen:
            print(f"{benchmark.name:28s} {display(command_for(benchmark, tiny, device))}")
        return {}
    device_name = found["device_name"] if device.startswith("cuda") else "cpu"
    stem = result_stem(device_name, tiny)
    info = {"device": device, "device_name": device_name, "torch": found["torch"],
            "cuda_version": found["cuda_version"],
            "python": found["python"], "tiny": tiny, "budget_s": args.budget_s, "stem": stem,
            "date": datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
            "command": shlex.join(["python", "benchmarks/gpu_suite.py", *(sys.argv[1:] if argv is None else argv)])}
    print(f"{len(chosen)} benchmarks at {'tiny' if tiny else 'the papers'} sizes on {device} ({device_name}), torch "
          f"{found['torch']}, budget {args.budget_s:.0f} s -> {args.out / stem}.md", flush=True)

    records: list[dict] = []
    names = {benchmark.name for benchmark in chosen}
    for index, benchmark in enumerate(chosen, 1):
        command = command_for(benchmark, tiny, device)
        timeout = 180.0 if tiny else benchmark.timeout_s
        left = args.budget_s - (time.perf_counter() - started)
        if tiny and benchmark.tiny_as in names:
            record = skipped_record(benchmark, command, f"at tiny sizes the same run as {benchmark.tiny_as}")
        elif left < timeout / 2:
            note = f"{max(left, 0):.0f} s of the {args.budget_s:.0f} s budget left; it may take {timeout:.0f} s"
            record = skipped_record(benchmark, command, note)
        else:
            print(f"[{index}/{len(chosen)}] {benchmark.name}: {display(command)}", flush=True)
            record = run_benchmark(benchmark, command, min(timeout, left), env)
        records.append(record)
        for line in record["stdout_tail"].strip().splitlines()[-12:-1]:  # its table, not its JSON line
            print(f"    {line}")
        print(f"  -> {record['status']}" + (f" in {record['wall_s']:.1f} s" if record["wall_s"] is not None else "")
              + (f": {record['error'].splitlines()[-1] if record['error'].strip() else ''}"
                 if record["status"] != "ok" and record["error"] else ""), flush=True)
        info["wall_s"] = time.perf_counter() - started
        page = write_results(args.out, stem, info, records, evaluate_targets(records))

    info["wall_s"] = time.perf_counter() - started
    targets = evaluate_targets(records)
    page = write_results(args.out, stem, info, records, targets)
    summary = {"suite": "benchmarks/gpu_suite.py", "sizes": "tiny" if tiny else "paper", "device": device,
               "device_name": device_name, "torch": found["torch"], "wall_s": round(info["wall_s"], 1),
               "budget_s": args.budget_s, "markdown": str(page), "results_dir": str(args.out / stem),
               "benchmarks": {r["name"]: {"status": r["status"], "wall_s": r["wall_s"],
                                          **({"error": r["error"].splitlines()[-1]} if r["error"] else {})}
                              for r in records},
               "targets": [{k: t[k] for k in ("target", "benchmark", "value", "limit", "met")} for t in targets]}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
