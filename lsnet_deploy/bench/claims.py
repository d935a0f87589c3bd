"""The paper-claims report: what the LSNet paper states beside what lsnet-deploy measured.

The paper (LSNet, CVPR 2025) gives parameters, FLOPs (GMACs), ImageNet-1K top-1 and GPU
throughput (RTX 3090, batch 2048); it gives no CPU or mobile latency. This module builds two
tables from the zoo manifest (the paper's numbers), the architecture (our parameter and MAC
counts) and any number of benchmark result files (our latencies, host or phone):

1. claims: per LSNet size, paper params / GMACs / GPU throughput / top-1 next to ours;
2. measurements: every measured configuration (LSNet or any other model, e.g. a MobileNetV3
   ``.tflite``), grouped by device, runtime and precision so models on the same runtime sit
   next to each other.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import BenchmarkError
from ..paths import default_export_dir
from .output import JSON
from .schema import BenchResult, load_report, relabel_host_results

__all__ = ["PAPER_NOTE", "SIZES", "Claim", "build_claims", "claims_markdown", "collect_results",
           "find_result_files"]

SIZES = ("lsnet_t", "lsnet_s", "lsnet_b")

PAPER_NOTE = (
    "The LSNet paper (CVPR 2025) reports parameters, FLOPs (GMACs), ImageNet-1K top-1 and GPU "
    "throughput (RTX 3090, batch 2048, fused model) only: it has no CPU or mobile latency. No "
    "latency or throughput below comes from the paper. The 'source' column says where each "
    "measurement comes from: 'lsnet-deploy' (our host harness), 'benchmark_model' (TFLite's tool "
    "on a phone, driven by lsnet-deploy), 'ios-harness' (the generated iPhone harness) or "
    "'manual' (a number entered by hand with 'bench import', e.g. from Xcode)."
)


@dataclass(frozen=True)
class Claim:
    """One LSNet size: the paper's numbers and ours (``None`` = not stated / not measured)."""

    variant: str
    paper_params_m: float | None
    paper_gmacs: float | None
    paper_gpu_img_s: float | None
    paper_top1: float | None
    paper_top1_distill: float | None
    params_m: float
    gmacs: float
    fastest_host_fp32: BenchResult | None
    fastest_host: BenchResult | None
    fastest_phone: BenchResult | None


def find_result_files(paths: list[Path] | None = None) -> list[Path]:
    """Result files: each path is a ``results.json``-style file or a folder searched
    recursively for ``results.json``, skipping hidden entries (names starting with ``"."``:
    the temporary folder of a report being written, an export's staging folders); default:
    everything under ``export/bench/``."""
    if not paths:
        root = default_export_dir() / "bench"
        paths = [root] if root.is_dir() else []
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files += sorted(f for f in p.rglob(JSON) if f.is_file() and not any(
                part.startswith(".") for part in f.relative_to(p).parts))
        elif p.is_file():
            files.append(p)
        else:
            raise BenchmarkError(f"{p}: no such result file or folder")
    return files


def collect_results(files: list[Path]) -> list[BenchResult]:
    """All results of ``files``; when several measure the same configuration
    (:attr:`BenchResult.key`), the one from the most recent file (environment timestamp) wins.
    Host results are labelled with the file's CPU (``host: <CPU>, <N> cores``) so results of
    different machines stay apart."""
    dated: list[tuple[str, int, BenchResult]] = []
    for n, f in enumerate(files):
        report = relabel_host_results(load_report(f))
        stamp = str(report.environment.get("timestamp", ""))
        busy = bool(report.environment.get("busy"))
        dated += [(stamp, n, with_note(r, BUSY_NOTE) if busy else r) for r in report.results]
    latest: dict[tuple[Any, ...], tuple[str, int, BenchResult]] = {}
    for item in sorted(dated, key=lambda t: (t[0], t[1])):
        latest[item[2].key] = item
    return [r for _, _, r in sorted(latest.values(), key=lambda t: (t[0], t[1]))]


BUSY_NOTE = "machine was BUSY"
"""The caveat of a result measured on a loaded machine (its file's ``environment.busy``)."""
_CAVEATS = ("RANDOM weights", BUSY_NOTE)


def with_note(r: BenchResult, note: str) -> BenchResult:
    """``r`` with ``note`` added to its notes (once)."""
    if r.notes and note in r.notes:
        return r
    return replace(r, notes=f"{r.notes}; {note}" if r.notes else note)


def caveats(r: BenchResult) -> str:
    """The caveats among ``r``'s notes that a reader of a latency must see (synthetic weights,
    a busy machine), ``""`` if none."""
    return "; ".join(c for c in _CAVEATS if r.notes and c in r.notes)


def _size_of(model: str) -> str | None:
    base = model.removesuffix("_distill")
    return base if base in SIZES else None


def _fastest(results: list[BenchResult], variant: str, phone: bool,
             precision: str | None = None) -> BenchResult | None:
    """The lowest batch-1 median of ``variant`` (host or phone; one precision if given)."""
    mine = [r for r in results if _size_of(r.model) == variant and r.median_ms
            and (r.platform in ("android", "ios")) == phone and r.batch == 1
            and (precision is None or r.precision == precision)]
    return min(mine, key=lambda r: r.median_ms or 0.0) if mine else None


