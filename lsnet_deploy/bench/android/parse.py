"""Pure parsers of what the phone prints (no I/O): ``benchmark_model``'s log (both output
generations, read by key, never by position), ``getprop``, ``dumpsys thermalservice``, the
per-core maximum CPU frequencies (and the big-core mask they suggest), ``adb devices``.

``benchmark_model`` reports microseconds; everything here is milliseconds and megabytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .options import THERMAL_STATUS_LABELS

__all__ = [
    "BenchmarkModelOutput",
    "RunStats",
    "big_cores_mask",
    "failure_line",
    "list_devices",
    "parse_benchmark_output",
    "parse_cpu_freqs",
    "parse_getprop",
    "parse_thermalservice",
]

# android.os.Temperature types.
_TEMP_CPU, _TEMP_BATTERY, _TEMP_SKIN = 0, 2, 3


# ----------------------------------------------------------------------------------------------
# benchmark_model output
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunStats:
    """One ``count=... first=... curr=... min=... max=... avg=... std=...`` line, in ms.

    ``median_ms`` is only set if a build prints a ``median=`` / ``p50=`` key (none known does).
    """

    count: int | None = None
    first_ms: float | None = None
    curr_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    avg_ms: float | None = None
    std_ms: float | None = None
    median_ms: float | None = None


@dataclass(frozen=True)
class BenchmarkModelOutput:
    """What one ``benchmark_model`` run printed. Times in ms, memory in MB, ``None`` if absent.

    Attributes:
        format: ``current`` (``Inference timings in us: Init: ..., First inference: ...``),
            ``legacy`` (``Average inference timings in us: Warmup: ..., Init: ...``) or
            ``None`` when neither summary line is there (a failed run).
        init_ms: model load + interpreter/delegate initialization (``Init``).
        first_ms: the first (cold) inference: ``First inference``, else the warm-up line's
            ``first=``.
        warmup_avg_ms, inference_avg_ms: the summary line's averages.
        warmup, inference: the two ``count=`` lines (warm-up runs, then timed runs).
        memory_init_mb, memory_overall_mb: footprint growth after init / at the end
            (``Memory footprint delta ... init=... overall=...``; legacy
            ``Peak memory footprint (MB): init=... overall=...``).
        memory_peak_mb: ``Overall peak memory footprint (MB) via periodic monitoring``
            (only with ``--report_peak_memory_footprint=true``).
        model_size_mb: ``The input model file size (MB)``.
        delegate: the line saying how much of the graph a delegate took, e.g. ``Explicitly
            applied GPU delegate, and the model graph will be partially executed ...``.
        errors: lines that report a failure, in order.
    """

    format: str | None = None
    init_ms: float | None = None
    first_ms: float | None = None
    warmup_avg_ms: float | None = None
    inference_avg_ms: float | None = None
    warmup: RunStats | None = None
    inference: RunStats | None = None
    memory_init_mb: float | None = None
    memory_overall_mb: float | None = None
    memory_peak_mb: float | None = None
    model_size_mb: float | None = None
    delegate: str | None = None
    errors: tuple[str, ...] = ()

    @property
    def avg_ms(self) -> float | None:
        """Average latency of the timed runs (the ``count=`` line, else the summary)."""
        if self.inference is not None and self.inference.avg_ms is not None:
            return self.inference.avg_ms
        return self.inference_avg_ms

    @property
    def ok(self) -> bool:
        """Whether timed runs were reported."""
        return self.avg_ms is not None and (self.inference is None or bool(self.inference.count))

    @property
    def memory_mb(self) -> float | None:
        """The peak footprint if monitored, else the overall footprint delta."""
        return self.memory_peak_mb if self.memory_peak_mb is not None else self.memory_overall_mb


_LEVEL = re.compile(r"^(?:INFO|WARNING|WARN|ERROR|VERBOSE|DEBUG):\s*")
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PAIR = re.compile(rf"([A-Za-z_][\w]*)=({_NUMBER})")
_STAT_LINE = re.compile(rf"(?:[A-Za-z_]\w*=(?:{_NUMBER})\s*)+")
_FAIL = re.compile(r"\b(fail(?:ed|ure|s)?|error|abort(?:ed)?|segmentation fault|cannot link"
                   r"|not found|unable to)\b", re.IGNORECASE)


def _num(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _pairs(text: str) -> dict[str, float]:
    """``a=1 b=2.5`` -> ``{"a": 1.0, "b": 2.5}`` (keys lower-cased; order irrelevant)."""
    return {k.lower(): float(v) for k, v in _PAIR.findall(text)}


def _summary(text: str) -> dict[str, float | None]:
    """``Init: 855, First inference: 49060`` -> ``{"init": 855.0, "first inference": ...}``."""
    out: dict[str, float | None] = {}
    for item in text.split(","):
        key, sep, value = item.partition(":")
        if sep:
            out[key.strip().lower()] = _num(value.strip())
    return out


def _us_to_ms(value: float | None) -> float | None:
    return None if value is None else value / 1e3


def _stats(pairs: dict[str, float]) -> RunStats:
    count = pairs.get("count")
    median = pairs.get("median", pairs.get("p50"))
    return RunStats(
        count=None if count is None else int(count),
        first_ms=_us_to_ms(pairs.get("first")),
        curr_ms=_us_to_ms(pairs.get("curr")),
        min_ms=_us_to_ms(pairs.get("min")),
        max_ms=_us_to_ms(pairs.get("max")),
        avg_ms=_us_to_ms(pairs.get("avg")),
        std_ms=_us_to_ms(pairs.get("std")),
        median_ms=_us_to_ms(median),
    )


def parse_benchmark_output(text: str) -> BenchmarkModelOutput:
    """Parse the log of one ``benchmark_model`` run (either output generation).

    Lines may carry a level prefix (``INFO: ``). Stat lines are the lines made only of
    ``key=value`` pairs, one of them ``count`` (so the op-profiling tables' ``Timings
    (microseconds): count=...`` are ignored): the first is the warm-up, the last the timed
    runs. Values are read by key, so the order
    of the keys on a line does not matter. Microseconds become milliseconds.
    """
    stat_lines: list[dict[str, float]] = []
    summary: dict[str, float | None] = {}
    fmt: str | None = None
    memory: dict[str, float] = {}
    peak = model_size = session_ms = None
    delegate: str | None = None
    errors: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        body = _LEVEL.sub("", line)
        if _STAT_LINE.fullmatch(body) and "count" in (pairs := _pairs(body)):
            stat_lines.append(pairs)
            continue
        head, sep, rest = body.partition(" timings in us:")
        if sep and head.endswith("Average inference"):
            fmt, summary = "legacy", _summary(rest)
            continue
        if sep and head.endswith("Inference"):
            fmt, summary = "current", _summary(rest)
            continue
        if body.startswith(("Memory footprint delta", "Peak memory footprint (MB)")):
            memory = _pairs(body.partition(":")[2])
        elif body.startswith("Overall peak memory footprint"):
            peak = _num(body.rpartition(":")[2].strip())
        elif body.startswith("The input model file size (MB):"):
            model_size = _num(body.rpartition(":")[2].strip())
        elif body.startswith("Initialized session in"):
            m = re.search(rf"({_NUMBER})\s*ms", body)
            session_ms = float(m.group(1)) if m else None
        elif "delegate" in body and "executed by the delegate" in body:
            delegate = body
        if line.startswith("ERROR:") or _FAIL.search(body):
            errors.append(line)

    warmup = _stats(stat_lines[0]) if stat_lines else None
    inference = _stats(stat_lines[-1]) if len(stat_lines) >= 2 else None
    init_us = summary.get("init")
    first_us = summary.get("first inference")
    return BenchmarkModelOutput(
        format=fmt,
        init_ms=_us_to_ms(init_us) if init_us is not None else session_ms,
        first_ms=_us_to_ms(first_us) if first_us is not None
        else (warmup.first_ms if warmup is not None else None),
        warmup_avg_ms=_us_to_ms(summary.get("warmup (avg)", summary.get("warmup"))),
        inference_avg_ms=_us_to_ms(summary.get("inference (avg)", summary.get("inference"))),
        warmup=warmup,
        inference=inference,
        memory_init_mb=memory.get("init"),
        memory_overall_mb=memory.get("overall"),
        memory_peak_mb=peak,
        model_size_mb=model_size,
        delegate=delegate,
        errors=tuple(errors),
    )


def failure_line(text: str) -> str:
    """One line saying why a run failed: the first ``ERROR:`` line (the root cause comes
    first, e.g. "Didn't find op ..." before "Registration failed") and the last line that
    reports a failure (other than the generic ``Benchmarking failed.``), joined by `` / ``
    when they differ; the last non-empty line when nothing looks like an error."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    first = next((ln for ln in lines if ln.startswith("ERROR:")), None)
    last = next((ln for ln in reversed(lines)
                 if _FAIL.search(_LEVEL.sub("", ln))
                 and _LEVEL.sub("", ln).lower().rstrip(".") != "benchmarking failed"), None)
    picked = [ln[:200] for ln in dict.fromkeys(x for x in (first, last) if x)]
    if picked:
        return " / ".join(picked)
    return lines[-1][:200] if lines else "(no output)"


