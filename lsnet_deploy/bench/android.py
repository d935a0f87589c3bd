"""Benchmark TFLite models on an Android phone over adb with TFLite's ``benchmark_model``.

The flow of :func:`run_android_bench`:

1. check the local side first (model files, the ``benchmark_model`` binary, options), so a
   typo fails before any device is touched;
2. pick the device (``adb devices``: exactly one attached, or ``--serial``) and read its facts
   (``getprop``, ``dumpsys thermalservice``, per-core maximum CPU frequencies);
3. push the binary (``chmod 755``) and every model to ``/data/local/tmp`` once;
4. per model and thread count, run ``[taskset MASK] benchmark_model --graph=... > report``
   on the device, ``adb pull`` the report, keep it locally and parse it into a
   :class:`~lsnet_deploy.bench.schema.BenchResult`;
5. remove the pushed models and reports (best effort; the binary stays for the next run).

``benchmark_model`` reports microseconds; everything here is milliseconds and megabytes. It
reports no median: ``median_ms`` of a result is its average (the notes say so), because the
report table sorts and plots by median. Its output comes in two generations, both parsed by
:func:`parse_benchmark_output` from ``key=value`` / ``Key: value`` pairs, never by position.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BenchmarkError, DeviceError, LsnetDeployError
from ..metadata import read_sidecar
from .artifacts import describe_artifact
from .schema import BenchResult

__all__ = [
    "BENCHMARK_MODEL_ENV",
    "BENCHMARK_MODEL_URL",
    "DEVICE_DIR",
    "MEDIAN_NOTE",
    "THERMAL_STATUS_LABELS",
    "AndroidOptions",
    "BenchmarkModelOutput",
    "RunStats",
    "device_info",
    "failure_line",
    "list_devices",
    "parse_benchmark_output",
    "parse_getprop",
    "parse_thermalservice",
    "run_android_bench",
]

log = logging.getLogger(__name__)

BENCHMARK_MODEL_ENV = "LSNET_DEPLOY_BENCHMARK_MODEL"
"""Environment variable naming the local ``benchmark_model`` when ``--benchmark-binary`` is
not given."""

BENCHMARK_MODEL_URL = (
    "https://storage.googleapis.com/tensorflow-nightly-public/prod/tensorflow/release/lite/"
    "tools/nightly/latest/android_aarch64_benchmark_model"
)
"""TFLite's nightly prebuilt ``benchmark_model`` for Android arm64 (``android_arm`` for 32-bit
phones: replace ``aarch64`` by ``arm`` in the name)."""

DEVICE_DIR = "/data/local/tmp"
"""Where the binary, the models and the reports go on the device (writable by adb's shell)."""

MEDIAN_NOTE = "benchmark_model reports no median; median_ms is its avg"

THERMAL_STATUS_LABELS = {0: "NONE", 1: "LIGHT", 2: "MODERATE", 3: "SEVERE", 4: "CRITICAL",
                         5: "EMERGENCY", 6: "SHUTDOWN"}
"""Android's ``PowerManager.THERMAL_STATUS_*`` levels as printed by ``dumpsys thermalservice``
(``Thermal Status: N``). Anything above ``NONE`` means the phone may be throttling."""

_REMOTE_BINARY = f"{DEVICE_DIR}/benchmark_model"
_EXIT_MARKER = "lsnet-deploy-exit="
_ADB_HELP = "https://developer.android.com/tools/releases/platform-tools"
# ELF e_machine values and the Android ABIs that can run them.
_ELF_MACHINES = {3: "x86", 40: "arm", 62: "x86-64", 183: "aarch64"}
_ABI_MACHINES = {"arm64-v8a": 183, "armeabi-v7a": 40, "armeabi": 40, "x86": 3, "x86_64": 62}
# android.os.Temperature types.
_TEMP_CPU, _TEMP_BATTERY, _TEMP_SKIN = 0, 2, 3


# ----------------------------------------------------------------------------------------------
# Options
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AndroidOptions:
    """How to run ``benchmark_model`` on the phone.

    Attributes:
        serial: ``adb -s SERIAL``; ``None`` uses the only attached device (an error if there
            are none or several; the message lists the serials).
        benchmark_binary: local ``benchmark_model`` built for the phone's ABI; ``None`` reads
            ``$LSNET_DEPLOY_BENCHMARK_MODEL``, else it is an error naming where to get one.
        threads: CPU threads (``--num_threads``); one run per value.
        use_gpu, use_nnapi, use_xnnpack: the delegate (``--use_gpu=true`` ...); at most one.
            None of them: the binary's default CPU path (recent builds apply XNNPACK to float
            models by default), reported as accelerator ``cpu``.
        taskset: hex CPU affinity mask (``f0`` = CPUs 4-7); the run becomes
            ``taskset MASK benchmark_model ...`` on the device.
        runs: timed runs (``--num_runs``, with ``--min_secs=0`` so the count is exact unless
            ``benchmark_model``'s 150 s ``--max_secs`` cuts it short).
        warmup_runs: untimed runs first (``--warmup_runs``, with ``--warmup_min_secs=0``).
        adb: adb executable (a name looked up on ``PATH`` or a path).
        timeout_s: seconds any single adb call (a push, a benchmark run) may take.
    """

    serial: str | None = None
    benchmark_binary: Path | None = None
    threads: tuple[int, ...] = (1,)
    use_gpu: bool = False
    use_nnapi: bool = False
    use_xnnpack: bool = False
    taskset: str | None = None
    runs: int = 50
    warmup_runs: int = 10
    adb: str = "adb"
    timeout_s: float = 600.0

    def __post_init__(self) -> None:
        threads = tuple(self.threads) if not isinstance(self.threads, int) else (self.threads,)
        object.__setattr__(self, "threads", threads)
        if not threads or any(not isinstance(t, int) or t < 1 for t in threads):
            raise BenchmarkError(f"threads must be positive integers, got {self.threads!r}")
        if sum((self.use_gpu, self.use_nnapi, self.use_xnnpack)) > 1:
            raise BenchmarkError(
                "choose at most one of --use-gpu, --use-nnapi, --use-xnnpack "
                "(run once per accelerator to compare them)"
            )
        if self.taskset is not None and _mask_value(self.taskset) is None:
            raise BenchmarkError(
                f"--taskset {self.taskset!r} is not a non-zero hex CPU mask (e.g. f0 for CPUs 4-7)"
            )
        if self.runs < 1:
            raise BenchmarkError(f"runs must be >= 1, got {self.runs}")
        if self.warmup_runs < 0:
            raise BenchmarkError(f"warmup_runs must be >= 0, got {self.warmup_runs}")
        if self.timeout_s <= 0:
            raise BenchmarkError(f"timeout_s must be > 0, got {self.timeout_s}")

    @property
    def accelerator(self) -> str:
        """``gpu``, ``nnapi``, ``xnnpack`` or ``cpu`` (what was asked)."""
        if self.use_gpu:
            return "gpu"
        if self.use_nnapi:
            return "nnapi"
        if self.use_xnnpack:
            return "xnnpack"
        return "cpu"


def _mask_value(mask: str) -> int | None:
    text = mask.strip().lower()
    text = text.removeprefix("0x")
    if not re.fullmatch(r"[0-9a-f]+", text):
        return None
    value = int(text, 16)
    return value or None


# ----------------------------------------------------------------------------------------------
# Parsing benchmark_model output
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
# Parsing device facts
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


def _parse_cpu_freqs(text: str) -> dict[int, int]:
    """``cpu0 1804800`` lines -> ``{0: 1804800}`` (kHz; cores without cpufreq skipped)."""
    out: dict[int, int] = {}
    for line in text.splitlines():
        m = re.match(r"^\s*cpu(\d+)\s+(\d+)\s*$", line)
        if m:
            out[int(m.group(1))] = int(m.group(2))
    return out


def _big_cores_mask(freqs: dict[int, int]) -> str | None:
    """Hex mask of the cores faster than the slowest cluster (``None`` if all are alike)."""
    if not freqs or len(set(freqs.values())) < 2:
        return None
    slowest = min(freqs.values())
    return format(sum(1 << cpu for cpu, f in freqs.items() if f > slowest), "x")


# ----------------------------------------------------------------------------------------------
# adb
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


def _state_error(serial: str, state: str) -> DeviceError:
    if state == "unauthorized":
        return DeviceError(
            f"device {serial} is unauthorized: unlock the phone and accept the 'Allow USB "
            "debugging?' prompt (or revoke USB debugging authorizations and replug), then retry"
        )
    if state == "offline":
        return DeviceError(
            f"device {serial} is offline: replug the USB cable or run 'adb reconnect', then retry"
        )
    if state.startswith("no permissions"):
        return DeviceError(
            f"no permission to use device {serial}: set up udev rules for adb (or add your "
            "user to the plugdev group) and replug"
        )
    return DeviceError(
        f"device {serial} is in state '{state}', not 'device': boot it normally and retry"
    )


def _adb_error(stderr: str, what: str, serial: str | None) -> DeviceError:
    """Map an adb failure message to an actionable :class:`DeviceError`."""
    text = stderr.strip()
    low = text.lower()
    who = serial or "the device"
    if "no devices/emulators found" in low:
        return DeviceError(
            "no Android device attached: connect a phone with USB debugging enabled "
            "('adb devices' must list it as 'device')"
        )
    if "unauthorized" in low:
        return _state_error(who, "unauthorized")
    if "more than one device" in low:
        return DeviceError("more than one device attached: pass --serial ID")
    if "offline" in low:
        return _state_error(who, "offline")
    if re.search(r"device '.*' not found", low):
        return DeviceError(f"device {who} not found: check 'adb devices' and --serial")
    last = text.splitlines()[-1] if text else "no message"
    return DeviceError(f"adb {what} failed: {last}")


def _resolve_adb(adb: str) -> str:
    if os.sep in adb or (os.altsep and os.altsep in adb):
        if Path(adb).is_file():
            return adb
        raise DeviceError(f"adb not found at {adb}: install Android platform-tools ({_ADB_HELP})")
    found = shutil.which(adb)
    if found is None:
        raise DeviceError(
            f"{adb} not found on PATH: install Android platform-tools ({_ADB_HELP}) and put "
            "adb on PATH"
        )
    return found


class _Adb:
    """Runs adb commands against one device with a timeout; errors become DeviceError."""

    def __init__(self, options: AndroidOptions) -> None:
        self.exe = _resolve_adb(options.adb)
        self.timeout_s = options.timeout_s
        self.serial: str | None = None

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [self.exe] + (["-s", self.serial] if self.serial else []) + list(args)
        what = " ".join(args[:2])
        what = what if len(what) <= 60 else what[:57] + "..."
        log.debug("run: %s", shlex.join(argv))
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, errors="replace",
                                  timeout=self.timeout_s, check=False)
        except FileNotFoundError:
            raise DeviceError(
                f"adb not found ({self.exe}): install Android platform-tools ({_ADB_HELP})"
            ) from None
        except subprocess.TimeoutExpired:
            raise DeviceError(
                f"adb {what} timed out after {self.timeout_s:g} s: check the device, or raise "
                "the timeout"
            ) from None
        if check and proc.returncode != 0:
            raise _adb_error(proc.stderr or proc.stdout, what, self.serial)
        return proc

    def shell(self, command: str, check: bool = True) -> str:
        return self.run("shell", command, check=check).stdout

    def select(self, serial: str | None) -> str:
        """Choose the device (``serial`` or the only one) and target it from now on."""
        entries = list_devices(self.run("devices").stdout)
        listing = ", ".join(f"{s} [{st}]" for s, st in entries) or "none"
        if serial is not None:
            states = dict(entries)
            if serial not in states:
                raise DeviceError(f"device {serial} is not attached (adb devices: {listing})")
            state = states[serial]
        elif not entries:
            raise DeviceError(
                "no Android device attached: connect a phone with USB debugging enabled "
                "('adb devices' must list it as 'device')"
            )
        elif len(entries) > 1:
            raise DeviceError(f"{len(entries)} devices attached ({listing}): pass --serial ID")
        else:
            serial, state = entries[0]
        if state != "device":
            raise _state_error(serial, state)
        self.serial = serial
        return serial


