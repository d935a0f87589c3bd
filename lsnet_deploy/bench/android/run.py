"""The Android run loop: prepare the models, push them and ``benchmark_model``, run every
model at every thread count, pull and parse each report into a
:class:`~lsnet_deploy.bench.schema.BenchResult`, and return them as one
:class:`~lsnet_deploy.bench.schema.BenchReport`.

The flow of :func:`run_android_bench`:

1. check the local side first (model files, the ``benchmark_model`` binary, options), so a
   typo fails before any device is touched;
2. pick the device (``adb devices``: exactly one attached, or ``--serial``) and read its facts
   (``getprop``, ``dumpsys thermalservice``, per-core maximum CPU frequencies);
3. push the binary (``chmod 755``) and every model to ``/data/local/tmp`` once;
4. per model and thread count, run ``[taskset MASK] benchmark_model --graph=... > report``
   on the device, ``adb pull`` the report, keep it locally and parse it;
5. remove the pushed models and reports (best effort; the binary stays for the next run).

``benchmark_model`` reports no median: ``median_ms`` of a result is its average (the notes say
so), because the report table sorts and plots by median.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import BenchmarkError, DeviceError, LsnetDeployError
from ..artifacts import ArtifactInfo, describe_artifact, expand_artifacts
from ..environment import collect_environment, mark_busy
from ..schema import BenchReport, BenchResult
from .adb import Adb
from .device import check_binary_abi, collect_device_info, resolve_binary, thermal
from .options import DEVICE_DIR, MEDIAN_NOTE, AndroidOptions, mask_value
from .parse import BenchmarkModelOutput, failure_line, parse_benchmark_output

__all__ = ["run_android_bench"]

log = logging.getLogger(__name__)

_REMOTE_BINARY = f"{DEVICE_DIR}/benchmark_model"
_EXIT_MARKER = "lsnet-deploy-exit="


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Model:
    """A model to run: its file, result labels, batch and input shape, and its device path."""

    path: Path
    label: str
    precision: str
    batch: int
    input_shape: list[int] | None
    remote: str


def _input_shape(path: Path, info: ArtifactInfo) -> list[int] | None:
    """The input shape from the sidecar (``metadata.input_shape``) when it is trusted (see
    :func:`~lsnet_deploy.bench.artifacts.describe_artifact`), else from the file."""
    if info.input_shape:
        return [d if isinstance(d, int) else 1 for d in info.input_shape]  # dynamic batch: 1
    try:
        from ...exporters.tflite_flatbuffer import io_details

        return [int(d) for d in io_details(path)["inputs"][0]["shape"]]
    except Exception as e:  # noqa: BLE001 - unreadable here (no ai-edge-litert, foreign file)
        log.debug("input shape of %s unknown: %s", path, e)
        return None


def _prepare_models(models: list[Path]) -> list[_Model]:
    """Check every model locally (a ``.tflite`` file that exists; a folder: the ``.tflite``
    files under it, hidden entries skipped) and label it."""
    if not models:
        raise BenchmarkError("no model given: pass one or more .tflite files")
    out = []
    given_paths = [Path(m).expanduser() for m in models]
    for index, given in enumerate(expand_artifacts(given_paths, (".tflite",))):
        path = Path(given).expanduser()
        if path.suffix.lower() != ".tflite":
            raise BenchmarkError(
                f"{path}: Android benchmarking runs TFLite models (.tflite) only"
            )
        if not path.is_file():
            raise BenchmarkError(f"{path}: no such model file")
        info = describe_artifact(path)
        shape = _input_shape(path, info)
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem)[:60] or "model"
        remote = f"{DEVICE_DIR}/lsnet_deploy_{index}_{safe}.tflite"
        out.append(_Model(path, info.model, info.precision, shape[0] if shape else 1, shape,
                          remote))
    return out


def _log_dir() -> Path:
    """Where the pulled ``benchmark_model`` reports are kept."""
    home = os.environ.get("LSNET_DEPLOY_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".cache" / "lsnet-deploy"
    return base / "android"


# ----------------------------------------------------------------------------------------------
# One run
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Phone:
    """What every step on the phone needs: the transport, the options, the device facts, the
    local folder the pulled reports are kept in, where progress goes, and the device paths to
    remove at the end (models and reports, not the binary)."""

    adb: Adb
    options: AndroidOptions
    info: dict[str, Any]
    logs: Path
    tell: Callable[[str], None]
    pushed: list[str] = field(default_factory=list)


def _benchmark_args(model: _Model, threads: int, options: AndroidOptions) -> list[str]:
    args = [
        f"--graph={model.remote}",
        f"--num_threads={threads}",
        f"--num_runs={options.runs}",
        "--min_secs=0",
        f"--warmup_runs={options.warmup_runs}",
        "--warmup_min_secs=0",
    ]
    if options.use_gpu:
        args.append("--use_gpu=true")
    if options.use_nnapi:
        args.append("--use_nnapi=true")
    if options.use_xnnpack:
        args.append("--use_xnnpack=true")
    return args


def _device_command(model: _Model, threads: int, options: AndroidOptions, report: str) -> str:
    prefix = []
    if options.taskset is not None:
        mask = options.taskset.strip().lower()
        prefix = ["taskset", mask.removeprefix("0x")]
    argv = prefix + [_REMOTE_BINARY] + _benchmark_args(model, threads, options)
    return f"{shlex.join(argv)} > {shlex.quote(report)} 2>&1; echo {_EXIT_MARKER}$?"


def _exit_code(stdout: str) -> int | None:
    m = re.search(rf"{re.escape(_EXIT_MARKER)}(\d+)", stdout)
    return int(m.group(1)) if m else None


def _notes(parsed: BenchmarkModelOutput, options: AndroidOptions,
           thermal_after: dict[str, Any] | None) -> str:
    notes = [] if parsed.inference and parsed.inference.median_ms is not None else [MEDIAN_NOTE]
    if parsed.memory_peak_mb is None and parsed.memory_overall_mb is not None:
        notes.append("memory_mb is the footprint delta from the start of the tool (overall)")
    count = parsed.inference.count if parsed.inference else None
    if count is not None and count < options.runs:
        notes.append(f"benchmark_model stopped after {count} of {options.runs} runs (max_secs)")
    if parsed.delegate:
        notes.append(parsed.delegate)
    if thermal_after and thermal_after.get("status", 0) > 0:
        notes.append(f"thermal status {thermal_after['label']} after the run: the phone may "
                     "have throttled")
    return "; ".join(notes)


def _result(model: _Model, threads: int, options: AndroidOptions, parsed: BenchmarkModelOutput,
            info: dict[str, Any]) -> BenchResult:
    stats = parsed.inference
    mean = parsed.avg_ms
    median = stats.median_ms if stats is not None and stats.median_ms is not None else mean
    warmup = parsed.warmup.count if parsed.warmup is not None else options.warmup_runs
    return BenchResult(
        model=model.label,
        runtime="litert",
        precision=model.precision,
        threads=threads,
        batch=model.batch,
        median_ms=median,
        min_ms=stats.min_ms if stats else None,
        mean_ms=mean,
        std_ms=stats.std_ms if stats else None,
        runs=stats.count if stats else None,
        warmup=warmup,
        input_shape=model.input_shape,
        platform="android",
        device=info.get("model") or info.get("serial") or "android",
        accelerator=options.accelerator,
        load_ms=parsed.init_ms,
        first_ms=parsed.first_ms,
        memory_mb=parsed.memory_mb,
        artifact=str(model.path),
        source="benchmark_model",
        device_info=info,
        notes=_notes(parsed, options, info.get("thermal_after")) or None,
    )


def _run_one(phone: _Phone, model: _Model, threads: int, index: int) -> BenchResult:
    """Run once on the device, pull the report into the log folder (kept), parse it."""
    options = phone.options
    report = f"{DEVICE_DIR}/lsnet_deploy_report_{index}.txt"
    phone.pushed.append(report)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", model.path.stem)
    local_log = phone.logs / f"{index:02d}_{name}_{options.accelerator}_t{threads}.txt"
    command = _device_command(model, threads, options, report)
    thermal_before = thermal(phone.adb)
    stdout = phone.adb.shell(command)
    code = _exit_code(stdout)
    phone.adb.run("pull", report, str(local_log))
    text = local_log.read_text(errors="replace")
    log.debug("benchmark_model output (%s):\n%s", local_log, text)
    parsed = parse_benchmark_output(text)
    if (code is not None and code != 0) or not parsed.ok:
        status = f"exit {code}" if code is not None else "no exit status"
        why = failure_line(text) if text.strip() else "no output"
        raise DeviceError(
            f"benchmark_model failed on {phone.info.get('serial')} for {model.path.name} "
            f"({status}, {options.accelerator}, {threads} thread(s)): {why} "
            f"[full log: {local_log}]"
        )
    info = dict(phone.info)
    info.update(thermal=thermal_before, thermal_after=thermal(phone.adb),
                benchmark_command=command, benchmark_log=str(local_log))
    return _result(model, threads, options, parsed, info)


# ----------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------

def run_android_bench(models: list[Path], options: AndroidOptions,
                      progress: Callable[[str], None] | None = None,
                      environment: dict[str, Any] | None = None) -> BenchReport:
    """Benchmark every model at every thread count on the phone; one result per pair.

    Before anything is measured, problems raise: :class:`BenchmarkError` for local ones
    (missing model or binary, binary for another ABI) and :class:`DeviceError` for the device
    (adb missing, no / several / unauthorized / offline devices, a push failing, the first
    ``benchmark_model`` run failing: the message names the line of its log that says why and
    where the full log was kept).

    Once at least one result is measured, nothing is lost, as in the host harness: an error
    ends the run and the report keeps the results so far, names the configuration that failed
    in ``failures`` and holds the error in ``aborted_by`` (a caller saves the report, then
    re-raises it); Ctrl-C ends it with ``interrupted`` set.

    ``environment`` is the record of the machine driving the phone (default:
    :func:`~lsnet_deploy.bench.environment.collect_environment`, taken once the device is
    chosen); its load after the run is added, but it is never judged busy: this machine's load
    says nothing about the phone's numbers.

    The pulled logs are kept under ``$LSNET_DEPLOY_HOME/android`` (default
    ``~/.cache/lsnet-deploy/android``); each result's ``device_info`` names its log
    (``benchmark_log``), the exact device command (``benchmark_command``) and the thermal
    state before (``thermal``) and after (``thermal_after``) the run.
    """
    tell = _teller(progress)
    # 1. The local side, before any device is touched.
    prepared = _prepare_models(list(models))
    binary = resolve_binary(options)
    # 2. The device and its facts.
    adb = Adb(options)
    serial = adb.select(options.serial)
    info = collect_device_info(adb)
    tell(f"device {serial}: {info.get('manufacturer')} {info.get('model')}, SoC {info.get('soc')}, "
         f"Android {info.get('android_version')}")
    check_binary_abi(binary, info)
    _warn_about_conditions(serial, info, options)
    env = environment if environment is not None else collect_environment(
        list(options.threads), runs=options.runs, warmup=options.warmup_runs, android=True)
    phone = _Phone(adb, options, info, _new_log_folder(serial), tell)
    report = BenchReport([], env)
    try:
        # 3. Push once; 4. run every configuration.
        _push(phone, binary, prepared)
        _run_all(phone, prepared, report)
    except KeyboardInterrupt:
        if not report.results:
            raise
        report.interrupted = True
    finally:
        # 5. Clean up the device.
        _remove_pushed(phone)
    mark_busy(env, judge=False)
    return report


def _teller(progress: Callable[[str], None] | None) -> Callable[[str], None]:
    """Progress messages go to the log and to ``progress``."""
    say = progress or (lambda message: None)

    def tell(message: str) -> None:
        log.info("%s", message)
        say(message)

    return tell


def _warn_about_conditions(serial: str, info: dict[str, Any], options: AndroidOptions) -> None:
    """Warn about a phone that starts hot and about more threads than the pinned cores."""
    start = info.get("thermal")
    if start and start.get("status", 0) > 0:
        log.warning("device %s starts at thermal status %s: let it cool down for stable numbers",
                    serial, start.get("label"))
    if options.taskset is not None:
        cpus = (mask_value(options.taskset) or 0).bit_count()
        if max(options.threads) > cpus:
            log.warning("--threads %d with --taskset %s (%d CPU(s)): threads will share cores",
                        max(options.threads), options.taskset, cpus)


def _new_log_folder(serial: str) -> Path:
    """A new folder for this run's pulled reports: ``<log dir>/<stamp>_<serial>``."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    logs = _log_dir() / f"{stamp}_{re.sub(r'[^A-Za-z0-9._-]+', '_', serial)}"
    logs.mkdir(parents=True, exist_ok=True)
    return logs


