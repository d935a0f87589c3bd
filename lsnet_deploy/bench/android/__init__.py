"""Benchmark TFLite models on an Android phone over adb with TFLite's ``benchmark_model``.

One concern per module: :mod:`.options` (what is asked, the constants), :mod:`.parse` (pure
parsers of what the phone prints), :mod:`.adb` (the transport), :mod:`.device` (device facts,
the local binary and its ABI), :mod:`.run` (the run loop, :func:`run_android_bench`). This
package re-exports the public names.
"""

from __future__ import annotations

from .device import device_info
from .options import (
    BENCHMARK_MODEL_ENV,
    BENCHMARK_MODEL_URL,
    DEVICE_DIR,
    MEDIAN_NOTE,
    THERMAL_STATUS_LABELS,
    AndroidOptions,
)
from .parse import (
    BenchmarkModelOutput,
    RunStats,
    failure_line,
    list_devices,
    parse_benchmark_output,
    parse_getprop,
    parse_thermalservice,
)
from .run import run_android_bench

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
