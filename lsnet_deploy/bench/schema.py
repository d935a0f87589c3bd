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
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import BenchmarkError, LsnetDeployError

__all__ = [
    "MAX_IMG_S",
    "MAX_MEMORY_MB",
    "MAX_MS",
    "PLATFORMS",
    "PRECISIONS",
    "RUNTIMES",
    "SCHEMA",
    "SOURCES",
    "BenchReport",
    "BenchResult",
    "host_device_label",
    "latency_problem",
    "load_report",
    "loads_json",
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

PRECISIONS = ("fp32", "fp16", "int8", "w8a8", "unknown")
"""Precision labels of a result."""

MAX_MS = 3_600_000.0
"""The plausible upper bound of a time in a result (one hour per call, load or first call):
a larger number is a typo or a corrupted file, never a measurement."""

MAX_IMG_S = 1e7
"""The plausible upper bound of a throughput (images per second)."""

MAX_MEMORY_MB = 1e7
"""The plausible upper bound of a memory footprint (MB; ten terabytes)."""

_MAX_COUNT = 10**9
_MAX_DEPTH = 16
"""How deeply the free-form objects of a result file (``device_info``, ``environment``,
``failures``) may nest: records, not data structures."""

_LATENCIES = ("median_ms", "p90_ms", "trimmed_mean_ms", "min_ms", "mean_ms")
_OTHER_NUMBERS: dict[str, tuple[bool, float, str]] = {
    # field: (zero allowed, upper bound, unit)
    "std_ms": (True, MAX_MS, "ms"),
    "load_ms": (True, MAX_MS, "ms"),
    "first_ms": (True, MAX_MS, "ms"),
    "throughput_img_s": (False, MAX_IMG_S, "images/s"),
    "memory_mb": (True, MAX_MEMORY_MB, "MB"),
}


def latency_problem(value: object, zero_ok: bool = False, upper: float = MAX_MS,
                    unit: str = "ms") -> str | None:
    """What is wrong with a number of a result (``None``: nothing): it must be a finite
    number, positive (or zero with ``zero_ok``) and at most ``upper``. The same check for
    numbers typed in (``bench import --median-ms``) and numbers read from files."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "must be a number"
    if not math.isfinite(value):
        return "must be a finite number"
    if value < 0 or (value == 0 and not zero_ok):
        return "must be positive" if not zero_ok else "must not be negative"
    if value > upper:
        return f"is implausibly large (more than {upper:g} {unit})"
    return None


def loads_json(text: str, where: str) -> Any:
    """``json.loads`` whose failures other than a syntax error are a :class:`BenchmarkError`
    naming ``where`` (JSON nested too deeply, an integer too long to convert);
    :class:`json.JSONDecodeError` is raised as it is (callers try other forms)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise BenchmarkError(f"{where}: JSON nested too deeply to be a result file") from None
    except json.JSONDecodeError:
        raise
    except ValueError as e:  # e.g. "Exceeds the limit (4300 digits) for integer string"
        raise BenchmarkError(f"{where}: not a usable result file ({_short(str(e))})") from None


def _short(text: str, limit: int = 80) -> str:
    text = text.strip().splitlines()[0] if text.strip() else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show(value: Any, limit: int = 40) -> str:
    """``repr`` of a value read from a file, short and without recursing into containers."""
    if isinstance(value, dict):
        text = "an object"
    elif isinstance(value, list):
        text = "a list"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _too_deep(value: Any, limit: int = _MAX_DEPTH) -> bool:
    """Whether ``value`` nests containers more than ``limit`` deep (iteratively)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth >= limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((c, depth + 1) for c in children)
    return False


def _count(value: Any, minimum: int) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)
            and minimum <= value <= _MAX_COUNT)


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
    def from_dict(cls, data: Any, where: str = "result") -> BenchResult:
        """Build from JSON, checking every field (the one validator of every result read from
        a file: ``report``, ``bench import``, ``--into``). Unknown keys are dropped.

        Raises:
            BenchmarkError: ``<where>: <field> ...``: a missing required key, a field of the
                wrong type, a name outside its vocabulary, a number that is not finite,
                not positive or implausibly large (:func:`latency_problem`).
        """
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
        _check_fields(kw, where)
        for key in (*_LATENCIES, *_OTHER_NUMBERS):
            if kw.get(key) is not None:
                kw[key] = float(kw[key])
        if kw.get("input_shape") is not None:
            kw["input_shape"] = list(kw["input_shape"])
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
        """Build from a result file's JSON, checking every result
        (:meth:`BenchResult.from_dict`) and the environment, ``interrupted`` and failures.

        Raises:
            BenchmarkError: naming ``where``, the record and the field.
        """
        if not isinstance(data, dict) or not isinstance(data.get("results"), list):
            raise BenchmarkError(f"{where}: not a benchmark result file (no 'results' list)")
        results = [BenchResult.from_dict(r, f"{where}: results[{i}]")
                   for i, r in enumerate(data["results"])]
        env = data.get("environment") or {}
        if not isinstance(env, dict):
            raise BenchmarkError(f"{where}: 'environment' must be an object")
        _check_environment(env, f"{where}: environment")
        failures = data.get("failures") or []
        if not isinstance(failures, list):
            raise BenchmarkError(f"{where}: 'failures' must be a list")
        for i, f in enumerate(failures):
            if not isinstance(f, dict) or _too_deep(f):
                raise BenchmarkError(f"{where}: failures[{i}] must be an object nested at "
                                     f"most {_MAX_DEPTH} deep, got {_show(f)}")
        interrupted = data.get("interrupted", False)
        if not isinstance(interrupted, bool):
            raise BenchmarkError(f"{where}: 'interrupted' must be true or false, got "
                                 f"{_show(interrupted)}")
        return cls(results, env, interrupted, failures)


def _check_fields(kw: dict[str, Any], where: str) -> None:
    """Every field of one result (see :meth:`BenchResult.from_dict`)."""
    def bad(key: str, what: str) -> BenchmarkError:
        return BenchmarkError(f"{where}: {key} {what}, got {_show(kw.get(key))}")

    for key in ("model", "runtime", "precision", "platform", "device", "source"):
        if key in kw and not (isinstance(kw[key], str) and kw[key].strip()):
            raise bad(key, "must be a non-empty string")
    for key, allowed in (("runtime", RUNTIMES), ("platform", PLATFORMS), ("source", SOURCES),
                         ("precision", PRECISIONS)):
        if key in kw and kw[key] not in allowed:
            raise BenchmarkError(f"{where}: unknown {key} {_show(kw[key])} (known: "
                                 f"{', '.join(allowed)})")
    for key in ("accelerator", "artifact", "notes"):
        if kw.get(key) is not None and not isinstance(kw[key], str):
            raise bad(key, "must be a string or null")
    if kw.get("threads") is not None and not _count(kw["threads"], 1):
        raise bad("threads", "must be a positive integer or null")
    if not _count(kw["batch"], 1):
        raise bad("batch", "must be a positive integer")
    for key, minimum in (("runs", 1), ("warmup", 0)):
        if kw.get(key) is not None and not _count(kw[key], minimum):
            raise bad(key, f"must be an integer >= {minimum} or null")
    shape = kw.get("input_shape")
    if shape is not None and not (isinstance(shape, list) and 1 <= len(shape) <= 8
                                  and all(_count(d, 1) for d in shape)):
        raise bad("input_shape", "must be a list of positive integers or null")
    for key in _LATENCIES:
        problem = None if kw.get(key) is None else latency_problem(kw[key])
        if problem:
            raise bad(key, problem)
    for key, (zero_ok, upper, unit) in _OTHER_NUMBERS.items():
        problem = None if kw.get(key) is None else latency_problem(kw[key], zero_ok, upper, unit)
        if problem:
            raise bad(key, problem)
    info = kw.get("device_info", {})
    if not isinstance(info, dict) or _too_deep(info):
        raise bad("device_info", f"must be an object nested at most {_MAX_DEPTH} deep")


def _check_environment(env: dict[str, Any], where: str) -> None:
    """The environment fields the report pages read, and its nesting."""
    if _too_deep(env):
        raise BenchmarkError(f"{where}: nested more than {_MAX_DEPTH} deep")
    for key in ("settings", "versions"):
        if env.get(key) is not None and not isinstance(env[key], dict):
            raise BenchmarkError(f"{where}: {key} must be an object, got {_show(env[key])}")
    for key in ("cpu", "timestamp", "command", "os", "machine", "note"):
        if env.get(key) is not None and not isinstance(env[key], str):
            raise BenchmarkError(f"{where}: {key} must be a string, got {_show(env[key])}")


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
        data = loads_json(path.read_text(encoding="utf-8"), str(path))
    except FileNotFoundError:
        raise BenchmarkError(f"{path}: no such result file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BenchmarkError(f"{path}: not readable JSON ({_short(str(e))})") from None
    return BenchReport.from_dict(data, str(path))
