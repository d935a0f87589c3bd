"""``lsnet-deploy bench`` as a function: LSNet variants exported on the fly and/or artifact files,
timed on this machine.

For a variant, the default set is PyTorch eager unfused and fused, ONNX Runtime fp32 and INT8,
LiteRT fp32 and INT8 (:data:`DEFAULT_SET`). The artifacts are exported through the normal
pipeline into a temporary folder (INT8 calibrated on the default calibration photos; an
artifact below its fidelity gate is still timed, its cosine and the failed gate are recorded
in the result's notes) and deleted afterwards.
"""

from __future__ import annotations

import copy
import logging
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import BenchmarkError, LsnetDeployError, ValidationFailedError
from ..exporters import Exporter, exporter_for_runtime, exporters
from .artifacts import expand_artifacts
from .harness import BenchSettings, ProgressSink, run_benchmarks, settings_environment
from .runtimes import COMPUTE_UNITS, Target, artifact_targets, pytorch_targets
from .schema import BenchReport

__all__ = ["DEFAULT_RUNTIMES", "DEFAULT_SET", "RUNTIME_CHOICES", "benchmark",
           "variant_targets"]

log = logging.getLogger(__name__)

def _exportable() -> list[Exporter]:
    """Formats whose artifacts can be timed on this machine."""
    return [e for e in exporters() if e.can_bench()]


def _default_set() -> tuple[tuple[str, str], ...]:
    pairs = [("pytorch", "fp32")]
    for exp in _exportable():
        pairs += [(exp.runtime, p) for p in exp.capabilities.bench_precisions]
    return tuple(pairs)


DEFAULT_SET: tuple[tuple[str, str], ...] = _default_set()
"""(runtime, precision) benchmarked for ``--model``: ``pytorch`` (unfused and fused), then the
``bench_precisions`` of every format that runs here (ONNX Runtime and LiteRT, fp32 and INT8)."""

DEFAULT_RUNTIMES: tuple[str, ...] = tuple(dict.fromkeys(r for r, _ in DEFAULT_SET))
"""The runtimes of :data:`DEFAULT_SET`: what ``--model`` times when ``--runtime`` is not given."""

RUNTIME_CHOICES: tuple[str, ...] = ("pytorch", *(e.runtime for e in _exportable()))
"""What ``--runtime`` accepts; a runtime outside :data:`DEFAULT_SET` (e.g. ``executorch``)
times its format's default precisions, fp32 and INT8 where offered."""


def variant_targets(
    variant: str,
    weights: str | Path | None,
    folder: Path,
    *,
    runtimes: Sequence[str] = DEFAULT_RUNTIMES,
    img_size: int = 224,
    batch: int | None = None,
    say: Callable[[str], None] = lambda _m: None,
) -> tuple[list[Target], list[dict[str, Any]]]:
    """Targets of the default set for one variant (or peer: :mod:`lsnet_deploy.peers`, timed
    in PyTorch in its deploy form only), exporting its artifacts into ``folder``, and the
    exports that failed (``failures`` entries: the other targets still run).

    ``batch`` > 1: ONNX is exported with a symbolic batch, TFLite with this static batch (the
    LiteRT interpreter cannot resize a static batch).
    """
    from ..api import create_model
    from ..pipeline import export
    from ..reparam import reparameterize

    unknown = set(runtimes) - set(RUNTIME_CHOICES)
    if unknown:
        raise BenchmarkError(f"unknown runtime(s) {', '.join(sorted(unknown))}; known: "
                             f"{', '.join(RUNTIME_CHOICES)}")
    from ..peers import create_peer, peer_names

    is_peer = variant in peer_names()
    if is_peer:  # built in its deploy form; exported by name, with random weights
        model = fused = create_peer(variant)
        weights_note = "RANDOM weights; peer, for latency only"
        pytorch = [Target(variant, "pytorch-fused", "fp32", module=fused,
                          img_size=(img_size, img_size))]
    else:
        model = create_model(variant, weights, img_size=img_size)
        fused = copy.deepcopy(model)  # fused once: timed in PyTorch and handed to every export
        reparameterize(fused, check_inputs=None)
        source = model.weights_source
        weights_note = "RANDOM weights" if source.kind == "random" else f"{source.kind} weights"
        pytorch = pytorch_targets(model, fused, variant)
    targets: list[Target] = []
    failures: list[dict[str, Any]] = []
    for runtime, precision in _chosen_set(runtimes):
        if runtime == "pytorch":
            targets += pytorch
            continue
        exp = exporter_for_runtime(runtime)
        assert exp is not None
        fmt = exp.name
        say(f"exporting {variant} {fmt} {precision}")
        kwargs: dict[str, Any] = {"precision": precision, "output_dir": folder, "force": True,
                                  "progress": lambda m, f=fmt, p=precision: say(
                                      f"exporting {variant} {f} {p}: {m}")}
        if batch is not None and batch > 1:
            kwargs.update({"dynamic_batch": True} if fmt == "onnx" else {"batch": batch})
        if is_peer:
            kwargs.update(weights="random", img_size=img_size)
        try:
            [artifact] = export(variant if is_peer else fused, fmt, **kwargs)
        except ValidationFailedError as e:  # below its gate: timed anyway, the notes say so
            log.warning("%s %s %s: %s", variant, fmt, precision, e)
            [artifact] = e.artifacts  # type: ignore[assignment]
        except LsnetDeployError as e:  # e.g. a backend not installed: time the others
            log.warning("%s %s %s: export failed: %s", variant, fmt, precision, e)
            failures.append({"model": variant, "runtime": runtime, "precision": precision,
                             "threads": None, "artifact": "", "error": f"export: {e}"})
            continue
        targets += artifact_targets(artifact.path)
    return ([replace(t, notes="; ".join(filter(None, [weights_note, t.notes])))
             for t in targets], failures)


