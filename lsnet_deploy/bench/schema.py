"""The benchmark result schema shared by host runs, Android, iPhone and hand-entered numbers.

A result file is one JSON object::

    {
      "schema": "lsnet-deploy.bench/1",
      "results": [ {BenchResult}, ... ],
      "environment": { ... },          # the host that ran (or imported) the results
      "interrupted": false,            # true when Ctrl-C stopped the run early
      "failures": [ {"model", "runtime", "precision", "threads", "artifact", "error"} ]
    }

Every :class:`BenchResult` is one (model, runtime, precision, threads, batch, accelerator,
device) configuration. Latencies are milliseconds per call of a batch; ``None`` means "not
measured" (an Android ``benchmark_model`` run has no p90, an Xcode number entered by hand has
only a median). ``throughput_img_s`` is set by ``--throughput`` runs (images per second).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import BenchmarkError, LsnetDeployError

__all__ = [
    "PLATFORMS",
    "RUNTIMES",
    "SCHEMA",
    "SOURCES",
    "BenchReport",
    "BenchResult",
    "host_device_label",
    "load_report",
    "relabel_host_results",
]

SCHEMA = "lsnet-deploy.bench/1"

def _runtimes() -> tuple[str, ...]:
    from ..exporters import exporters

    return ("pytorch-unfused", "pytorch-fused", *(e.runtime for e in exporters()))


RUNTIMES = _runtimes()
"""Runtime names: ``pytorch-*`` is PyTorch eager (LSNet before / after reparameterization),
then each registered format's runtime (``onnxruntime``; ``litert``, the TFLite interpreter,
on the host ``ai_edge_litert`` and on Android ``benchmark_model``; ``coreml``; ...)."""

PLATFORMS = ("host", "android", "ios", "macos")
"""Where a result was measured: this machine (``host``; a Mac running CoreML is ``macos``), an
Android phone over adb, an iPhone (harness or Xcode)."""

SOURCES = ("lsnet-deploy", "benchmark_model", "ios-harness", "manual")
"""Who measured: our host harness, TFLite's ``benchmark_model`` on a phone, the generated iOS
harness, or a number entered by hand (``bench import --median-ms``, e.g. Xcode's Core ML
performance report)."""


@dataclass
class BenchResult:
    """Latency of one configuration.

    Attributes:
        model: model label: the LSNet variant (``lsnet_t``) or the artifact's file stem.
        runtime: one of :data:`RUNTIMES`.
        precision: ``fp32``, ``fp16``, ``int8``, ``w8a8`` or ``unknown``.
        threads: CPU threads asked for; ``None`` = the runtime's default (CoreML).
        batch: images per call.
        median_ms, p90_ms, trimmed_mean_ms, min_ms, mean_ms, std_ms: per call (one batch);
            ``trimmed_mean_ms`` drops the lowest and highest 20% of the runs.
        runs: timed runs; warmup: untimed warm-up runs.
        input_shape: the shape fed (e.g. ``[1, 3, 224, 224]`` or ``[1, 224, 224, 3]``).
        platform: one of :data:`PLATFORMS`; device: ``"host"`` or the phone's model name.
        accelerator: CoreML compute units (``CPU_ONLY``, ``CPU_AND_GPU``, ``CPU_AND_NE``,
            ``ALL``) or the Android delegate (``cpu``, ``xnnpack``, ``gpu``, ``nnapi``).
        throughput_img_s: images per second (``--throughput``: batch / mean iteration time).
        load_ms: model load / compile / init time, separate from prediction time.
        first_ms: the first inference (cold).
        memory_mb: peak memory footprint reported by the runtime (Android).
        artifact: path of the file benchmarked (``None`` for PyTorch eager).
        source: one of :data:`SOURCES`.
        device_info: phone facts (model, SoC, Android/iOS version, thermal state).
        notes: free text (why a number is missing, how it was entered).
    """

    model: str
    runtime: str
    precision: str
    threads: int | None
    batch: int
    median_ms: float | None
    p90_ms: float | None = None
    trimmed_mean_ms: float | None = None
    min_ms: float | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    runs: int | None = None
    warmup: int | None = None
    input_shape: list[int] | None = None
    platform: str = "host"
    device: str = "host"
    accelerator: str | None = None
    throughput_img_s: float | None = None
    load_ms: float | None = None
    first_ms: float | None = None
    memory_mb: float | None = None
    artifact: str | None = None
    source: str = "lsnet-deploy"
    device_info: dict[str, Any] = field(default_factory=dict)
    notes: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "result") -> BenchResult:
        """Build from JSON; unknown keys are dropped, missing required keys raise
        :class:`BenchmarkError` naming ``where``."""
        if not isinstance(data, dict):
            raise BenchmarkError(f"{where}: expected a JSON object, got {type(data).__name__}")
        required = ("model", "runtime", "precision", "median_ms")
        missing = [k for k in required if k not in data]
        if missing:
            raise BenchmarkError(f"{where}: missing key(s) {', '.join(missing)}")
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in known}
        kw.setdefault("threads", None)
        kw.setdefault("batch", 1)
        for key in ("median_ms", "p90_ms", "trimmed_mean_ms", "min_ms", "mean_ms", "std_ms",
                    "throughput_img_s", "load_ms", "first_ms", "memory_mb"):
            value = kw.get(key)
            if value is not None and not isinstance(value, (int, float)):
                raise BenchmarkError(f"{where}: {key} must be a number, got {value!r}")
            if value is not None:
                kw[key] = float(value)
        return cls(**kw)

    @property
    def key(self) -> tuple[Any, ...]:
        """Identity of the configuration (two results with one key measure the same thing)."""
        return (self.model, self.runtime, self.precision, self.threads, self.batch,
                self.accelerator, self.device,
                tuple(self.input_shape) if self.input_shape else None)


@dataclass
class BenchReport:
    """A result file: results, the environment that produced them, whether the run was cut
    short by Ctrl-C, and the targets that failed to load or run (with the error).

    ``aborted_by`` is not part of the file (:meth:`to_dict` leaves it out): the error that
    ended a run early after some results were measured (an Android phone failing part way; its
    message is also in ``failures``). The CLI writes the report first, then re-raises it, so
    the exit code stays the error's.
    """

    results: list[BenchResult]
    environment: dict[str, Any]
    interrupted: bool = False
    failures: list[dict[str, Any]] = field(default_factory=list)
    aborted_by: LsnetDeployError | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "results": [r.to_dict() for r in self.results],
            "environment": self.environment,
            "interrupted": self.interrupted,
            "failures": self.failures,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "report") -> BenchReport:
        if not isinstance(data, dict) or not isinstance(data.get("results"), list):
            raise BenchmarkError(f"{where}: not a benchmark result file (no 'results' list)")
        results = [BenchResult.from_dict(r, f"{where}: results[{i}]")
                   for i, r in enumerate(data["results"])]
        env = data.get("environment") or {}
        if not isinstance(env, dict):
            raise BenchmarkError(f"{where}: 'environment' must be an object")
        failures = data.get("failures") or []
        if not isinstance(failures, list):
            raise BenchmarkError(f"{where}: 'failures' must be a list")
        return cls(results, env, bool(data.get("interrupted", False)), failures)


def host_device_label(environment: dict[str, Any]) -> str | None:
    """``"host: <CPU>, <N> cores"`` for results measured on the machine an environment record
    describes (``None`` when it names no CPU)."""
    cpu = environment.get("cpu")
    return f"host: {cpu}, {environment.get('cores', '?')} cores" if cpu else None


def relabel_host_results(report: BenchReport) -> BenchReport:
    """Give the report's ``device="host"`` results the label of the machine that ran them
    (in place), so results merged from several machines never mix."""
    label = host_device_label(report.environment)
    if label:
        for r in report.results:
            if r.device == "host":
                r.device = label
    return report


def load_report(path: Path) -> BenchReport:
    """Read a result file (``results.json`` of a report folder or any file in the schema)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BenchmarkError(f"{path}: no such result file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BenchmarkError(f"{path}: not readable JSON ({e})") from None
    return BenchReport.from_dict(data, str(path))
