"""The layered core: every import of the project's modules (including those inside functions) goes to the same layer
or a lower one, the import graph has no cycle, and only ``lvm`` is installed at top level."""

import ast
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# lowest first; a module may import its own layer and the layers below it
LAYERS = [
    ("numerics", ["lvm.numerics"]),
    ("components", ["lvm.priors", "lvm.networks", "lvm.posteriors", "lvm.likelihoods", "lvm.samplers",
                    "lvm.objective", "lvm.batches", "lvm.divergences", "lvm.dispatch", "lvm.covariates"]),
    ("estimators", ["lvm.estimators"]),
    ("model", ["lvm.model", "lvm.legacy"]),
    ("runs", ["lvm.runs"]),
    ("analysis", ["lvm.analysis"]),
    ("plotting", ["lvm.plotting"]),
    ("tools", ["lvm.tools"]),
    ("plugins", ["lvm.objectives", "lvm.callbacks", "lvm.datamodules"]),
]
SOURCES = {"lvm": ROOT / "lvm", "lvm.objectives": ROOT / "objectives", "lvm.callbacks": ROOT / "callbacks",
           "lvm.datamodules": ROOT / "datamodules"}


def _modules() -> dict[str, Path]:
    modules = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([package, *parts])] = path
    return modules


def _layer(module: str) -> int:
    if module == "lvm":  # the package itself: a docstring, no imports
        return 0
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
            return rank
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS (and to the README's Layout).")


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``module`` imports anywhere in its source (relative imports resolved)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            while name and name not in modules:  # a name imported from a module is that module
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def test_every_module_imports_only_its_layer_and_those_below():
    modules = _modules()
    upward = sorted(f"{module} ({LAYERS[_layer(module)][0]}) imports {target} ({LAYERS[_layer(target)][0]})"
                    for module, path in modules.items() for target in _imports(module, path, modules)
                    if _layer(target) > _layer(module))
    assert upward == []


def test_the_import_graph_has_no_cycle():
    modules = _modules()
    graph = {module: _imports(module, path, modules) - {"lvm"} for module, path in modules.items()}
    state, cycles = {}, []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_checker_sees_an_upward_import_inside_a_function(tmp_path):
    path = tmp_path / "model.py"
    path.write_text("def f():\n    from lvm.analysis.embedding import embedding_table\n")
    modules = {**_modules(), "lvm.model": path}
    assert "lvm.analysis.embedding" in _imports("lvm.model", path, modules)
    assert _layer("lvm.analysis.embedding") > _layer("lvm.model")


def _run(code: str, cwd: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env or None)


def test_only_lvm_is_importable_at_top_level_from_another_directory(tmp_path):
    for name in ("callbacks", "objectives", "datamodules"):
        result = _run(f"import {name}", tmp_path)
        assert result.returncode != 0 and "ModuleNotFoundError" in result.stderr, name
    result = _run("import lvm.callbacks, lvm.objectives, lvm.datamodules; print(lvm.objectives.QMCObjective.__name__)",
                  tmp_path)
    assert result.returncode == 0 and "QMCObjective" in result.stdout, result.stderr


def test_a_users_callbacks_module_does_not_shadow_the_tools(tmp_path):
    for name in ("callbacks", "objectives", "datamodules"):
        (tmp_path / f"{name}.py").write_text("raise ImportError('the user module, not lvm')\n")
    result = subprocess.run([sys.executable, "-m", "lvm.tools.explore", "--help"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and "--ckpt" in result.stdout, result.stderr


@pytest.mark.slow
def test_a_wheel_installs_only_lvm(tmp_path):
    """``pip install .`` (a built wheel, not the editable install) puts one top-level package into site-packages,
    with the plugin folders inside it."""
    source, target = tmp_path / "source", tmp_path / "site"  # a copy: the build leaves nothing in the checkout
    for folder in ("lvm", "objectives", "callbacks", "datamodules"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--quiet",
                    "--target", str(target), str(source)], check=True, timeout=600)
    top = sorted(p.name for p in target.iterdir() if not p.name.endswith(".dist-info"))
    assert top == ["lvm"]
    for name in ("objectives", "callbacks", "datamodules", "datamodules/vocalizations"):
        assert (target / "lvm" / name / "__init__.py").is_file(), name