def build_claims(results: list[BenchResult]) -> list[Claim]:
    """The claims rows for LSNet-T/S/B (our params and MACs counted on the unfused model at
    224, MACs in the paper's convention)."""
    from ..flops import count_macs, count_params
    from ..lsnet import build_lsnet
    from ..zoo import zoo

    entries = zoo()
    claims = []
    for variant in SIZES:
        paper = entries[variant].paper if variant in entries else {}
        distill = entries.get(f"{variant}_distill")
        model = build_lsnet(variant)
        claims.append(Claim(
            variant=variant,
            paper_params_m=paper.get("params_m"),
            paper_gmacs=paper.get("gmacs"),
            paper_gpu_img_s=paper.get("gpu_throughput_img_s"),
            paper_top1=paper.get("top1"),
            paper_top1_distill=distill.paper.get("top1") if distill else None,
            params_m=count_params(model) / 1e6,
            gmacs=count_macs(model).paper_total / 1e9,
            fastest_host_fp32=_fastest(results, variant, phone=False, precision="fp32"),
            fastest_host=_fastest(results, variant, phone=False),
            fastest_phone=_fastest(results, variant, phone=True),
        ))
    return claims


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _config(r: BenchResult) -> str:
    parts = [r.runtime, r.precision]
    if r.accelerator:
        parts.append(r.accelerator)
    if r.threads is not None:
        parts.append(f"{r.threads} thread{'s' * (r.threads != 1)}")
    return ", ".join(parts)


def _fastest_cell(r: BenchResult | None) -> str:
    if r is None:
        return "not measured"
    where = f" on {r.device}" if r.device != "host" else ""
    warn = f" [{caveats(r)}]" if caveats(r) else ""
    return f"{r.median_ms:.2f} ms ({_config(r)}{where}){warn}"


def claims_markdown(claims: list[Claim], results: list[BenchResult],
                    sources: list[Path] | None = None) -> str:
    """The report page: the note, the claims table, the measurements table."""
    lines = ["# LSNet: the paper's claims and lsnet-deploy's measurements", "", PAPER_NOTE, ""]
    lines += [
        "| model | params (M) paper / ours | GMACs paper / ours | paper GPU throughput "
        "(img/s, RTX 3090, batch 2048) | paper top-1 (distilled) | our fastest host fp32 "
        "latency (batch 1) | our fastest host latency, any precision | our fastest phone "
        "latency |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in claims:
        top1 = _num(c.paper_top1, ".1f") + (f" ({c.paper_top1_distill:.1f})"
                                             if c.paper_top1_distill is not None else "")
        lines.append(
            f"| {c.variant} | {_num(c.paper_params_m, '.1f')} / {c.params_m:.1f} | "
            f"{_num(c.paper_gmacs, '.1f')} / {c.gmacs:.2f} | {_num(c.paper_gpu_img_s, ',.0f')} | "
            f"{top1} | {_fastest_cell(c.fastest_host_fp32)} | {_fastest_cell(c.fastest_host)} | "
            f"{_fastest_cell(c.fastest_phone)} |")
    lines += ["", "Our params and GMACs are counted by lsnet-deploy on the unfused model at "
              "224x224 (MACs in the paper's convention, BatchNorm included); top-1 is the "
              "paper's (lsnet-deploy does not evaluate ImageNet). The paper's GPU throughput was "
              "not re-measured (no GPU here).", ""]
    lines += ["## Measurements (lsnet-deploy)", ""]
    if not results:
        lines += ["No benchmark results found: run `lsnet-deploy bench --model lsnet_t` (host), "
                  "`lsnet-deploy bench android ...` or `lsnet-deploy bench import ...` first.", ""]
    else:
        ordered = sorted(results, key=lambda r: (
            r.device, r.platform, r.runtime, r.precision, str(r.accelerator),
            r.threads or 0, r.batch, _size_of(r.model) is None, r.model))
        lines += ["| device | runtime | precision | threads / units | batch | model | median ms "
                  "| p90 ms | img/s | source | notes |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in ordered:
            unit = r.accelerator or ("-" if r.threads is None else str(r.threads))
            lines.append(
                f"| {r.device} | {r.runtime} | {r.precision} | {unit} | {r.batch} | {r.model} | "
                f"{_num(r.median_ms, '.2f')} | {_num(r.p90_ms, '.2f')} | "
                f"{_num(r.throughput_img_s, '.1f')} | {r.source} | "
                f"{(r.notes or '-').replace('|', '/')} |")
    from .versus import compare_with_peers, comparisons_markdown

    versus = comparisons_markdown(compare_with_peers(results))
    if versus:
        lines += ["", "## LSNet vs peers (same device, runtime, precision, threads)", "",
                  *versus]
    if sources:
        lines += ["", "Result files: " + ", ".join(f"`{s}`" for s in sources)]
    return "\n".join(lines) + "\n"
