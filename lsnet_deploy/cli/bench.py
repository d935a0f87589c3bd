"""``lsnet-deploy bench ...``: the latency harness commands.

``bench`` without a subcommand is ``bench host`` (``lsnet-deploy bench --model lsnet_t``,
``lsnet-deploy bench export/lsnet_t/*.onnx``). Subcommands: ``host``, ``coreml`` (macOS),
``android`` (a phone over adb), ``ios-harness`` (generate the iPhone harness), ``import``
(results from the harness, a file, or numbers typed in from Xcode).

Every run writes a report folder (``results.json``, ``results.md``, ``latency.png``; default
``export/bench/<UTC timestamp>/``) and prints a table, or the JSON with ``--json``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.markup import escape
from rich.table import Table

from ..api import OFFICIAL
from ..errors import BenchmarkError, UnsupportedOptionError
from ._common import (
    JsonOpt,
    PeerName,
    RichProgress,
    TestModelOpt,
    Variant,
    WeightsOpt,
    checked_test_model,
    emit_json,
    err,
    new_progress,
    out,
    print_table,
    quiet_command,
)

__all__ = ["bench_app"]


class _DefaultHostGroup(typer.core.TyperGroup):
    """A group whose first argument, when it is not a subcommand, goes to ``host``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["host", *args]
        return super().parse_args(ctx, args)


