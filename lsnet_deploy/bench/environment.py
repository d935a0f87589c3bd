"""The machine a benchmark ran on: CPU, cores, OS, runtime versions, threads and load.

A latency means little without the machine and how busy it was; every result file carries
this record as its ``environment``.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..metadata import tool_versions

__all__ = ["BUSY_LOAD_PER_CORE", "collect_environment", "cpu_name", "load_average", "mark_busy"]

BUSY_LOAD_PER_CORE = 0.75
"""A 1-minute load average above this many runnable tasks per core marks the machine busy."""

_RUNTIME_PACKAGES = ("lsnet-deploy", "torch", "onnxruntime", "ai-edge-litert", "coremltools",
                     "numpy")


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo`` on Linux, ``sysctl machdep.cpu.brand_string`` on
    macOS, else what :mod:`platform` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":  # platform.processor() only says "arm" / "i386" there
        try:
            brand = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"],
                                   check=False, capture_output=True, text=True,
                                   timeout=5).stdout.strip()
            if brand:
                return brand
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages (``None`` where the OS has none, e.g. Windows)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def collect_environment(threads: list[int] | None = None, **settings: Any) -> dict[str, Any]:
    """The environment record, taken before a run (``load_avg_before``); call
    :func:`mark_busy` after the run to add ``load_avg_after`` and ``busy``.

    ``settings`` (warm-up, runs, throughput mode...) are stored under ``settings``.
    """
    import torch

    return {
        "timestamp": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "hostname": platform.node(),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "versions": tool_versions(_RUNTIME_PACKAGES),
        "threads": threads,
        "torch_default_threads": torch.get_num_threads(),
        "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                  "LSNET_DEPLOY_THREADS")
                       if k in os.environ},
        "load_avg_before": load_average(),
        "settings": settings,
        "command": " ".join(["lsnet-deploy", *sys.argv[1:]]) if sys.argv else None,
    }


def mark_busy(env: dict[str, Any], judge: bool = True) -> dict[str, Any]:
    """Add ``load_avg_after`` and ``busy`` (the 1-minute load before the run was above
    :data:`BUSY_LOAD_PER_CORE` per core) to ``env``, in place. ``judge=False`` (phone runs,
    imports: this machine's load says nothing about the numbers) records the loads only.

    The benchmark itself is load: a 2-thread run raises the 1-minute average by about 2, so
    ``busy`` compares ``load_avg_before`` only, and ``load_avg_after`` is for the reader.
    """
    env["load_avg_after"] = load_average()
    before = env.get("load_avg_before")
    cores = env.get("cores") or 1
    env["busy"] = bool(judge and before and before[0] > BUSY_LOAD_PER_CORE * cores)
    return env
