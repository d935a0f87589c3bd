"""The shape of the tree (docs/architecture.md): layers that only import downwards, no import
cycle, small modules and functions, and every format fact derived from the registry."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

from lsnet_deploy import exporters as registry

PACKAGE = Path(__file__).resolve().parent.parent / "lsnet_deploy"

LAYERS: dict[str, int] = {
    # 0: leaves
    "_version": 0, "errors": 0, "deps": 0, "paths": 0, "labels": 0, "limits": 0, "progress": 0,
    "threads": 0,
    # 1: the model, its data and its checks
    "lsnet": 1, "ska": 1, "preprocess": 1, "spec": 1, "io_wrappers": 1, "synthetic": 1,
    "flops": 1, "checkpoint": 1, "zoo": 1, "reparam": 1, "channels_last": 1, "depthwise_bands": 1,
    "portable": 1, "metadata": 1,
    "fidelity": 1, "api": 1, "describe": 1, "peers": 1, "aarch64": 1,
    # 2..6: quantization and the Core ML reference executor, formats, the export pipeline,
    # benchmarks, the command line
    "quantize": 2, "mil": 2, "exporters": 3, "sidecar": 4, "pipeline": 4, "bench": 5,
    "evaluation": 5, "cli": 6,
    # 7: the console script (imports the command line inside a guard)
    "_console": 7,
}
"""Top-level module or subpackage -> layer; a module imports only from its layer or below."""

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
EXPORT_PATH = ("exporters", "pipeline", "quantize")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path, top_level_only: bool) -> set[str]:
    """lsnet_deploy modules imported by ``name`` (anywhere, or at module level only)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "lsnet_deploy":
                continue
            if node.module is None:  # `from . import api`: the submodules themselves
                found.update(f"{target}.{a.name}" for a in node.names)
            else:
                found.add(target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "lsnet_deploy")
    return found


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_module_has_a_layer() -> None:
    unknown = sorted({_top(m) for m in _modules()} - set(LAYERS) - {""})
    assert not unknown, f"give these a layer in LAYERS (and docs/architecture.md): {unknown}"


def test_no_import_runs_up_a_layer_or_into_the_package_root() -> None:
    bad = []
    for name, path in _modules().items():
        if name == "lsnet_deploy":
            continue  # the root re-exports the public API
        for target in _imports(name, path, top_level_only=False):
            if target == "lsnet_deploy":
                bad.append(f"{name} imports the package root")
            elif LAYERS.get(_top(target), 99) > LAYERS.get(_top(name), -1):
                bad.append(f"{name} -> {target}")
    assert not bad, "imports that run up the layers:\n" + "\n".join(sorted(bad))


def test_no_import_cycle() -> None:
    modules = _modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for target in _imports(name, path, top_level_only=True):
            while target not in modules and "." in target:  # `from pkg import name`
                target = target.rpartition(".")[0]
            if target != name:
                graph[name].add(target)
    seen: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(node: str, stack: list[str]) -> None:
        seen[node] = 1
        for nxt in sorted(graph[node]):
            if seen.get(nxt) == 1 and not _is_package_of(nxt, node):
                cycle = stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in seen:
                visit(nxt, [*stack, nxt])
        seen[node] = 2

    for name in sorted(modules):
        if name not in seen:
            visit(name, [name])


def _is_package_of(package: str, module: str) -> bool:
    """A package's ``__init__`` importing its own submodules is not a cycle."""
    return module.startswith(package + ".")


def test_modules_and_export_path_functions_are_small() -> None:
    long_modules, long_functions = [], []
    for name, path in _modules().items():
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES and name != "lsnet_deploy.lsnet":  # one file per network
            long_modules.append(f"{name}: {lines} lines")
        if _top(name) not in EXPORT_PATH:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{name}.{node.name}: {length} lines")
    assert not long_modules, long_modules
    assert not long_functions, long_functions


def test_format_facts_come_from_the_exporters() -> None:
    from lsnet_deploy.bench import host, schema
    from lsnet_deploy.bench.artifacts import format_of

    exps = registry.exporters()
    assert [e.name for e in exps] == list(registry.REGISTRY) == list(registry.format_names())
    for exp in exps:
        assert exp.runtime in schema.RUNTIMES
        for suffix in exp.suffixes:
            assert format_of(Path("m" + suffix)) == exp.name
            assert registry.exporter_for_path("a/m" + suffix).name == exp.name
        assert set(exp.tools) <= set(registry.tool_names())
        if exp.can_run() and exp.capabilities.bench_precisions:
            assert exp.runtime in host.RUNTIME_CHOICES
        assert exp.capabilities.precisions, exp.name
        assert exp.extra, exp.name


def test_nothing_in_the_package_imports_the_report_scripts() -> None:
    for name, path in _modules().items():
        assert "benchmarks" not in {t.split(".")[1] for t in _imports(name, path, False)
                                    if "." in t}, name


BLOCKER = '''
import importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
import lsnet_deploy
from lsnet_deploy.exporters import get_exporter, format_of_suffix, tool_names
from lsnet_deploy.pipeline import ExportRequest, plan
import lsnet_deploy.quantize.auto
for module in sys.argv[2].split(","):
    __import__(module)
fmt = sys.argv[3]
plan(ExportRequest.build("test_lsnet", fmt, weights=None, precision="int8", img_size=128))
format_of_suffix(), tool_names()
'''


@pytest.mark.parametrize(("fmt", "blocked", "modules"), [
    ("tflite", "onnx,onnxruntime,onnxscript,onnxslim,coremltools,executorch",
     "lsnet_deploy.quantize.tflite_int8,lsnet_deploy.exporters.tflite"),
    ("onnx", "litert_torch,ai_edge_litert,coremltools,executorch",
     "lsnet_deploy.quantize.onnx_int8,lsnet_deploy.exporters.onnx"),
    ("coreml", "onnx,onnxruntime,litert_torch,ai_edge_litert,executorch",
     "lsnet_deploy.exporters.coreml"),
])
def test_a_format_imports_no_other_formats_backend(fmt: str, blocked: str,
                                                   modules: str) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", BLOCKER, blocked, modules, fmt],
                          check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_bench_default_set_and_opt_in_runtimes() -> None:
    from lsnet_deploy.bench import host

    assert host.DEFAULT_SET == (("pytorch", "fp32"), ("onnxruntime", "fp32"),
                                ("onnxruntime", "int8"), ("litert", "fp32"), ("litert", "int8"))
    assert host.DEFAULT_RUNTIMES == ("pytorch", "onnxruntime", "litert")
    assert "executorch" in host.RUNTIME_CHOICES  # opt-in: runs here, not timed by default
    assert host._chosen_set(["pytorch", "executorch"]) == [
        ("pytorch", "fp32"), ("executorch", "fp32"), ("executorch", "int8")]
