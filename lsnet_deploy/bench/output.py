"""A benchmark report folder: ``results.json``, ``results.md`` and ``latency.png``.

The folder (default ``export/bench/<UTC timestamp>/``) is assembled in a hidden temporary
sibling and renamed into place, so a crash or Ctrl-C while writing never leaves half a report.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import MissingDependencyError, OutputError
from ..paths import default_export_dir
from .schema import BenchReport, BenchResult

__all__ = [
    "CHART",
    "JSON",
    "MARKDOWN",
    "check_report_dir",
    "default_report_dir",
    "markdown_report",
    "result_rows",
    "write_chart",
    "write_report_folder",
]

log = logging.getLogger(__name__)

JSON, MARKDOWN, CHART = "results.json", "results.md", "latency.png"

COLUMNS = ("model", "runtime", "precision", "accelerator", "threads", "batch", "median ms",
           "p90 ms", "trimmed mean ms", "min ms", "std ms", "runs", "img/s", "load ms",
           "device", "notes")


def default_report_dir(now: _dt.datetime | None = None) -> Path:
    """``export/bench/<YYYYmmdd-HHMMSS>`` (UTC); a suffix is added if it exists."""
    stamp = (now or _dt.datetime.now(_dt.timezone.utc)).strftime("%Y%m%d-%H%M%S")
    root = default_export_dir() / "bench"
    folder = root / stamp
    n = 1
    while folder.exists():
        n += 1
        folder = root / f"{stamp}-{n}"
    return folder


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def result_rows(results: list[BenchResult]) -> list[list[str]]:
    """One row of :data:`COLUMNS` per result, in the given order."""
    rows = []
    for r in results:
        rows.append([
            r.model, r.runtime, r.precision, r.accelerator or "-",
            "-" if r.threads is None else str(r.threads), str(r.batch),
            _fmt(r.median_ms), _fmt(r.p90_ms), _fmt(r.trimmed_mean_ms), _fmt(r.min_ms),
            _fmt(r.std_ms), "-" if r.runs is None else str(r.runs),
            _fmt(r.throughput_img_s, 1), _fmt(r.load_ms, 1), r.device, r.notes or "",
        ])
    return rows


def _markdown_table(header: tuple[str, ...] | list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows]
    return lines


def markdown_report(report: BenchReport) -> str:
    """The Markdown page of a report: machine, method, the table, failures, notes."""
    env = report.environment
    settings = env.get("settings") or {}
    lines = ["# lsnet-deploy benchmark", ""]
    if env:
        versions = ", ".join(f"{k} {v}" for k, v in (env.get("versions") or {}).items())
        lines += [
            f"- Machine: {env.get('cpu', '?')}, {env.get('cores', '?')} cores, "
            f"{env.get('memory_gib', '?')} GiB, {env.get('os', '?')} ({env.get('machine', '?')})",
            f"- Versions: {versions or '?'}",
            f"- Load average (1/5/15 min) before: {env.get('load_avg_before')}, after: "
            f"{env.get('load_avg_after')}" + (" (machine was BUSY: numbers are suspect)"
                                               if env.get("busy") else ""),
            f"- Taken: {env.get('timestamp', '?')}; command: `{env.get('command', '?')}`",
        ]
        if "min_time_s" in settings:  # a host run (not an import or a phone run)
            mode = "throughput (paper protocol)" if settings.get("throughput") else "latency"
            lines.append(
                f"- Method: {mode}; warm-up {settings.get('warmup')} calls / "
                f"{settings.get('warmup_s')} s, then >= {settings.get('runs')} timed calls / "
                f"{settings.get('min_time_s')} s; times are per call of one batch; trimmed mean "
                "drops the lowest and highest 20%.")
        lines.append("")
    if report.interrupted:
        lines += ["**Interrupted (Ctrl-C): the table holds what was measured before.**", ""]
    lines += _markdown_table(COLUMNS, result_rows(report.results))
    from .versus import compare_with_peers, comparisons_markdown

    versus = comparisons_markdown(compare_with_peers(report.results))
    if versus:
        lines += ["", "## LSNet vs peers", "", *versus]
    if report.failures:
        lines += ["", "Failed (not measured):"]
        lines += [f"- {f.get('model')} / {f.get('runtime')} / {f.get('precision')}"
                  f" (threads {f.get('threads')}): {f.get('error')}" for f in report.failures]
    return "\n".join(lines) + "\n"


def _bar_label(r: BenchResult) -> str:
    parts = [r.model, r.runtime, r.precision]
    if r.accelerator:
        parts.append(r.accelerator)
    if r.threads is not None:
        parts.append(f"{r.threads}t")
    if r.batch != 1:
        parts.append(f"b{r.batch}")
    if r.device != "host":
        parts.append(r.device)
    return " · ".join(parts)


def write_chart(results: list[BenchResult], path: Path, title: str = "") -> bool:
    """Horizontal bar chart: median latency per configuration (a tick marks p90), or images/s
    when every result has a throughput. Returns ``False`` (and writes nothing) when there is
    nothing to plot. Needs matplotlib (the ``bench`` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise MissingDependencyError(
            "the chart needs matplotlib: pip install 'lsnet-deploy[bench]'") from e
    throughput = bool(results) and all(r.throughput_img_s for r in results)
    rows = [r for r in results if (r.throughput_img_s if throughput else r.median_ms)]
    if not rows:
        return False
    values = [float(r.throughput_img_s if throughput else r.median_ms) for r in rows]  # type: ignore[arg-type]
    labels = [_bar_label(r) for r in rows]
    runtimes = sorted({r.runtime for r in rows})
    palette = plt.get_cmap("tab10")
    colours = [palette(runtimes.index(r.runtime) % 10) for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.38 * len(rows) + 1.6))
    y = list(range(len(rows)))[::-1]
    ax.barh(y, values, color=colours)
    if not throughput:
        p90 = [(yy, r.p90_ms) for yy, r in zip(y, rows, strict=True) if r.p90_ms]
        if p90:
            ax.scatter([v for _, v in p90], [yy for yy, _ in p90], marker="|", s=120,
                       color="black", zorder=3, label="p90")
            ax.legend(loc="lower right", fontsize=8)
    for yy, v, r in zip(y, values, rows, strict=True):
        end = v if throughput else max(v, r.p90_ms or 0.0)
        ax.text(end, yy, f"  {v:.1f}" if throughput else f"  {v:.2f}", va="center", fontsize=8)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel("images / s (higher is better)" if throughput
                  else "median latency per call, ms (lower is better)")
    ax.set_title(title or "lsnet-deploy benchmark", fontsize=10)
    ax.margins(x=0.15)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def check_report_dir(folder: Path, update: bool = False) -> None:
    """Refuse a folder that already holds a report (unless ``update``) or cannot be written
    (the nearest existing ancestor must be a writable folder); creates nothing."""
    if (folder / JSON).exists() and not update:
        raise OutputError(f"{folder} already holds a benchmark report; choose another "
                          "--output-dir (or add results with 'bench import --into')")
    existing = next((p for p in [folder, *folder.parents] if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK):
        raise OutputError(f"cannot write the report under {folder}: {existing} is not a "
                          "writable folder")


def write_report_folder(report: BenchReport, folder: Path | None = None,
                        chart: bool = True, update: bool = False) -> Path:
    """Write ``results.json``, ``results.md`` and (``chart``) ``latency.png`` into ``folder``
    (default :func:`default_report_dir`), atomically. A folder that already holds a report is
    refused (:class:`OutputError`) unless ``update`` (``bench import --into``), which replaces
    its files one by one, each atomically. Without matplotlib the chart is skipped with a
    warning: the numbers are never lost for want of a picture."""
    folder = Path(folder) if folder is not None else default_report_dir()
    check_report_dir(folder, update)
    env = report.environment
    title = f"lsnet-deploy benchmark: {env.get('cpu', '')}".strip(": ")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    except OSError as e:
        raise OutputError(f"cannot write the report under {folder.parent}: {e.strerror}") from e
    try:
        (tmp / JSON).write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
        (tmp / MARKDOWN).write_text(markdown_report(report))
        if chart:
            try:
                write_chart(report.results, tmp / CHART, title)
            except MissingDependencyError as e:
                log.warning("no %s: %s", CHART, e)
        if folder.exists():
            for item in tmp.iterdir():
                os.replace(item, folder / item.name)
            shutil.rmtree(tmp)
        else:
            os.chmod(tmp, 0o755)
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
