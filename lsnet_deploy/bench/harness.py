"""The host benchmark loop: every target x thread count, warm-up, timed runs, statistics.

Latency mode (the default) times single calls: a warm-up of ``warmup`` calls (and at least
``warmup_s`` seconds), then ``runs`` timed calls (and at least ``min_time_s`` seconds).
Throughput mode follows the LSNet paper's protocol (which measured an RTX 3090 at batch 2048):
time-based warm-up (5 s) and measurement (>= 10 s) at a large batch, images/s = batch / mean
iteration time.

Ctrl-C stops the loop: what was measured is kept (a configuration interrupted after at least
:data:`MIN_PARTIAL_RUNS` timed runs is kept with a note) and the report says ``interrupted``.
A target that fails to load or run is recorded in ``failures`` and the loop goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import BenchmarkError, LsnetDeployError, first_line
from .environment import collect_environment, mark_busy
from .runtimes import Session, Target, open_session
from .schema import BenchReport, BenchResult
from .timing import LatencyStats, summarize

__all__ = ["MIN_PARTIAL_RUNS", "BenchSettings", "ProgressSink", "measure", "run_benchmarks",
           "time_callable"]

log = logging.getLogger(__name__)

MIN_PARTIAL_RUNS = 5
"""Timed runs an interrupted configuration needs to be kept."""


@dataclass(frozen=True)
class BenchSettings:
    """How to time.

    Attributes:
        threads: thread counts; every target runs once per count (CoreML: once, ``None``).
        batch: images per call; ``None``: the model's own batch (1 for LSNet artifacts;
            64 in throughput mode).
        warmup: untimed calls before timing; warmup_s: and at least this many seconds.
        runs: timed calls; min_time_s: and at least this many seconds.
        throughput: the paper protocol (defaults become 5 s warm-up, >= 10 s timed, batch 64).
    """

    threads: tuple[int, ...] = (1,)
    batch: int | None = None
    warmup: int = 10
    warmup_s: float = 0.0
    runs: int = 50
    min_time_s: float = 0.0
    throughput: bool = False

    @classmethod
    def paper_throughput(cls, threads: tuple[int, ...], batch: int | None = None
                         ) -> BenchSettings:
        """The paper's protocol: time-based warm-up (5 s) and measurement (>= 10 s), large
        batch (64 unless given); adjust with :func:`dataclasses.replace`."""
        return cls(threads=threads, batch=batch or 64, warmup=1, warmup_s=5.0, runs=3,
                   min_time_s=10.0, throughput=True)

    def __post_init__(self) -> None:
        if self.runs < 1:
            raise BenchmarkError(f"--runs must be >= 1, got {self.runs}")
        if self.warmup < 0 or self.warmup_s < 0 or self.min_time_s < 0:
            raise BenchmarkError("warm-up and minimum time must be >= 0")
        if not self.threads or any(t < 1 for t in self.threads):
            raise BenchmarkError(f"--threads must be positive integers, got {self.threads}")
        if self.batch is not None and self.batch < 1:
            raise BenchmarkError(f"--batch must be >= 1, got {self.batch}")


class ProgressSink(Protocol):
    """Where the loop reports progress (the CLI's rich progress bar)."""

    def plan(self, configurations: int) -> None:
        """How many configurations the run times (before the first ``begin``)."""

    def begin(self, label: str, total: int | None) -> None:
        """A configuration starts; ``total`` calls (``None`` when time-based)."""

    def step(self) -> None:
        """One call finished."""

    def end(self) -> None:
        """The configuration is done (or failed)."""


@dataclass
class _Timing:
    times_ms: list[float] = field(default_factory=list)
    first_ms: float | None = None
    warmup_done: int = 0
    interrupted: bool = False


def measure(run: Callable[[], object], settings: BenchSettings,
            step: Callable[[], None] = lambda: None) -> _Timing:
    """Warm up, then time ``run``; on Ctrl-C return what was timed, marked interrupted.
    ``first_ms`` is the first warm-up call (callers that made a cold call before override it);
    any other exception propagates."""
    timing = _Timing()
    try:
        t_start = time.perf_counter()
        while (timing.warmup_done < settings.warmup
               or time.perf_counter() - t_start < settings.warmup_s):
            t0 = time.perf_counter()
            run()
            if timing.first_ms is None:
                timing.first_ms = (time.perf_counter() - t0) * 1e3
            timing.warmup_done += 1
            step()
        t_start = time.perf_counter()
        while (len(timing.times_ms) < settings.runs
               or time.perf_counter() - t_start < settings.min_time_s):
            t0 = time.perf_counter()
            run()
            timing.times_ms.append((time.perf_counter() - t0) * 1e3)
            step()
    except KeyboardInterrupt:
        timing.interrupted = True
    return timing


def time_callable(fn: Callable[[], object], runs: int = 50, warmup: int = 10) -> LatencyStats:
    """Statistics of ``warmup`` untimed then ``runs`` timed calls of ``fn`` (the report scripts'
    shorthand for :func:`measure`); Ctrl-C propagates."""
    timing = measure(fn, BenchSettings(warmup=warmup, runs=runs))
    if timing.interrupted:
        raise KeyboardInterrupt
    return summarize(timing.times_ms, timing.warmup_done)


def _result(target: Target, session: Session, threads: int | None, timing: _Timing,
            settings: BenchSettings) -> BenchResult:
    stats = summarize(timing.times_ms, timing.warmup_done)
    notes = [target.notes] if target.notes else []
    if timing.interrupted:
        notes.append(f"interrupted after {stats.runs} timed runs")
    throughput = None
    if settings.throughput:
        throughput = session.batch / (stats.mean_ms / 1e3)
    return BenchResult(
        model=target.model,
        runtime=target.runtime,
        precision=target.precision,
        threads=threads,
        batch=session.batch,
        median_ms=stats.median_ms,
        p90_ms=stats.p90_ms,
        trimmed_mean_ms=stats.trimmed_mean_ms,
        min_ms=stats.min_ms,
        mean_ms=stats.mean_ms,
        std_ms=stats.std_ms,
        runs=stats.runs,
        warmup=stats.warmup,
        input_shape=session.input_shape,
        platform="macos" if target.runtime == "coreml" else "host",
        accelerator=target.accelerator,
        throughput_img_s=throughput,
        load_ms=session.load_ms,
        first_ms=timing.first_ms,
        artifact=str(target.artifact) if target.artifact else None,
        notes="; ".join(notes) or None,
    )


def settings_environment(settings: BenchSettings) -> dict[str, Any]:
    """The environment record (load average now) with ``settings`` stored in it."""
    return collect_environment(
        list(settings.threads), warmup=settings.warmup, warmup_s=settings.warmup_s,
        runs=settings.runs, min_time_s=settings.min_time_s, batch=settings.batch,
        throughput=settings.throughput)


def run_benchmarks(targets: list[Target], settings: BenchSettings,
                   progress: ProgressSink | None = None,
                   environment: dict[str, Any] | None = None) -> BenchReport:
    """Time every target at every thread count (CoreML: once). Never raises for a target that
    fails (it goes to ``failures``); Ctrl-C returns the partial report, ``interrupted``."""
    env = environment if environment is not None else settings_environment(settings)
    report = BenchReport([], env)
    if progress:
        progress.plan(sum(1 if t.runtime == "coreml" else len(settings.threads)
                          for t in targets))
    try:
        for target in targets:
            thread_counts: tuple[int | None, ...] = (
                (None,) if target.runtime == "coreml" else settings.threads)
            for threads in thread_counts:
                label = target.label + (f" / {threads} thread{'s' * (threads != 1)}"
                                        if threads else "")
                total = None if settings.warmup_s or settings.min_time_s else (
                    settings.warmup + settings.runs)
                if progress:
                    progress.begin(label, total)
                try:
                    session = open_session(target, threads, settings.batch)
                    try:
                        timing = measure(session.run, settings,
                                         progress.step if progress else lambda: None)
                    finally:
                        session.close()
                except Exception as e:  # one target failing never loses the others
                    message = (str(e) if isinstance(e, LsnetDeployError)
                               else f"{type(e).__name__}: {first_line(e)}")
                    log.warning("%s: failed: %s", label, message)
                    report.failures.append({"model": target.model, "runtime": target.runtime,
                                            "precision": target.precision, "threads": threads,
                                            "artifact": str(target.artifact or ""),
                                            "error": message})
                    continue
                finally:
                    if progress:
                        progress.end()
                if session.first_ms is not None:
                    timing.first_ms = session.first_ms
                if len(timing.times_ms) >= (MIN_PARTIAL_RUNS if timing.interrupted else 1):
                    report.results.append(_result(target, session, threads, timing, settings))
                if timing.interrupted:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        report.interrupted = True
        log.warning("interrupted: keeping the %d result(s) measured so far", len(report.results))
    mark_busy(env)
    return report