def _push(phone: _Phone, binary: Path, prepared: list[_Model]) -> None:
    """Push the binary (made executable) and every model, once."""
    phone.tell(f"pushing {binary.name} to {_REMOTE_BINARY}")
    phone.adb.run("push", str(binary), _REMOTE_BINARY)
    phone.adb.shell(f"chmod 755 {_REMOTE_BINARY}")
    for model in prepared:
        phone.tell(f"pushing {model.path.name}")
        phone.pushed.append(model.remote)
        phone.adb.run("push", str(model.path), model.remote)


def _run_all(phone: _Phone, prepared: list[_Model], report: BenchReport) -> None:
    """Run every (model, threads) pair in order into ``report.results``. An error before the
    first result is raised; after it, it ends the loop, recorded in ``failures`` and
    ``aborted_by``."""
    options = phone.options
    configs = [(model, threads) for model in prepared for threads in options.threads]
    for index, (model, threads) in enumerate(configs, 1):
        phone.tell(f"[{index}/{len(configs)}] {model.label} ({model.precision}) "
                   f"{options.accelerator}, {threads} thread(s)")
        try:
            result = _run_one(phone, model, threads, index)
        except LsnetDeployError as e:
            if not report.results:
                raise
            report.failures.append({"model": model.label, "runtime": "litert",
                                    "precision": model.precision, "threads": threads,
                                    "artifact": str(model.path), "error": str(e)})
            report.aborted_by = e
            return
        phone.tell(f"[{index}/{len(configs)}] {model.label}: {result.mean_ms:.2f} ms avg over "
                   f"{result.runs} runs")
        report.results.append(result)


def _remove_pushed(phone: _Phone) -> None:
    """Remove the pushed models and reports (best effort: a warning if adb fails)."""
    if not phone.pushed:
        return
    try:
        phone.adb.run("shell", "rm -f " + " ".join(shlex.quote(p) for p in phone.pushed))
    except DeviceError as e:
        log.warning("could not remove the pushed files from %s: %s", phone.adb.serial, e)
