"""Report: interleaved A/B latency of artifact files, for comparing two formulations (or two
exports) of one model on a machine whose speed drifts.

Usage (from the repository root)::

    .venv/bin/python benchmarks/ab_latency.py BEFORE.onnx AFTER.onnx [MORE ...]
        [--threads 1 2] [--rounds 12] [--calls 25] [--warmup 5] [--out FILE.md]

Timing the files one after the other (``lsnet-deploy bench A B``) compares them at different
moments of a shared VM, where a noisy neighbour moves a median by 10-20 %. This script
interleaves instead: in each round every file is loaded in its runtime (the same loader as
``lsnet-deploy bench``: ONNX Runtime CPU, LiteRT with XNNPACK, ...), warmed up, timed for
``--calls`` calls and released, the order rotating from round to round. Per file: the median
of all its timed calls. Per file against the **first file of the same runtime and precision**
(its baseline): the median over rounds of the per-round ratio of medians (the drift is shared by
the two files of one round), with the spread of those ratios (min-max). A ratio below 1 is
faster than the baseline.

Writes a Markdown table to stdout (or ``--out``); rounds are shown on stderr.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, markdown_table, measuring, write_markdown  # noqa: E402

from lsnet_deploy.bench.artifacts import describe_artifact  # noqa: E402
from lsnet_deploy.exporters import exporter_for_path  # noqa: E402

COLUMNS = ["file", "runtime", "precision", "threads", "median ms", "vs baseline", "ratio range", "calls"]


@dataclass
class _Series:
    path: Path
    runtime: str
    precision: str
    threads: int
    round_medians: list[float] = field(default_factory=list)
    calls: list[float] = field(default_factory=list)


def _time_round(series: _Series, calls: int, warmup: int) -> None:
    """Load ``series.path``, warm up, time ``calls`` calls, release it."""
    exp = exporter_for_path(series.path)
    session = exp.bench_session(series.path, series.threads, None)
    try:
        for _ in range(warmup):
            session.run()
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            session.run()
            times.append((time.perf_counter() - t0) * 1e3)
    finally:
        session.close()
    series.calls += times
    series.round_medians.append(statistics.median(times))


def measure(paths: list[Path], threads: list[int], rounds: int, calls: int,
            warmup: int) -> list[_Series]:
    """Every file at every thread count, ``rounds`` interleaved rounds each."""
    out: list[_Series] = []
    for t in threads:
        group = [_Series(p, exporter_for_path(p).runtime, describe_artifact(p).precision, t)
                 for p in paths]
        for r in range(rounds):
            k = r % len(group)
            for series in group[k:] + group[:k]:
                _time_round(series, calls, warmup)
            print(f"threads {t}, round {r + 1}/{rounds}: " + ", ".join(
                f"{s.path.name} {s.round_medians[-1]:.2f}" for s in group),
                file=sys.stderr, flush=True)
        out += group
    return out


def rows(series: list[_Series]) -> list[list[str]]:
    """The table cells: per file its median, and its ratio to its runtime's baseline."""
    cells = []
    baselines: dict[tuple[str, str, int], _Series] = {}
    for s in series:
        base = baselines.setdefault((s.runtime, s.precision, s.threads), s)
        if base is s:
            ratio, spread = "baseline", "-"
        else:
            ratios = [a / b for a, b in zip(s.round_medians, base.round_medians, strict=True)]
            ratio = f"{statistics.median(ratios):.3f}"
            spread = f"{min(ratios):.3f}-{max(ratios):.3f}"
        cells.append([str(s.path), s.runtime, s.precision, str(s.threads),
                      f"{statistics.median(s.calls):.2f}", ratio, spread, str(len(s.calls))])
    return cells


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifacts", nargs="+", type=Path,
                    help="artifact files; the first of each runtime and precision is their "
                    "baseline")
    ap.add_argument("--threads", nargs="+", type=int, default=[1],
                    help="thread counts (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=12, help="rounds (default: %(default)s)")
    ap.add_argument("--calls", type=int, default=25,
                    help="timed calls per file and round (default: %(default)s)")
    ap.add_argument("--warmup", type=int, default=5,
                    help="untimed calls after each load (default: %(default)s)")
    ap.add_argument("--out", type=Path, help="write the Markdown to this file instead of stdout")
    args = ap.parse_args(argv)
    missing = [str(p) for p in args.artifacts if not p.exists()]
    if missing:
        ap.error(f"not found: {', '.join(missing)}")
    if min(args.threads) < 1 or args.rounds < 1 or args.calls < 1 or args.warmup < 0:
        ap.error("--threads, --rounds and --calls must be >= 1, --warmup >= 0")
    with measuring():
        series = measure(args.artifacts, args.threads, args.rounds, args.calls, args.warmup)
    caption = (f"Machine: {machine()}; {args.rounds} interleaved rounds of {args.calls} timed "
               f"calls (after {args.warmup} warm-up calls) per file; batch 1.")
    write_markdown(markdown_table(caption, COLUMNS, rows(series)), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
