"""Reports of results measured elsewhere (``lsnet-deploy bench import``): a new report of
imported results, or the results added to an existing report folder."""

from __future__ import annotations

from pathlib import Path

from ..errors import BenchmarkError
from .environment import collect_environment, mark_busy
from .output import JSON
from .schema import BenchReport, BenchResult, load_report

__all__ = ["IMPORT_NOTE", "import_report", "imported_report", "merge_into"]

IMPORT_NOTE = ("imported results: the machine above imported them; each result's "
               "device / device_info says where it was measured")
"""The ``environment["note"]`` of a report of imported results."""


def imported_report(results: list[BenchResult], sources: list[Path] | None = None) -> BenchReport:
    """A new report of ``results`` read from ``sources``: its environment is this machine's
    (never judged busy: its load says nothing about numbers measured elsewhere)."""
    env = collect_environment(None, imported=[str(f) for f in sources or []])
    env["note"] = IMPORT_NOTE
    return BenchReport(list(results), mark_busy(env, judge=False))


def merge_into(folder: Path, results: list[BenchResult]) -> BenchReport:
    """The report of ``folder`` with ``results`` added; a result with the same configuration
    key (:attr:`~lsnet_deploy.bench.schema.BenchResult.key`) replaces the folder's. The
    folder's environment and failures are kept as they are.

    Raises:
        BenchmarkError: ``folder`` holds no report.
    """
    folder = Path(folder)
    if not (folder / JSON).is_file():
        raise BenchmarkError(f"{folder}: not a report folder (no {JSON})")
    report = load_report(folder / JSON)
    keys = {r.key for r in results}
    report.results = [r for r in report.results if r.key not in keys] + list(results)
    return report


def import_report(results: list[BenchResult], sources: list[Path] | None = None,
                  into: Path | None = None) -> BenchReport:
    """``results`` merged into the report folder ``into`` (:func:`merge_into`), or a new
    report of them (:func:`imported_report`)."""
    if into is not None:
        return merge_into(into, results)
    return imported_report(results, sources)