# ----------------------------------------------------------------------------------------------
# Device facts
# ----------------------------------------------------------------------------------------------

_GETPROP = re.compile(r"^\[([^\]]+)\]:\s*\[(.*)\]\s*$")


def parse_getprop(text: str) -> dict[str, str]:
    """``adb shell getprop`` (``[key]: [value]`` lines) as a dict."""
    props: dict[str, str] = {}
    for line in text.splitlines():
        m = _GETPROP.match(line.strip())
        if m:
            props[m.group(1)] = m.group(2)
    return props


_TEMPERATURE = re.compile(r"Temperature\{([^}]*)\}")


def parse_thermalservice(text: str) -> dict[str, Any] | None:
    """The thermal state from ``dumpsys thermalservice`` (Android 10+).

    Returns ``{"status": 0, "label": "NONE", "cpu_max_c": ..., "battery_c": ...,
    "skin_c": ...}`` (temperatures in deg C from the HAL's current readings, else its cached
    ones; ``None`` when not reported), or ``None`` when there is no thermal service.
    """
    m = re.search(r"^\s*Thermal Status:\s*(-?\d+)", text, re.MULTILINE)
    if m is None:
        return None
    status = int(m.group(1))
    sections: dict[str, list[dict[str, str]]] = {}
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.endswith(":") and not line.startswith((" ", "\t")):
            current = stripped[:-1]
            continue
        t = _TEMPERATURE.search(stripped)
        if t:
            fields = dict(kv.split("=", 1) for kv in re.split(r",\s*", t.group(1)) if "=" in kv)
            sections.setdefault(current, []).append(fields)
    temps = sections.get("Current temperatures from HAL") or sections.get(
        "Cached temperatures") or []

    def of_type(kind: int) -> list[float]:
        out = []
        for fields in temps:
            value = _num(fields.get("mValue", ""))
            if fields.get("mType") == str(kind) and value is not None:
                out.append(value)
        return out

    cpu, battery, skin = of_type(_TEMP_CPU), of_type(_TEMP_BATTERY), of_type(_TEMP_SKIN)
    return {
        "status": status,
        "label": THERMAL_STATUS_LABELS.get(status, f"UNKNOWN({status})"),
        "cpu_max_c": max(cpu) if cpu else None,
        "battery_c": battery[0] if battery else None,
        "skin_c": max(skin) if skin else None,
    }


