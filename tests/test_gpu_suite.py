"""benchmarks/gpu_suite.py: the targets and the summary from benchmark JSON, failures and timeouts recorded rather
than raised, and the suite at tiny sizes on the CPU writing its Markdown page and JSON files."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu_suite

ROOT = Path(__file__).resolve().parents[1]


def record(name, script, result, status="ok"):
    return {"name": name, "script": script, "command": f"python benchmarks/{script}", "argv": [], "timeout_s": 60,
            "status": status, "returncode": 0 if status == "ok" else 1, "wall_s": 1.5, "result": result,
            "error": None if status == "ok" else "exit status 1: boom", "stdout_tail": "", "stderr_tail": ""}


FAKE = [
    record("qmc_step_mnist_m2584", "qmc_step.py", {"qmc_over_decoder_only": 1.02, "naive_over_qmc_time": 40.0,
                                                    "time_ms": {"qmc": 3.1, "decoder_only": 3.0}}),
    record("qmc_step_mnist_m6765", "qmc_step.py", None, status="timeout"),
    record("heldout_mnist_m6765", "heldout_eval.py", {"seconds": 0.2, "matmul_floor_seconds": 0.1, "over_floor": 2.0}),
    record("epoch_qlvm_mnist", "epoch_time.py", {"qlvm_mnist": {"lvm_train_s": 1.5, "lvm_s": 1.8, "plain_s": 1.2}}),
    record("test_phase", "test_phase.py", {"test_loop_s": 2.0, "test_phase_s": 2.5, "phase_over_loop": 1.25,
                                           "targets_met": {"test_phase_le_1.5x_loop": True,
                                                           "embed_le_1.2x_heldout": False}}),
]


def test_targets_from_benchmark_json():
    rows = {row["target"]: row for row in gpu_suite.evaluate_targets(FAKE)}
    assert len(rows) == 3  # the timed-out QMC step has no figure
    qmc = rows["QMC step <= 1.05x decoder-only"]
    assert (qmc["benchmark"], qmc["value"], qmc["met"]) == ("qmc_step_mnist_m2584", 1.02, True)
    assert rows["held-out evaluation <= 1.5x the GEMM floor"]["met"] is False
    epoch = rows["2-D MNIST QLVM epoch (m = 2584, batch 128) <= 2 s"]
    assert (epoch["value"], epoch["met"]) == (1.5, True)


def test_markdown_has_every_benchmark_and_target():
    info = {"device": "cuda", "device_name": "NVIDIA H100 80GB HBM3", "torch": "2.11.0", "cuda_version": "13.0",
            "python": "3.12.3", "tiny": False, "budget_s": 480, "stem": "nvidia-h100-80gb-hbm3-2026-12-05",
            "date": "2026-12-05", "command": "python benchmarks/gpu_suite.py", "wall_s": 300.0}
    page = gpu_suite.markdown(info, FAKE, gpu_suite.evaluate_targets(FAKE))
    for item in FAKE:
        assert f"| {item['name']} | {item['status']} |" in page
    assert "qmc_over_decoder_only 1.02" in page and "qlvm_mnist.lvm_train_s 1.5" in page
    assert "embed_le_1.2x_heldout: **no**" in page and "test_phase_le_1.5x_loop: yes" in page
    row = "| held-out evaluation <= 1.5x the GEMM floor | heldout_mnist_m6765 | `over_floor` | 2 | 1.5 | **no** |"
    assert row in page
    assert "torch 2.11.0" in page and "timeout" in page


def test_stem_and_selection():
    import datetime

    assert gpu_suite.result_stem("NVIDIA H100 80GB HBM3", False, datetime.date(2026, 12, 5)) == \
        "nvidia-h100-80gb-hbm3-2026-12-05"
    assert gpu_suite.result_stem("cpu", True, datetime.date(2026, 12, 5)) == "cpu-2026-12-05-tiny"
    assert [b.name for b in gpu_suite.select(["heldout_mnist_*"])] == ["heldout_mnist_m6765", "heldout_mnist_m2584"]
    with pytest.raises(ValueError, match="no benchmark is called nonesuch"):
        gpu_suite.select(["nonesuch"])
    names = [b.name for b in gpu_suite.BENCHMARKS]
    assert names[:4] == ["qmc_step_mnist_m2584", "heldout_mnist_m6765", "epoch_qlvm_mnist", "test_phase"]
    assert len(set(names)) == len(names)
    for benchmark in gpu_suite.BENCHMARKS:
        assert (ROOT / "benchmarks" / benchmark.script).is_file()


@pytest.mark.parametrize("code, status, error", [
    ("print('table'); print('{\"a\": 1}')", "ok", None),
    ("import sys; print('table'); sys.exit(3)", "failed", "exit status 3"),
    ("print('no json at the end')", "failed", "not a JSON object"),
    ("import time; time.sleep(30)", "timeout", "timed out"),
])
def test_failures_are_recorded_not_raised(code, status, error):
    benchmark = gpu_suite.Benchmark("fake", "fake.py", (), (), 1, ("a",))
    result = gpu_suite.run_benchmark(benchmark, [sys.executable, "-c", code], timeout_s=3)
    assert result["status"] == status
    if error is None:
        assert result["result"] == {"a": 1} and result["error"] is None
    else:
        assert error in result["error"] and result["result"] is None
    assert result["wall_s"] < 10


def test_suite_goes_on_after_a_failure_and_skips_past_its_budget(tmp_path, monkeypatch, capsys):
    fakes = (gpu_suite.Benchmark("fails", "fails.py", (), (), 60, ()),
             gpu_suite.Benchmark("works", "works.py", (), (), 60, ("x",)),
             gpu_suite.Benchmark("works_bigger", "works.py", (), (), 60, ("x",), tiny_as="works"))
    scripts = {"fails.py": "import sys; sys.exit(2)", "works.py": "print('{\"x\": 0.5}')"}
    monkeypatch.setattr(gpu_suite, "BENCHMARKS", fakes)
    monkeypatch.setattr(gpu_suite, "_BY_NAME", {b.name: b for b in fakes})
    monkeypatch.setattr(gpu_suite, "command_for", lambda b, tiny, device: [sys.executable, "-c", scripts[b.script]])
    monkeypatch.setattr(gpu_suite, "probe", lambda env=None: {"torch": "x", "cuda": False, "cuda_version": None,
                                                              "python": "3", "device_name": "cpu"})
    summary = gpu_suite.main(["--tiny", "--out", str(tmp_path)])
    assert {name: entry["status"] for name, entry in summary["benchmarks"].items()} == \
        {"fails": "failed", "works": "ok", "works_bigger": "skipped"}  # at tiny sizes the same run as "works"
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == summary
    saved = json.loads((Path(summary["results_dir"]) / "works.json").read_text())
    assert saved["result"] == {"x": 0.5} and saved["status"] == "ok"
    assert "exit status 2" in json.loads((Path(summary["results_dir"]) / "fails.json").read_text())["error"]
    assert "x 0.5" in Path(summary["markdown"]).read_text()

    summary = gpu_suite.main(["--tiny", "--out", str(tmp_path / "alone"), "--only", "works_bigger"])
    assert summary["benchmarks"]["works_bigger"]["status"] == "ok"

    summary = gpu_suite.main(["--tiny", "--out", str(tmp_path / "short"), "--budget-s", "1"])
    assert {entry["status"] for entry in summary["benchmarks"].values()} == {"skipped"}
    assert "budget" in summary["benchmarks"]["works"]["error"]


def test_tiny_suite_on_the_cpu(tmp_path):
    """Two of the fastest benchmarks, for real, through the suite's command line."""
    out = tmp_path / "results"
    completed = subprocess.run([sys.executable, "benchmarks/gpu_suite.py", "--tiny", "--device", "cpu", "--out",
                                str(out), "--only", "heldout_mnist_m2584", "likelihood_step"],
                               cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    assert summary["sizes"] == "tiny" and summary["device"] == "cpu"
    assert {name: entry["status"] for name, entry in summary["benchmarks"].items()} == \
        {"heldout_mnist_m2584": "ok", "likelihood_step": "ok"}, completed.stdout[-3000:]
    page = Path(summary["markdown"])
    assert page.parent == out and page.name.startswith("cpu-") and page.name.endswith("-tiny.md")
    text = page.read_text()
    assert "| heldout_mnist_m2584 | ok |" in text and "over_floor" in text and "poisson_over_bernoulli" in text
    for name in ("heldout_mnist_m2584", "likelihood_step"):
        saved = json.loads((out / page.stem / f"{name}.json").read_text())
        assert saved["status"] == "ok" and saved["command"].startswith("python benchmarks/")
        assert isinstance(saved["result"], dict) and saved["result"]