bench_app = typer.Typer(
    cls=_DefaultHostGroup,
    help="Benchmark latency: on this machine (default; 'bench --model lsnet_t' or "
    "'bench FILE...'), CoreML on macOS, an Android phone over adb, an iPhone (harness + import).",
    epilog="'bench' without a command is 'bench host': its options (--model, --peer, --weights, "
    "--runtime, --threads, --runs, --warmup, --throughput, --output-dir, --json, ...) are "
    "listed by 'lsnet-deploy bench host --help'.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


# -- option parsing ------------------------------------------------------------------------------

def _int_list(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UnsupportedOptionError(f"{what} takes comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise UnsupportedOptionError(f"{what} takes positive integers, got {text!r}")
    return values


def _units(text: str) -> tuple[str, ...]:
    """Comma-separated CoreML compute units, normalized (``cpuAndNeuralEngine`` and
    ``cpu_and_ne`` are ``CPU_AND_NE``)."""
    from ..bench.ios import normalize_compute_unit

    units = tuple(normalize_compute_unit(u) for u in text.split(",") if u.strip())
    if not units:
        raise UnsupportedOptionError(f"--compute-units needs at least one unit, got {text!r}")
    return units


def _one_unit(text: str | None) -> str | None:
    """One accelerator for a hand-entered number (CoreML names are normalized by
    ``manual_result``; other runtimes take their delegate's name)."""
    if text is None:
        return None
    if "," in text:
        raise UnsupportedOptionError("a number entered by hand has one --compute-units value; "
                                     "import each compute unit's number separately")
    return text.strip()


def _host_models(model: list[Any] | None, test_model: str | None) -> list[str]:
    """The variants of ``bench host``: ``--test-model`` (a test variant only) over ``--model``."""
    if test_model is not None:
        return [checked_test_model(test_model)]
    return [m.value for m in model or []]


def _settings(threads: str | None, batch: int | None, warmup: int | None,
              warmup_seconds: float | None, runs: int | None, min_seconds: float | None,
              throughput: bool) -> Any:
    from dataclasses import replace

    from ..bench.harness import BenchSettings

    given = {k: v for k, v in (("warmup", warmup), ("warmup_s", warmup_seconds), ("runs", runs),
                               ("min_time_s", min_seconds)) if v is not None}
    if throughput:  # the paper protocol's defaults, then what was given
        counts = _int_list(threads, "--threads") if threads else (os.cpu_count() or 1,)
        return replace(BenchSettings.paper_throughput(counts, batch), **given)
    return BenchSettings(threads=_int_list(threads or "1", "--threads"), batch=batch, **given)


def _check_output_dir(output_dir: Path | None) -> None:
    """Refuse an unusable report folder before minutes of measuring, not after."""
    from ..bench.output import check_report_dir

    if output_dir is not None:
        check_report_dir(output_dir)


# -- output --------------------------------------------------------------------------------------

_TERMINAL = {"model": "model", "runtime": "runtime", "precision": "prec.",
             "accelerator": "units", "threads": "thr.", "batch": "batch",
             "median ms": "median", "p90 ms": "p90", "trimmed mean ms": "trim. mean",
             "img/s": "img/s", "load ms": "load", "device": "device"}
"""Columns of the terminal table (results.md has them all), with short headers."""


def _print_results(report: Any) -> None:
    from ..bench.output import COLUMNS, result_rows

    rows = result_rows(report.results)
    keep = [i for i, c in enumerate(COLUMNS) if c in _TERMINAL and (
        c in ("model", "runtime", "precision", "median ms") or any(r[i] != "-" for r in rows))]
    if all(r[COLUMNS.index("device")] == "host" for r in rows):
        keep = [i for i in keep if COLUMNS[i] != "device"]
    table = Table(title="ms per call (median, p90, trimmed mean; load: model load time)")
    for i in keep:
        numeric = COLUMNS[i] not in ("model", "runtime", "precision", "accelerator", "device")
        widest = max([len(_TERMINAL[COLUMNS[i]])] + [len(r[i]) for r in rows])
        table.add_column(_TERMINAL[COLUMNS[i]], justify="right" if numeric else "left",
                         overflow="fold", min_width=min(widest, 28))
    for r in rows:
        table.add_row(*(escape(r[i]) for i in keep))
    print_table(table)


def _print_comparisons(comparisons: list[Any]) -> None:
    """LSNet vs peers, one row per pair of results of the same configuration."""
    if not comparisons:
        return
    table = Table(title="LSNet vs peers (speed ratio = LSNet ms / peer ms; per MAC = speed "
                  "ratio / MAC ratio, <= 1: LSNet costs no more per MAC)")
    for name in ("runtime", "prec.", "thr.", "LSNet", "ms", "peer", "ms", "speed ratio",
                 "MAC ratio", "per MAC"):
        table.add_column(name, justify="left" if name in ("runtime", "prec.", "LSNet", "peer")
                         else "right")
    for c in comparisons:
        unit = c.accelerator or ("-" if c.threads is None else str(c.threads))
        table.add_row(escape(c.runtime), c.precision, unit, escape(c.model), f"{c.model_ms:.2f}",
                      escape(c.peer), f"{c.peer_ms:.2f}", f"{c.speed_ratio:.2f}",
                      f"{c.mac_ratio:.2f}", f"{c.per_mac_ratio:.2f}")
    print_table(table)


def _finish(report: Any, output_dir: Path | None, as_json: bool, imported: bool = False,
            note_kept: bool = False) -> None:
    """Write the report folder, print the table or the JSON, and exit like the run went
    (``imported``: the folder may exist and its earlier failures are not this command's;
    ``note_kept``: say what a run cut short kept, and where)."""
    from ..bench.ending import save_report
    from ..bench.versus import compare_with_peers

    ending = save_report(report, output_dir, imported=imported)
    versus = compare_with_peers(report.results)
    if as_json:
        emit_json({**report.to_dict(), "peer_comparisons": [c.to_dict() for c in versus],
                   "report_dir": str(ending.folder)})
    else:
        _print_results(report)
        _print_comparisons(versus)
        out.print(f"report: {escape(str(ending.folder))}")
    env = report.environment
    if env.get("busy"):
        err.print(f"[yellow]warning:[/yellow] the machine was busy (load average "
                  f"{env.get('load_avg_before')} on {env.get('cores')} cores): latencies are "
                  "suspect", highlight=False)
    for f in ending.failures:
        err.print(f"[red]failed:[/red] {escape(str(f.get('artifact') or f.get('model')))} "
                  f"({escape(str(f.get('runtime')))}): {escape(str(f.get('error')))}",
                  highlight=False)
    if ending.interrupted:
        err.print("interrupted: the report holds what was measured before Ctrl-C")
    if note_kept and ending.cut_short:
        err.print(f"kept {ending.kept} result(s) measured before the {ending.cut_short}: "
                  f"{escape(str(ending.folder))}", highlight=False)
    if ending.error is not None:
        raise ending.error
    if ending.interrupted:
        raise typer.Exit(130)


# -- the commands --------------------------------------------------------------------------------

ThreadsOpt = Annotated[str, typer.Option(
    "--threads", help="Thread counts, comma-separated (e.g. 1,2); each configuration runs once "
    "per count. Default: 1 (throughput mode: all cores).", show_default=False)]
BatchOpt = Annotated[int | None, typer.Option(
    "--batch", min=1, help="Images per call (default: the model's batch, 1 for LSNet "
    "artifacts; 64 with --throughput).")]
WarmupOpt = Annotated[int | None, typer.Option(
    "--warmup", min=0, help="Untimed warm-up calls (default 10; --throughput: 1).",
    show_default=False)]
WarmupSecondsOpt = Annotated[float | None, typer.Option(
    "--warmup-seconds", min=0, help="And warm up for at least this long (default 0; "
    "--throughput: 5).", show_default=False)]
RunsOpt = Annotated[int | None, typer.Option(
    "--runs", min=1, help="Timed calls, at least (default 50; --throughput: 3).",
    show_default=False)]
MinSecondsOpt = Annotated[float | None, typer.Option(
    "--min-seconds", min=0, help="And time for at least this long (default 0; "
    "--throughput: 10).", show_default=False)]
OutputDirOpt = Annotated[Path | None, typer.Option(
    "--output-dir", "-o", help="Report folder (default: export/bench/<timestamp>/).")]
CoremlUnitsOpt = Annotated[str, typer.Option(
    "--compute-units", help="Comma-separated compute units.")]
ALL_UNITS = "CPU_ONLY,CPU_AND_GPU,CPU_AND_NE,ALL"


@bench_app.command("host")
@quiet_command
def host_cmd(
    artifacts: Annotated[list[Path] | None, typer.Argument(
        help=".onnx / .tflite / .mlpackage / .pte files (any model, LSNet or not), or folders "
        "of them (hidden entries skipped). A sidecar labels a file only if its sha256 matches.",
        show_default=False)] = None,
    model: Annotated[list[Variant] | None, typer.Option(
        "--model", "-m", help="LSNet variant exported on the fly (repeatable): PyTorch unfused "
        "and fused, ONNX Runtime fp32 and INT8, LiteRT fp32 and INT8.", show_default=False)
    ] = None,
    peer: Annotated[list[PeerName] | None, typer.Option(
        "--peer", help="A peer network exported and timed beside LSNet in the same run, with "
        "the same runtimes and precisions (repeatable; random weights, latency only); the "
        "report adds LSNet vs peer ratios: ms, ms per GMAC, speed ratio.", show_default=False)
    ] = None,
    weights: WeightsOpt = None,
    runtime: Annotated[list[str] | None, typer.Option(
        "--runtime", help="With --model: these runtimes (repeatable): pytorch, or the runtime "
        "of a format that runs here (onnxruntime, litert, executorch; not in the default "
        "set: executorch). Default: pytorch, onnxruntime, litert.", show_default=False)
    ] = None,
    threads: ThreadsOpt = "",
    batch: BatchOpt = None,
    warmup: WarmupOpt = None,
    warmup_seconds: WarmupSecondsOpt = None,
    runs: RunsOpt = None,
    min_seconds: MinSecondsOpt = None,
    throughput: Annotated[bool, typer.Option(
        "--throughput", help="The paper's protocol: 5 s warm-up, >= 10 s timed, batch 64, "
        "images/s = batch / mean iteration time.")] = False,
    compute_units: Annotated[str, typer.Option(
        "--compute-units", help="CoreML (macOS): compute units, comma-separated.")] = "ALL",
    output_dir: OutputDirOpt = None,
    as_json: JsonOpt = False,
    test_model: TestModelOpt = None,
) -> None:
    """Benchmark on this machine: LSNet variants (--model) and/or artifact files."""
    from ..bench.host import DEFAULT_RUNTIMES, benchmark

    models = _host_models(model, test_model)
    peers = [p.value for p in peer or []]
    settings = _settings(threads, batch, warmup, warmup_seconds, runs, min_seconds, throughput)
    _check_output_dir(output_dir)
    if runtime and not models and not peers:
        raise UnsupportedOptionError("--runtime selects what --model and --peer export; "
                                     "artifact files run in the runtime of their format")
    with new_progress() as bar:
        sink = RichProgress(bar, None)
        report = benchmark(
            models, list(artifacts or []), peers=peers, weights=weights or OFFICIAL,
            settings=settings,
            runtimes=tuple(runtime) if runtime else DEFAULT_RUNTIMES,
            compute_units=_units(compute_units), progress=sink,
            say=lambda m: bar.update(sink.overall, description=escape(m)),
        )
    _finish(report, output_dir, as_json)


@bench_app.command("coreml")
@quiet_command
def coreml_cmd(
    packages: Annotated[list[Path], typer.Argument(help=".mlpackage files.")],
    compute_units: CoremlUnitsOpt = ALL_UNITS,
    warmup: WarmupOpt = None,
    warmup_seconds: WarmupSecondsOpt = None,
    runs: RunsOpt = None,
    min_seconds: MinSecondsOpt = None,
    output_dir: OutputDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Benchmark CoreML packages on this Mac, once per compute unit (load time apart)."""
    from ..bench.host import benchmark

    if sys.platform != "darwin":
        raise BenchmarkError("'bench coreml' runs Core ML, which needs macOS; for an iPhone "
                             "generate a harness with 'lsnet-deploy bench ios-harness'")
    bad = [str(p) for p in packages if p.suffix not in (".mlpackage", ".mlmodel")]
    if bad:
        raise UnsupportedOptionError(f"not CoreML packages: {', '.join(bad)}")
    settings = _settings("1", 1, warmup, warmup_seconds, runs, min_seconds, False)
    _check_output_dir(output_dir)
    with new_progress() as bar:
        report = benchmark([], packages, settings=settings,
                           compute_units=_units(compute_units),
                           progress=RichProgress(bar, None))
    _finish(report, output_dir, as_json)


@bench_app.command("android")
@quiet_command
def android_cmd(
    tflite: Annotated[list[Path], typer.Option(
        "--tflite", help=".tflite model to run on the phone (repeatable; a folder: the .tflite "
        "files under it, hidden entries skipped).", show_default=False)],
    serial: Annotated[str | None, typer.Option(
        "--serial", "-s", help="adb serial of the phone (default: the only one attached).")
    ] = None,
    benchmark_binary: Annotated[Path | None, typer.Option(
        "--benchmark-binary", help="TFLite benchmark_model for android_aarch64 (default: "
        "$LSNET_DEPLOY_BENCHMARK_MODEL).")] = None,
    threads: Annotated[str, typer.Option(
        "--threads", help="CPU threads, comma-separated (one run per count).")] = "1",
    use_gpu: Annotated[bool, typer.Option("--use-gpu", help="GPU delegate.")] = False,
    use_nnapi: Annotated[bool, typer.Option("--use-nnapi", help="NNAPI delegate.")] = False,
    use_xnnpack: Annotated[bool, typer.Option("--use-xnnpack", help="XNNPACK delegate.")
                           ] = False,
    taskset: Annotated[str | None, typer.Option(
        "--taskset", help="CPU mask (hex, e.g. f0) to pin the run to the big cores.")] = None,
    runs: Annotated[int, typer.Option("--runs", min=1, help="Timed runs.")] = 50,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Warm-up runs.")] = 10,
    output_dir: OutputDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Benchmark .tflite files on an Android phone over adb with TFLite's benchmark_model."""
    from ..bench.android import AndroidOptions, run_android_bench
    from ..bench.environment import collect_environment

    options = AndroidOptions(
        serial=serial, benchmark_binary=benchmark_binary,
        threads=_int_list(threads, "--threads"), use_gpu=use_gpu, use_nnapi=use_nnapi,
        use_xnnpack=use_xnnpack, taskset=taskset, runs=runs, warmup_runs=warmup)
    _check_output_dir(output_dir)
    env = collect_environment(list(options.threads), runs=runs, warmup=warmup, android=True)
    with err.status("android", spinner="dots") as status:
        report = run_android_bench(list(tflite), options, environment=env,
                                   progress=lambda m: status.update(escape(m)))
    # a run cut short keeps its results: the report is written, then the error that ended
    # it is raised (or exit 130 after Ctrl-C)
    _finish(report, output_dir, as_json, note_kept=True)


@bench_app.command("ios-harness")
@quiet_command
def ios_harness_cmd(
    package: Annotated[Path, typer.Argument(help="The .mlpackage to benchmark on the iPhone.")],
    output_dir: Annotated[Path | None, typer.Option(
        "--output-dir", "-o", help="Where to write the harness (default: "
        "export/ios-harness/<package name>/).")] = None,
    model: Annotated[str | None, typer.Option(
        "--model-name", help="Model label in the results (default: from the package).")] = None,
    precision: Annotated[str | None, typer.Option(
        "--precision", help="Precision label (default: from the package).")] = None,
    compute_units: CoremlUnitsOpt = ALL_UNITS,
    runs: Annotated[int, typer.Option("--runs", min=1)] = 100,
    warmup: Annotated[int, typer.Option("--warmup", min=0)] = 10,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Write an iPhone benchmark harness (XCTest + Swift package + instructions) for a package;
    its output lines go back in with 'lsnet-deploy bench import'."""
    from ..bench.ios import write_ios_harness
    from ..paths import default_export_dir

    folder = output_dir or default_export_dir() / "ios-harness" / package.stem
    files = write_ios_harness(package, folder, model=model, precision=precision,
                              compute_units=_units(compute_units), runs=runs, warmup=warmup,
                              force=force)
    for f in files:
        out.print(escape(str(f)))
    out.print(f"next: follow {escape(str(folder / 'README.md'))}, then "
              "'lsnet-deploy bench import LOG'")


@bench_app.command("import")
@quiet_command
def import_cmd(
    files: Annotated[list[Path] | None, typer.Argument(
        help="Result files: harness console logs, JSON lines, or result JSON.",
        show_default=False)] = None,
    device: Annotated[str | None, typer.Option(
        "--device", help="Enter one number by hand: the device (e.g. 'iPhone 15 Pro').")] = None,
    median_ms: Annotated[float | None, typer.Option(
        "--median-ms", help="Enter one number by hand: the median latency (ms), e.g. from "
        "Xcode's Core ML performance report.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="With --median-ms: the "
                                              "model label (e.g. lsnet_t).")] = None,
    precision: Annotated[str, typer.Option("--precision", help="With --median-ms.")
                         ] = "unknown",
    compute_units: Annotated[str | None, typer.Option(
        "--compute-units", help="With --median-ms: CoreML's CPU_ONLY, CPU_AND_GPU, CPU_AND_NE "
        "or ALL; for another runtime, its delegate (e.g. gpu).")] = None,
    runtime: Annotated[str, typer.Option("--runtime", help="With --median-ms.")] = "coreml",
    platform: Annotated[str, typer.Option("--platform", help="With --median-ms: ios, android, "
                                          "macos or host.")] = "ios",
    notes: Annotated[str | None, typer.Option("--notes", help="With --median-ms.")] = None,
    into: Annotated[Path | None, typer.Option(
        "--into", help="Add to this existing report folder (default: a new one).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Bring results measured elsewhere (iPhone harness, Xcode, another machine) into a report
    folder, where 'lsnet-deploy report' finds them."""
    from ..bench.ios import import_results, manual_result
    from ..bench.merge import import_report

    manual = [device, median_ms, model]
    if any(v is not None for v in manual) and not all(v is not None for v in manual):
        raise UnsupportedOptionError("a number entered by hand needs --device, --median-ms and "
                                     "--model together")
    results = import_results(list(files or [])) if files else []
    if median_ms is not None:
        results.append(manual_result(
            model=model, device=device, median_ms=median_ms, precision=precision,  # type: ignore[arg-type]
            runtime=runtime, accelerator=_one_unit(compute_units),
            platform=platform, notes=notes))
    if not results:
        raise UnsupportedOptionError("nothing to import: give result files, or --device, "
                                     "--median-ms and --model")
    report = import_report(results, list(files or []), into=into)
    _finish(report, into, as_json, imported=True)
