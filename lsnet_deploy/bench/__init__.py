"""Benchmarks: the latency harness (host runtimes, Android over adb, iPhone harness and import),
the report folder and the paper-claims report. (The scripts that regenerate the docs tables
live outside the package, in ``benchmarks/``.)

Public names: :func:`benchmark`, :class:`BenchSettings`, :class:`BenchReport`,
:class:`BenchResult`, :func:`load_report`, :func:`write_report_folder`.
"""

from __future__ import annotations

from .harness import BenchSettings
from .host import benchmark
from .output import write_report_folder
from .schema import BenchReport, BenchResult, load_report

__all__ = ["BenchReport", "BenchResult", "BenchSettings", "benchmark", "load_report",
           "write_report_folder"]
