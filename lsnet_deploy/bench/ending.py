"""The end of a benchmark run: its report folder written, and how the run ended.

A run that measured something always leaves its report, even when it was cut short: by
Ctrl-C (``interrupted``) or by an error after some results (``aborted_by``, e.g. an Android
phone failing part way). :func:`save_report` writes the folder first, then says which
failures to list and which error ends the command, so the caller only prints and raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BenchmarkError, LsnetDeployError
from .output import MARKDOWN, write_report_folder
from .schema import BenchReport

__all__ = ["RunEnding", "run_ending", "save_report"]


@dataclass(frozen=True)
class RunEnding:
    """How a run ended, once its report is in ``folder``.

    Attributes:
        folder: the report folder.
        failures: the failed configurations to list; the one whose error ended the run is
            left out (that error is ``error``, reported once).
        error: what ends the command: the error that cut the run short (``aborted_by``), else
            a :class:`BenchmarkError` summing up the failures; ``None`` for a clean run, an
            interrupted one (see ``interrupted``) or an import.
        interrupted: Ctrl-C ended the run (the command exits 130).
        cut_short: ``"failure"`` or ``"interruption"`` for a run ended early after
            ``kept`` results; ``None`` otherwise.
        kept: the number of results in the report.
    """

    folder: Path
    failures: tuple[dict[str, Any], ...] = ()
    error: LsnetDeployError | None = None
    interrupted: bool = False
    cut_short: str | None = None
    kept: int = 0


def run_ending(report: BenchReport, folder: Path, imported: bool = False) -> RunEnding:
    """How ``report``, written to ``folder``, ends its command (pure). ``imported``: the
    report of ``bench import``, whose failures (if any, from an earlier run of the folder)
    are not this command's."""
    kept = len(report.results)
    if imported:
        return RunEnding(Path(folder), kept=kept)
    aborted = report.aborted_by
    failures = tuple(f for f in report.failures
                     if aborted is None or str(f.get("error")) != str(aborted))
    error: LsnetDeployError | None = aborted
    if error is None and report.failures and not report.interrupted:
        error = BenchmarkError(f"{len(report.failures)} configuration(s) failed (see above and "
                               f"{Path(folder) / MARKDOWN})")
    cut_short = "failure" if aborted is not None else (
        "interruption" if report.interrupted else None)
    return RunEnding(Path(folder), failures, error, report.interrupted, cut_short, kept)


def save_report(report: BenchReport, output_dir: Path | None = None,
                imported: bool = False) -> RunEnding:
    """Write the report folder (default ``export/bench/<timestamp>/``; ``imported``: the
    folder may hold a report already, which is updated) and return how the run ended."""
    folder = write_report_folder(report, output_dir, update=imported)
    return run_ending(report, folder, imported)