def parse_cpu_freqs(text: str) -> dict[int, int]:
    """``cpu0 1804800`` lines -> ``{0: 1804800}`` (kHz; cores without cpufreq skipped)."""
    out: dict[int, int] = {}
    for line in text.splitlines():
        m = re.match(r"^\s*cpu(\d+)\s+(\d+)\s*$", line)
        if m:
            out[int(m.group(1))] = int(m.group(2))
    return out


def big_cores_mask(freqs: dict[int, int]) -> str | None:
    """Hex mask of the cores faster than the slowest cluster (``None`` if all are alike)."""
    if not freqs or len(set(freqs.values())) < 2:
        return None
    slowest = min(freqs.values())
    return format(sum(1 << cpu for cpu, f in freqs.items() if f > slowest), "x")


# ----------------------------------------------------------------------------------------------
# adb devices
# ----------------------------------------------------------------------------------------------

def list_devices(text: str) -> list[tuple[str, str]]:
    """``adb devices`` output -> ``[(serial, state), ...]`` (``device``, ``unauthorized``,
    ``offline``, ``no permissions ...``)."""
    out = []
    for line in text.splitlines():
        if not line.strip() or line.startswith(("List of devices", "*", "adb server")):
            continue
        serial, sep, state = line.partition("\t")
        if not sep:
            parts = line.split(None, 1)
            if len(parts) != 2:
                continue
            serial, state = parts
        out.append((serial.strip(), state.strip()))
    return out