def _chosen_set(runtimes: Sequence[str]) -> list[tuple[str, str]]:
    """The (runtime, precision) pairs for ``runtimes``: those of :data:`DEFAULT_SET`, and for
    a runtime not in it, its format's fp32 and INT8 where it offers them."""
    pairs = [p for p in DEFAULT_SET if p[0] in runtimes]
    for runtime in runtimes:
        if runtime != "pytorch" and not any(r == runtime for r, _ in DEFAULT_SET):
            exp = exporter_for_runtime(runtime)
            assert exp is not None
            pairs += [(runtime, p) for p in ("fp32", "int8") if p in exp.capabilities.precisions]
    return pairs


def _check_peers(peers: Sequence[str]) -> None:
    """Refuse an unknown peer name before any export."""
    from ..peers import get_peer

    for name in peers:
        get_peer(name)


def benchmark(
    models: Sequence[str] = (),
    artifacts: Sequence[Path] = (),
    *,
    peers: Sequence[str] = (),
    weights: str | Path | None = "official",
    settings: BenchSettings | None = None,
    runtimes: Sequence[str] = DEFAULT_RUNTIMES,
    compute_units: Sequence[str] = ("ALL",),
    img_size: int = 224,
    progress: ProgressSink | None = None,
    say: Callable[[str], None] = lambda _m: None,
) -> BenchReport:
    """Benchmark LSNet variants (exported on the fly) and artifact files on this machine.

    Args:
        models: variant names; each gets the :data:`DEFAULT_SET` narrowed to ``runtimes``
            (a runtime outside it, e.g. ``executorch``, adds its format's fp32 and INT8).
        artifacts: ``.onnx`` / ``.tflite`` / ``.mlpackage`` files (any model, LSNet or not),
            or folders of them (searched recursively, hidden entries skipped).
        peers: comparison networks (:func:`lsnet_deploy.peers.peer_names`), exported and
            timed like ``models`` (random weights) in the same run;
            :func:`~lsnet_deploy.bench.versus.compare_with_peers` pairs them with LSNet.
        weights: for ``models``: checkpoint path, ``"official"`` or ``"random"``.
        settings: how to time (default: latency mode, 1 thread, 10 warm-up + 50 timed runs).
        compute_units: CoreML compute units for ``.mlpackage`` files (macOS only).

    Returns:
        The report (results, environment, failures, interrupted); nothing is written.
    """
    settings = settings or BenchSettings()
    if not models and not artifacts and not peers:
        raise BenchmarkError("nothing to benchmark: give --model VARIANT, --peer NAME and/or "
                             "artifact files")
    _check_peers(peers)
    for unit in compute_units:
        if unit not in COMPUTE_UNITS:
            raise BenchmarkError(f"unknown compute unit {unit}; known: {', '.join(COMPUTE_UNITS)}")
    targets: list[Target] = []
    for path in expand_artifacts(artifacts):
        targets += artifact_targets(path, tuple(compute_units))
    if any(t.runtime == "coreml" for t in targets) and sys.platform != "darwin":
        coreml = sorted({str(t.artifact) for t in targets if t.runtime == "coreml"})
        raise BenchmarkError(
            f"CoreML packages run only on macOS ({', '.join(coreml)}): benchmark them on a Mac, "
            "or on an iPhone with 'lsnet-deploy bench ios-harness'")
    # The machine's load is read now, before the exports below load it ourselves.
    env = settings_environment(settings)
    with tempfile.TemporaryDirectory(prefix="lsnet-bench-") as tmp:
        exported: list[Target] = []
        failures: list[dict[str, Any]] = []
        for variant in (*models, *peers):
            got, failed = variant_targets(variant, weights, Path(tmp), runtimes=runtimes,
                                          img_size=img_size, batch=settings.batch, say=say)
            exported += got
            failures += failed
        exported = [t if t.artifact is None else replace(
            t, notes="; ".join(filter(None, ["exported on the fly", t.notes])))
            for t in exported]
        report = run_benchmarks(exported + targets, settings, progress, env)
    report.failures[:0] = failures
    for r in report.results:  # the temporary folder is gone: keep the file name only
        if r.artifact and Path(r.artifact).parent.parent == Path(tmp):
            r.artifact = Path(r.artifact).name
    return report