def _collect_device_info(adb: _Adb) -> dict[str, Any]:
    props = parse_getprop(adb.shell("getprop"))
    soc = props.get("ro.soc.model") or props.get("ro.board.platform") or props.get(
        "ro.hardware")
    sdk = props.get("ro.build.version.sdk", "")
    freqs = _parse_cpu_freqs(adb.shell(
        "for c in /sys/devices/system/cpu/cpu[0-9]*; do "
        "echo ${c##*/} $(cat $c/cpufreq/cpuinfo_max_freq 2>/dev/null); done", check=False))
    return {
        "serial": adb.serial,
        "model": props.get("ro.product.model"),
        "manufacturer": props.get("ro.product.manufacturer"),
        "soc": soc,
        "soc_manufacturer": props.get("ro.soc.manufacturer"),
        "android_version": props.get("ro.build.version.release"),
        "sdk": int(sdk) if sdk.isdigit() else None,
        "abi": props.get("ro.product.cpu.abi"),
        "abilist": props.get("ro.product.cpu.abilist"),
        "cpu_max_freq_mhz": {f"cpu{c}": freqs[c] // 1000 for c in sorted(freqs)} or None,
        "big_cores_mask": _big_cores_mask(freqs),
        "thermal": _thermal(adb),
    }


def _thermal(adb: _Adb) -> dict[str, Any] | None:
    proc = adb.run("shell", "dumpsys thermalservice", check=False)
    return parse_thermalservice(proc.stdout) if proc.returncode == 0 else None


def device_info(options: AndroidOptions) -> dict[str, Any]:
    """Facts about the phone ``options`` selects.

    Keys: ``serial``, ``model``, ``manufacturer``, ``soc`` (``ro.soc.model``, else
    ``ro.board.platform``, else ``ro.hardware``), ``soc_manufacturer``, ``android_version``,
    ``sdk``, ``abi``, ``abilist``, ``cpu_max_freq_mhz`` (``{"cpu0": 1803, ...}``, online
    cores),
    ``big_cores_mask`` (hex mask of the cores faster than the slowest cluster, a ``--taskset``
    candidate) and ``thermal`` (:func:`parse_thermalservice`, ``None`` before Android 10).
    Missing properties are ``None``.
    """
    adb = _Adb(options)
    adb.select(options.serial)
    return _collect_device_info(adb)


# ----------------------------------------------------------------------------------------------
# Local checks
# ----------------------------------------------------------------------------------------------

def _resolve_binary(options: AndroidOptions) -> Path:
    binary = options.benchmark_binary
    origin = "--benchmark-binary"
    if binary is None:
        env = os.environ.get(BENCHMARK_MODEL_ENV)
        if not env:
            raise BenchmarkError(
                "no benchmark_model binary: download TFLite's prebuilt nightly for Android "
                f"arm64 ({BENCHMARK_MODEL_URL}) and pass --benchmark-binary PATH or set "
                f"{BENCHMARK_MODEL_ENV}"
            )
        binary, origin = Path(env), f"${BENCHMARK_MODEL_ENV}"
    binary = Path(binary).expanduser()
    if not binary.is_file():
        raise BenchmarkError(
            f"benchmark_model not found at {binary} ({origin}): download it from "
            f"{BENCHMARK_MODEL_URL}"
        )
    if _elf_machine(binary) is None:
        raise BenchmarkError(
            f"{binary} is not an ELF executable: pass the benchmark_model binary itself "
            f"({BENCHMARK_MODEL_URL})"
        )
    return binary


def _elf_machine(path: Path) -> int | None:
    """ELF ``e_machine`` of ``path``, ``None`` if it is not an ELF file."""
    with open(path, "rb") as f:
        head = f.read(20)
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    return int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")


def _check_binary_abi(binary: Path, info: dict[str, Any]) -> None:
    """The binary must be built for one of the device's ABIs (``ro.product.cpu.abilist``)."""
    machine = _elf_machine(binary)
    abis = [a.strip() for a in (info.get("abilist") or info.get("abi") or "").split(",")
            if a.strip()]
    runnable = {_ABI_MACHINES[a] for a in abis if a in _ABI_MACHINES}
    if machine is not None and runnable and machine not in runnable:
        built = _ELF_MACHINES.get(machine, f"machine {machine}")
        raise BenchmarkError(
            f"{binary} is built for {built} but the device's ABIs are {', '.join(abis)}: "
            f"use the matching Android build of benchmark_model ({BENCHMARK_MODEL_URL})"
        )


@dataclass(frozen=True)
class _Model:
    path: Path
    label: str
    precision: str
    batch: int
    input_shape: list[int] | None
    remote: str


def _input_shape(path: Path) -> list[int] | None:
    """The input shape from the sidecar (``metadata.input_shape``), else from the file."""
    try:
        sidecar = read_sidecar(path) or {}
    except (OSError, ValueError):
        sidecar = {}
    shape = (sidecar.get("metadata") or {}).get("input_shape") or sidecar.get("input_shape")
    if isinstance(shape, list) and shape:
        return [d if isinstance(d, int) else 1 for d in shape]  # dynamic batch: runs with 1
    try:
        from ..exporters.tflite_flatbuffer import io_details

        return [int(d) for d in io_details(path)["inputs"][0]["shape"]]
    except Exception as e:  # noqa: BLE001 - unreadable here (no ai-edge-litert, foreign file)
        log.debug("input shape of %s unknown: %s", path, e)
        return None


def _prepare_models(models: list[Path]) -> list[_Model]:
    if not models:
        raise BenchmarkError("no model given: pass one or more .tflite files")
    out = []
    for index, given in enumerate(models):
        path = Path(given).expanduser()
        if path.suffix.lower() != ".tflite":
            raise BenchmarkError(
                f"{path}: Android benchmarking runs TFLite models (.tflite) only"
            )
        if not path.is_file():
            raise BenchmarkError(f"{path}: no such model file")
        info = describe_artifact(path)
        shape = _input_shape(path)
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem)[:60] or "model"
        remote = f"{DEVICE_DIR}/lsnet_deploy_{index}_{safe}.tflite"
        out.append(_Model(path, info.model, info.precision, shape[0] if shape else 1, shape,
                          remote))
    return out


