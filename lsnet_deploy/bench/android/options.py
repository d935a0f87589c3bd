"""How an Android run is asked for: :class:`AndroidOptions`, the constants of the flow, and
the hex CPU-mask parsing ``--taskset`` is checked with."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ...errors import BenchmarkError

__all__ = [
    "BENCHMARK_MODEL_ENV",
    "BENCHMARK_MODEL_URL",
    "DEVICE_DIR",
    "MEDIAN_NOTE",
    "THERMAL_STATUS_LABELS",
    "AndroidOptions",
    "mask_value",
]

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
        if self.taskset is not None and mask_value(self.taskset) is None:
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


def mask_value(mask: str) -> int | None:
    """``"f0"`` / ``"0xF0"`` -> ``240``; ``None`` when ``mask`` is not a non-zero hex mask."""
    text = mask.strip().lower()
    text = text.removeprefix("0x")
    if not re.fullmatch(r"[0-9a-f]+", text):
        return None
    value = int(text, 16)
    return value or None
