"""``lsnet-deploy bench ...`` and ``lsnet-deploy report``: the latency harness commands.

``bench`` without a subcommand is ``bench host`` (``lsnet-deploy bench --model lsnet_t``,
``lsnet-deploy bench export/lsnet_t/*.onnx``). Subcommands: ``host``, ``coreml`` (macOS),
``android`` (a phone over adb), ``ios-harness`` (generate the iPhone harness), ``import``
(results from the harness, a file, or numbers typed in from Xcode).

Every run writes a report folder (``results.json``, ``results.md``, ``latency.png``; default
``export/bench/<UTC timestamp>/``) and prints a table, or the JSON with ``--json``.
Registered on the main app by :mod:`lsnet_deploy.cli`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .cli import JsonOpt, Variant, WeightsOpt, _emit_json, err, out
from .errors import BenchmarkError, LsnetDeployError, UnsupportedOptionError

__all__ = ["bench_app", "report_cmd"]


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
    no_args_is_help=True,
)


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
    from .bench.ios import normalize_compute_unit

    units = tuple(normalize_compute_unit(u) for u in text.split(",") if u.strip())
    if not units:
        raise UnsupportedOptionError(f"--compute-units needs at least one unit, got {text!r}")
    return units


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


class _RichProgress:
    """The harness's :class:`~lsnet_deploy.bench.harness.ProgressSink` on a rich progress bar:
    one bar for the configurations, one for the calls of the current one."""

    def __init__(self, progress: Progress, total_configs: int | None) -> None:
        self.progress = progress
        self.overall = progress.add_task("configurations", total=total_configs)
        self.task: Any = None

    def begin(self, label: str, total: int | None) -> None:
        self.task = self.progress.add_task(escape(label), total=total)

    def step(self) -> None:
        self.progress.advance(self.task)

    def end(self) -> None:
        self.progress.remove_task(self.task)
        self.progress.advance(self.overall)


def _new_progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=True)


_TERMINAL = {"model": "model", "runtime": "runtime", "precision": "prec.",
             "accelerator": "units", "threads": "thr.", "batch": "batch",
             "median ms": "median", "p90 ms": "p90", "trimmed mean ms": "trim. mean",
             "img/s": "img/s", "load ms": "load", "device": "device"}
"""Columns of the terminal table (results.md has them all), with short headers."""


def _print_results(report: Any) -> None:
    from .bench.output import COLUMNS, result_rows

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
    out.print(table)


def _check_output_dir(output_dir: Path | None) -> None:
    """Refuse an unusable report folder before minutes of measuring, not after."""
    from .bench.output import check_report_dir

    if output_dir is not None:
        check_report_dir(output_dir)


def _finish(report: Any, output_dir: Path | None, as_json: bool, imported: bool = False) -> None:
    """Write the report folder, print the table or the JSON, and exit like the run went
    (``imported``: the folder may exist and its earlier failures are not this command's)."""
    from .bench.output import write_report_folder

    folder = write_report_folder(report, output_dir, update=imported)
    if as_json:
        _emit_json({**report.to_dict(), "report_dir": str(folder)})
    else:
        _print_results(report)
        out.print(f"report: {escape(str(folder))}")
    env = report.environment
    if env.get("busy"):
        err.print(f"[yellow]warning:[/yellow] the machine was busy (load average "
                  f"{env.get('load_avg_before')} on {env.get('cores')} cores): latencies are "
                  "suspect", highlight=False)
    if imported:
        return
    for f in report.failures:
        err.print(f"[red]failed:[/red] {escape(str(f.get('artifact') or f.get('model')))} "
                  f"({escape(str(f.get('runtime')))}): {escape(str(f.get('error')))}",
                  highlight=False)
    if report.interrupted:
        err.print("interrupted: the report holds what was measured before Ctrl-C")
        raise typer.Exit(130)
    if report.failures:
        raise BenchmarkError(f"{len(report.failures)} configuration(s) failed (see above and "
                             f"{folder / 'results.md'})")


def _settings(threads: str | None, batch: int | None, warmup: int | None,
              warmup_seconds: float | None, runs: int | None, min_seconds: float | None,
              throughput: bool) -> Any:
    from dataclasses import replace

    from .bench.harness import BenchSettings

    given = {k: v for k, v in (("warmup", warmup), ("warmup_s", warmup_seconds), ("runs", runs),
                               ("min_time_s", min_seconds)) if v is not None}
    if throughput:  # the paper protocol's defaults, then what was given
        counts = _int_list(threads, "--threads") if threads else (os.cpu_count() or 1,)
        return replace(BenchSettings.paper_throughput(counts, batch), **given)
    return BenchSettings(threads=_int_list(threads or "1", "--threads"), batch=batch, **given)


@bench_app.command("host")
def host_cmd(
    artifacts: Annotated[list[Path] | None, typer.Argument(
        help=".onnx / .tflite / .mlpackage files (any model, LSNet or not).",
        show_default=False)] = None,
    model: Annotated[list[Variant] | None, typer.Option(
        "--model", "-m", help="LSNet variant exported on the fly (repeatable): PyTorch unfused "
        "and fused, ONNX Runtime fp32 and INT8, LiteRT fp32 and INT8.", show_default=False)
    ] = None,
    weights: WeightsOpt = None,
    runtime: Annotated[list[str] | None, typer.Option(
        "--runtime", help="With --model: only these runtimes (repeatable): pytorch, "
        "onnxruntime, litert.", show_default=False)] = None,
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
) -> None:
    """Benchmark on this machine: LSNet variants (--model) and/or artifact files."""
    from .api import OFFICIAL
    from .bench.host import RUNTIME_CHOICES, benchmark

    settings = _settings(threads, batch, warmup, warmup_seconds, runs, min_seconds, throughput)
    _check_output_dir(output_dir)
    chosen = tuple(runtime) if runtime else RUNTIME_CHOICES
    if runtime and not model:
        raise UnsupportedOptionError("--runtime selects what --model exports; artifact files "
                                     "run in the runtime of their format")
    with _new_progress() as bar:
        sink = _RichProgress(bar, None)
        report = benchmark(
            [m.value for m in model or []], list(artifacts or []),
            weights=weights if weights else OFFICIAL, settings=settings, runtimes=chosen,
            compute_units=_units(compute_units), progress=sink,
            say=lambda m: bar.update(sink.overall, description=escape(m)),
        )
    _finish(report, output_dir, as_json)


@bench_app.command("coreml")
def coreml_cmd(
    packages: Annotated[list[Path], typer.Argument(help=".mlpackage files.")],
    compute_units: Annotated[str, typer.Option(
        "--compute-units", help="Comma-separated compute units.")] =
    "CPU_ONLY,CPU_AND_GPU,CPU_AND_NE,ALL",
    warmup: WarmupOpt = None,
    warmup_seconds: WarmupSecondsOpt = None,
    runs: RunsOpt = None,
    min_seconds: MinSecondsOpt = None,
    output_dir: OutputDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Benchmark CoreML packages on this Mac, once per compute unit (load time apart)."""
    from .bench.host import benchmark

    if sys.platform != "darwin":
        raise BenchmarkError("'bench coreml' runs Core ML, which needs macOS; for an iPhone "
                             "generate a harness with 'lsnet-deploy bench ios-harness'")
    bad = [str(p) for p in packages if p.suffix not in (".mlpackage", ".mlmodel")]
    if bad:
        raise UnsupportedOptionError(f"not CoreML packages: {', '.join(bad)}")
    settings = _settings("1", 1, warmup, warmup_seconds, runs, min_seconds, False)
    _check_output_dir(output_dir)
    with _new_progress() as bar:
        report = benchmark([], packages, settings=settings,
                           compute_units=_units(compute_units),
                           progress=_RichProgress(bar, None))
    _finish(report, output_dir, as_json)


@bench_app.command("android")
def android_cmd(
    tflite: Annotated[list[Path], typer.Option(
        "--tflite", help=".tflite model to run on the phone (repeatable).", show_default=False)],
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
    from .bench.android import AndroidOptions, run_android_bench
    from .bench.environment import collect_environment, mark_busy
    from .bench.output import write_report_folder
    from .bench.schema import BenchReport

    options = AndroidOptions(
        serial=serial, benchmark_binary=benchmark_binary,
        threads=_int_list(threads, "--threads"), use_gpu=use_gpu, use_nnapi=use_nnapi,
        use_xnnpack=use_xnnpack, taskset=taskset, runs=runs, warmup_runs=warmup)
    _check_output_dir(output_dir)
    env = collect_environment(list(options.threads), runs=runs, warmup=warmup,
                              android=True)
    try:
        with err.status("android", spinner="dots") as status:
            results = run_android_bench(list(tflite), options,
                                        progress=lambda m: status.update(escape(m)))
    except (LsnetDeployError, KeyboardInterrupt) as e:
        partial = list(getattr(e, "results", []))
        if partial:  # keep what the phone measured before the failure or Ctrl-C
            report = BenchReport(partial, mark_busy(env, judge=False),
                                 interrupted=isinstance(e, KeyboardInterrupt))
            if isinstance(e, LsnetDeployError):
                report.failures.append({"runtime": "litert", "error": str(e)})
            folder = write_report_folder(report, output_dir)
            err.print(f"kept {len(partial)} result(s) measured before the "
                      f"{'interruption' if report.interrupted else 'failure'}: "
                      f"{escape(str(folder))}")
        raise
    _finish(BenchReport(results, mark_busy(env, judge=False)), output_dir, as_json)


@bench_app.command("ios-harness")
def ios_harness_cmd(
    package: Annotated[Path, typer.Argument(help="The .mlpackage to benchmark on the iPhone.")],
    output_dir: Annotated[Path | None, typer.Option(
        "--output-dir", "-o", help="Where to write the harness (default: "
        "export/ios-harness/<package name>/).")] = None,
    model: Annotated[str | None, typer.Option(
        "--model-name", help="Model label in the results (default: from the package).")] = None,
    precision: Annotated[str | None, typer.Option(
        "--precision", help="Precision label (default: from the package).")] = None,
    compute_units: Annotated[str, typer.Option(
        "--compute-units", help="Comma-separated compute units.")] =
    "CPU_ONLY,CPU_AND_GPU,CPU_AND_NE,ALL",
    runs: Annotated[int, typer.Option("--runs", min=1)] = 100,
    warmup: Annotated[int, typer.Option("--warmup", min=0)] = 10,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Write an iPhone benchmark harness (XCTest + Swift package + instructions) for a package;
    its output lines go back in with 'lsnet-deploy bench import'."""
    from .bench.ios import write_ios_harness
    from .paths import default_export_dir

    folder = output_dir or default_export_dir() / "ios-harness" / package.stem
    files = write_ios_harness(package, folder, model=model, precision=precision,
                              compute_units=_units(compute_units), runs=runs, warmup=warmup,
                              force=force)
    for f in files:
        out.print(escape(str(f)))
    out.print(f"next: follow {escape(str(folder / 'README.md'))}, then "
              "'lsnet-deploy bench import LOG'")


@bench_app.command("import")
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
    from .bench.environment import collect_environment, mark_busy
    from .bench.ios import import_results, manual_result
    from .bench.output import JSON
    from .bench.schema import BenchReport, load_report

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
    if into is not None:
        if not (into / JSON).is_file():
            raise BenchmarkError(f"{into}: not a report folder (no {JSON})")
        report = load_report(into / JSON)
        keys = {r.key for r in results}
        report.results = [r for r in report.results if r.key not in keys] + results
    else:
        env = collect_environment(None, imported=[str(f) for f in files or []])
        env["note"] = ("imported results: the machine above imported them; each result's "
                       "device / device_info says where it was measured")
        report = BenchReport(results, mark_busy(env, judge=False))
    _finish(report, into, as_json, imported=True)


def _one_unit(text: str | None) -> str | None:
    """One accelerator for a hand-entered number (CoreML names are normalized by
    ``manual_result``; other runtimes take their delegate's name)."""
    if text is None:
        return None
    if "," in text:
        raise UnsupportedOptionError("a number entered by hand has one --compute-units value; "
                                     "import each compute unit's number separately")
    return text.strip()


def report_cmd(
    paths: Annotated[list[Path] | None, typer.Argument(
        help="Result files or folders (default: every report under export/bench/).",
        show_default=False)] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Also write the Markdown page here.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The paper's claims (params, GMACs, GPU throughput, top-1) beside lsnet-deploy's
    measurements (latency per runtime, precision and device)."""
    from dataclasses import asdict

    from .bench.claims import (
        PAPER_NOTE,
        build_claims,
        claims_markdown,
        collect_results,
        find_result_files,
    )
    from .metadata import write_text_atomic

    files = find_result_files(list(paths or []))
    results = collect_results(files)
    claims = build_claims(results)
    page = claims_markdown(claims, results, files)
    if output is not None:
        write_text_atomic(output, page)
    if as_json:
        _emit_json({"note": PAPER_NOTE, "claims": [asdict(c) for c in claims],
                    "results": [r.to_dict() for r in results],
                    "sources": [str(f) for f in files]})
        return
    from rich.markdown import Markdown

    out.print(Markdown(page))
    if output is not None:
        out.print(f"written: {escape(str(output))}")