def _log_dir() -> Path:
    """Where the pulled ``benchmark_model`` reports are kept."""
    home = os.environ.get("LSNET_DEPLOY_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".cache" / "lsnet-deploy"
    return base / "android"


# ----------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------

def _benchmark_args(model: _Model, threads: int, options: AndroidOptions) -> list[str]:
    args = [
        f"--graph={model.remote}",
        f"--num_threads={threads}",
        f"--num_runs={options.runs}",
        "--min_secs=0",
        f"--warmup_runs={options.warmup_runs}",
        "--warmup_min_secs=0",
    ]
    if options.use_gpu:
        args.append("--use_gpu=true")
    if options.use_nnapi:
        args.append("--use_nnapi=true")
    if options.use_xnnpack:
        args.append("--use_xnnpack=true")
    return args


def _device_command(model: _Model, threads: int, options: AndroidOptions, report: str) -> str:
    prefix = []
    if options.taskset is not None:
        mask = options.taskset.strip().lower()
        prefix = ["taskset", mask.removeprefix("0x")]
    argv = prefix + [_REMOTE_BINARY] + _benchmark_args(model, threads, options)
    return f"{shlex.join(argv)} > {shlex.quote(report)} 2>&1; echo {_EXIT_MARKER}$?"


def _exit_code(stdout: str) -> int | None:
    m = re.search(rf"{re.escape(_EXIT_MARKER)}(\d+)", stdout)
    return int(m.group(1)) if m else None


def _notes(parsed: BenchmarkModelOutput, options: AndroidOptions,
           thermal_after: dict[str, Any] | None) -> str:
    notes = [] if parsed.inference and parsed.inference.median_ms is not None else [MEDIAN_NOTE]
    if parsed.memory_peak_mb is None and parsed.memory_overall_mb is not None:
        notes.append("memory_mb is the footprint delta from the start of the tool (overall)")
    count = parsed.inference.count if parsed.inference else None
    if count is not None and count < options.runs:
        notes.append(f"benchmark_model stopped after {count} of {options.runs} runs (max_secs)")
    if parsed.delegate:
        notes.append(parsed.delegate)
    if thermal_after and thermal_after.get("status", 0) > 0:
        notes.append(f"thermal status {thermal_after['label']} after the run: the phone may "
                     "have throttled")
    return "; ".join(notes)


def _result(model: _Model, threads: int, options: AndroidOptions, parsed: BenchmarkModelOutput,
            info: dict[str, Any]) -> BenchResult:
    stats = parsed.inference
    mean = parsed.avg_ms
    median = stats.median_ms if stats is not None and stats.median_ms is not None else mean
    warmup = parsed.warmup.count if parsed.warmup is not None else options.warmup_runs
    return BenchResult(
        model=model.label,
        runtime="litert",
        precision=model.precision,
        threads=threads,
        batch=model.batch,
        median_ms=median,
        min_ms=stats.min_ms if stats else None,
        mean_ms=mean,
        std_ms=stats.std_ms if stats else None,
        runs=stats.count if stats else None,
        warmup=warmup,
        input_shape=model.input_shape,
        platform="android",
        device=info.get("model") or info.get("serial") or "android",
        accelerator=options.accelerator,
        load_ms=parsed.init_ms,
        first_ms=parsed.first_ms,
        memory_mb=parsed.memory_mb,
        artifact=str(model.path),
        source="benchmark_model",
        device_info=info,
        notes=_notes(parsed, options, info.get("thermal_after")) or None,
    )


def _run_one(adb: _Adb, model: _Model, threads: int, options: AndroidOptions,
             base_info: dict[str, Any], report: str, local_log: Path) -> BenchResult:
    """Run once on the device, pull the report to ``local_log`` (kept), parse it."""
    command = _device_command(model, threads, options, report)
    thermal_before = _thermal(adb)
    stdout = adb.shell(command)
    code = _exit_code(stdout)
    adb.run("pull", report, str(local_log))
    text = local_log.read_text(errors="replace")
    log.debug("benchmark_model output (%s):\n%s", local_log, text)
    parsed = parse_benchmark_output(text)
    if (code is not None and code != 0) or not parsed.ok:
        status = f"exit {code}" if code is not None else "no exit status"
        why = failure_line(text) if text.strip() else "no output"
        raise DeviceError(
            f"benchmark_model failed on {base_info.get('serial')} for {model.path.name} "
            f"({status}, {options.accelerator}, {threads} thread(s)): {why} "
            f"[full log: {local_log}]"
        )
    info = dict(base_info)
    info.update(thermal=thermal_before, thermal_after=_thermal(adb),
                benchmark_command=command, benchmark_log=str(local_log))
    return _result(model, threads, options, parsed, info)


def run_android_bench(models: list[Path], options: AndroidOptions,
                      progress: Callable[[str], None] | None = None) -> list[BenchResult]:
    """Benchmark every model at every thread count on the phone; one result per pair.

    Raises :class:`BenchmarkError` for local problems (missing model or binary, binary for
    another ABI) and :class:`DeviceError` for the device (adb missing, no / several /
    unauthorized / offline devices, ``benchmark_model`` failing on the device: the message
    names the line of its log that says why and where the full log was kept).

    The results measured before an error or Ctrl-C are on the exception's ``results``
    attribute (a list of :class:`BenchResult`), so a caller can still save them.

    The pulled logs are kept under ``$LSNET_DEPLOY_HOME/android`` (default
    ``~/.cache/lsnet-deploy/android``); each result's ``device_info`` names its log
    (``benchmark_log``), the exact device command (``benchmark_command``) and the thermal
    state before (``thermal``) and after (``thermal_after``) the run.
    """
    say = progress or (lambda message: None)

    def tell(message: str) -> None:
        log.info("%s", message)
        say(message)

    prepared = _prepare_models(list(models))
    binary = _resolve_binary(options)
    adb = _Adb(options)
    serial = adb.select(options.serial)
    info = _collect_device_info(adb)
    tell(f"device {serial}: {info.get('manufacturer')} {info.get('model')}, SoC {info.get('soc')}, "
         f"Android {info.get('android_version')}")
    _check_binary_abi(binary, info)
    thermal = info.get("thermal")
    if thermal and thermal.get("status", 0) > 0:
        log.warning("device %s starts at thermal status %s: let it cool down for stable numbers",
                    serial, thermal.get("label"))
    if options.taskset is not None:
        cpus = (_mask_value(options.taskset) or 0).bit_count()
        if max(options.threads) > cpus:
            log.warning("--threads %d with --taskset %s (%d CPU(s)): threads will share cores",
                        max(options.threads), options.taskset, cpus)

    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    logs = _log_dir() / f"{stamp}_{re.sub(r'[^A-Za-z0-9._-]+', '_', serial)}"
    logs.mkdir(parents=True, exist_ok=True)
    pushed: list[str] = []
    results: list[BenchResult] = []
    try:
        tell(f"pushing {binary.name} to {_REMOTE_BINARY}")
        adb.run("push", str(binary), _REMOTE_BINARY)
        adb.shell(f"chmod 755 {_REMOTE_BINARY}")
        for model in prepared:
            tell(f"pushing {model.path.name}")
            pushed.append(model.remote)
            adb.run("push", str(model.path), model.remote)
        total = len(prepared) * len(options.threads)
        index = 0
        for model in prepared:
            for threads in options.threads:
                index += 1
                tell(f"[{index}/{total}] {model.label} ({model.precision}) "
                     f"{options.accelerator}, {threads} thread(s)")
                report = f"{DEVICE_DIR}/lsnet_deploy_report_{index}.txt"
                pushed.append(report)
                name = re.sub(r"[^A-Za-z0-9._-]+", "_", model.path.stem)
                local_log = logs / f"{index:02d}_{name}_{options.accelerator}_t{threads}.txt"
                result = _run_one(adb, model, threads, options, info, report, local_log)
                tell(f"[{index}/{total}] {model.label}: {result.mean_ms:.2f} ms avg over "
                     f"{result.runs} runs")
                results.append(result)
    except (LsnetDeployError, KeyboardInterrupt) as e:
        e.results = list(results)  # type: ignore[union-attr]
        raise
    finally:
        if pushed:
            try:
                adb.run("shell", "rm -f " + " ".join(shlex.quote(p) for p in pushed))
            except DeviceError as e:
                log.warning("could not remove the pushed files from %s: %s", serial, e)
    return results
