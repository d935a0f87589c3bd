"""What every command module shares: the consoles, the option aliases, the choice enums
(derived from the registries, never listed twice), JSON output, progress and logging.

The leaves (:mod:`.models`, :mod:`.export`, :mod:`.bench`, :mod:`.report`) import this module
and library code only, never the root (:mod:`.app`).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import json
import logging
import os
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from ..api import list_variants
from ..errors import UnsupportedOptionError
from ..exporters import format_names
from ..exporters.coreml import COMPUTE_UNITS, W8A8_SCHEMES
from ..exporters.coreml_checks import IOS_SPEC_VERSION
from ..exporters.tflite import IO_TYPES
from ..peers import peer_names
from ..pipeline import sensitivity_formats
from ..pipeline.plan import CALIB_METHODS
from ..progress import Step

__all__ = [
    "DEFAULT_CALIB_METHOD",
    "DEFAULT_VARIANT",
    "CalibMethod",
    "CalibMethodOpt",
    "CalibOpt",
    "CalibSizeOpt",
    "ComputeUnits",
    "Format",
    "ImgSizeOpt",
    "IoType",
    "IosTarget",
    "W8a8Scheme",
    "JsonOpt",
    "Layout",
    "ModelOpt",
    "PeerName",
    "RichProgress",
    "SensitivityFormat",
    "TestModelOpt",
    "ValOpt",
    "Variant",
    "WeightsOpt",
    "checked_test_model",
    "choose_model",
    "emit_json",
    "err",
    "log",
    "new_progress",
    "out",
    "print_table",
    "setup_logging",
    "quiet_command",
    "quiet_work",
    "WorkProgress",
    "tiny_variants",
]

out = Console(soft_wrap=True)
"""Human output (tables, artifact lines) on stdout."""
err = Console(stderr=True, soft_wrap=True)
"""Errors, warnings and progress on stderr."""
log = logging.getLogger("lsnet_deploy")


def _choices(name: str, values: tuple[str, ...] | list[str]) -> Any:
    """A ``str`` enum with one member per value (member name = value)."""
    return Enum(name, {v: v for v in values}, type=str)


# -- choices, from the registries ----------------------------------------------------------------

Variant = _choices("Variant", list_variants())
"""The official LSNet variants (the test configurations are for ``--test-model``)."""
PeerName = _choices("PeerName", peer_names())
"""The peer networks timed beside LSNet (:mod:`lsnet_deploy.peers`)."""
Format = _choices("Format", (*format_names(), "all"))
"""Every registered export format, and ``all``."""
SensitivityFormat = _choices("SensitivityFormat", sensitivity_formats())
"""The formats ``quant-report`` measures."""
ComputeUnits = _choices("ComputeUnits", COMPUTE_UNITS)
"""CoreML compute units."""
IoType = _choices("IoType", IO_TYPES)
"""TFLite INT8 boundary tensor types."""
IosTarget = _choices("IosTarget", tuple(str(v) for v in IOS_SPEC_VERSION))
"""CoreML minimum deployment targets."""
W8a8Scheme = _choices("W8a8Scheme", W8A8_SCHEMES)
"""CoreML W8A8 quantization schemes."""
CalibMethod = _choices("CalibMethod", CALIB_METHODS)
"""Calibration range methods."""
Layout = _choices("Layout", ("nchw", "nhwc"))
"""Input layouts (the CLI spells them in lower case)."""

DEFAULT_VARIANT = Variant("lsnet_t")
DEFAULT_CALIB_METHOD = CalibMethod(CALIB_METHODS[0])


def tiny_variants() -> tuple[str, ...]:
    """The registered variants that are not official: tiny configurations for tests."""
    official = set(list_variants())
    return tuple(v for v in list_variants(include_test=True) if v not in official)


def checked_test_model(name: str) -> str:
    """``name`` if it is a test variant (``--test-model``), else :class:`UnsupportedOptionError`."""
    if name not in tiny_variants():
        raise UnsupportedOptionError(f"--test-model takes a test variant "
                                     f"({', '.join(tiny_variants())}), not {name!r}; "
                                     "choose official variants with --model")
    return name


def choose_model(model: Any, test_model: str | None) -> str:
    """The variant a command runs: ``--test-model`` (a test variant only) over ``--model``."""
    return str(model.value) if test_model is None else checked_test_model(test_model)


# -- option aliases ------------------------------------------------------------------------------

ModelOpt = Annotated[Variant, typer.Option("--model", "-m", help="LSNet variant.")]
TestModelOpt = Annotated[str | None, typer.Option(
    "--test-model", hidden=True, help="Tests only: a tiny test variant (e.g. test_lsnet) "
    "instead of --model.")]
WeightsOpt = Annotated[
    str | None,
    typer.Option(
        "--weights",
        "-w",
        help="Checkpoint path; 'random' for synthetic untrained weights ('random-outliers': "
        "with the outlier channels trained networks have, harder for INT8); default: the official checkpoint (cached in models/ or downloaded).",
    ),
]
ImgSizeOpt = Annotated[
    int, typer.Option("--img-size", min=32, help="Input size the model is built for.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
CalibOpt = Annotated[Path | None, typer.Option("--calib", help="Calibration image folder "
                                               "(default: calibration/).")]
CalibSizeOpt = Annotated[int | None, typer.Option("--calib-size", min=1,
                                                  help="Use at most N calibration images.")]
CalibMethodOpt = Annotated[CalibMethod, typer.Option(
    "--calib-method", help="INT8 activation ranges: minmax, or percentile (ONNX only).")]
ValOpt = Annotated[Path | None, typer.Option("--val", help="Validation image folder (default: "
                                             "the photos its SOURCES.json marks validation, "
                                             "else every 4th image of the calibration folder).")]


# -- output --------------------------------------------------------------------------------------

def _flush_native_stdio() -> None:
    """Flush the C library's stdio buffers (native code's ``printf`` output)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).fflush(None)


_verbose = [False]
"""``--verbose`` of the running command (set by :func:`setup_logging`)."""


def _fd_of(stream: Any) -> int | None:
    with contextlib.suppress(OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return int(stream.fileno())
    return None


@contextlib.contextmanager
def _redirect_fd(fd: int, target_fd: int) -> Iterator[Any]:
    """File descriptor ``fd`` points to ``target_fd`` for the block; yields a text stream on
    what ``fd`` was before (lsnet-deploy's own output keeps going there)."""
    _flush_native_stdio()
    saved = os.dup(fd)
    stream = os.fdopen(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="replace")
    os.dup2(target_fd, fd)
    try:
        yield stream
    finally:
        _flush_native_stdio()
        stream.flush()
        os.dup2(saved, fd)
        os.close(saved)
        stream.close()


@contextlib.contextmanager
def quiet_work() -> Iterator[None]:
    """For a command's work: stdout carries only lsnet-deploy's own output (tables, the
    ``--json`` object) and, unless ``--verbose``, stderr only lsnet-deploy's own lines (log,
    progress). What the libraries print meanwhile (Python ``print``, warnings, their logging,
    native code on file descriptors 1 and 2: absl, oneDNN, XNNPACK, coremltools' progress bars)
    goes to a hidden capture, or with ``--verbose`` to stderr. Where ``sys.stdout`` /
    ``sys.stderr`` are not the process's file descriptors (an in-process test capture), only
    the Python level is redirected."""
    verbose = _verbose[0]
    saved_out, saved_err = sys.stdout, sys.stderr
    saved_files = (out._file, err._file)  # type: ignore[attr-defined]
    saved_out.flush()
    saved_err.flush()
    with contextlib.ExitStack() as stack:
        capture = stack.enter_context(tempfile.TemporaryFile(
            "w+", encoding="utf-8", errors="replace"))
        sink_fd = 2 if verbose else capture.fileno()
        real_out, real_err = saved_out, saved_err
        if _fd_of(saved_out) == 1:
            real_out = stack.enter_context(_redirect_fd(1, sink_fd))
        if not verbose and _fd_of(saved_err) == 2:
            real_err = stack.enter_context(_redirect_fd(2, capture.fileno()))
        out.file, err.file = real_out, real_err
        sys.stdout = saved_err if verbose else capture
        sys.stderr = saved_err if verbose else capture
        try:
            yield
        except BaseException:
            capture.flush()
            if not verbose and capture.tell() > 0:
                log.debug("the libraries' output was hidden; --verbose shows it")
            raise
        finally:
            sys.stdout, sys.stderr = saved_out, saved_err
            out.file, err.file = saved_files


def quiet_command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A command whose body runs in :func:`quiet_work` (its signature is kept for typer)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with quiet_work():
            return fn(*args, **kwargs)

    return run


def print_table(table: Table) -> None:
    """A rich table on a terminal; piped or redirected, the same table as Markdown (title,
    header, one row per line, nothing cut or wrapped to a width)."""
    if out.is_terminal:
        out.print(table)
        return

    def cell(value: object) -> str:
        text = value.plain if isinstance(value, Text) else str(value)
        return Text.from_markup(text).plain.replace("|", "/").replace("\n", " ")

    lines = [cell(table.title), ""] if table.title else []
    columns = table.columns
    lines += ["| " + " | ".join(cell(c.header) for c in columns) + " |",
              "|" + "---|" * len(columns)]
    rows = zip(*(list(c.cells) for c in columns), strict=True)
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    if table.caption:
        lines += ["", cell(table.caption)]
    out.file.write("\n".join(lines) + "\n")


def emit_json(obj: dict[str, Any]) -> None:
    """Print ``obj`` as the one JSON object of ``--json`` on stdout (the real one, also inside
    :func:`quiet_work`)."""
    stream = out.file
    stream.write(json.dumps(obj, indent=2, default=str) + "\n")
    stream.flush()


QUIET_PHASE_S = 5.0
"""Off a terminal, a phase is announced only once it has run this long."""


class WorkProgress:
    """The progress callback of the long commands (:mod:`lsnet_deploy.progress`), drawn on
    stderr: a spinner with the phase, and for a counted phase (a
    :class:`~lsnet_deploy.progress.Step`) a bar with ``k/n``, the elapsed time and an ETA.
    On a stderr that is not a terminal each phase is one log line instead. Use as a context
    manager; :meth:`summary` gives the wall time."""

    def __init__(self) -> None:
        self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                            MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("eta"),
                            TimeRemainingColumn(), console=err, transient=True,
                            disable=not err.is_terminal)
        self.task: Any = None
        self.phase: str | None = None
        self.said = ""
        self.timer: threading.Timer | None = None
        self.started = time.monotonic()

    def __enter__(self) -> WorkProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.bar.__exit__(*exc)  # type: ignore[arg-type]

    def __call__(self, message: str) -> None:
        log.debug("%s", message)
        step = message if isinstance(message, Step) else None
        phase = step.phase if step is not None else str(message)
        if phase != self.phase:  # a new phase: a new task, so the ETA is its own
            self.phase = phase
            if self.task is not None:
                self.bar.remove_task(self.task)
            self.task = self.bar.add_task(escape(phase), total=step.total if step else None)
            if not err.is_terminal and not self.said.startswith(phase):
                self._later(f"{phase}: {step.total} steps" if step else phase)
            if step is None:
                self.said = phase
        if step is not None:
            self.bar.update(self.task, total=step.total, completed=step.index - 1,
                            description=escape(f"{step.phase} {step.index}/{step.total}: "
                                               f"{step.item}"))

    def _later(self, line: str) -> None:
        """Off a terminal: log ``line`` if its phase is still running after
        :data:`QUIET_PHASE_S` (a quick command stays silent, a long one says what it does)."""
        if self.timer is not None:
            self.timer.cancel()
        self.timer = threading.Timer(QUIET_PHASE_S, log.info, args=("%s", line))
        self.timer.daemon = True
        self.timer.start()

    def summary(self) -> str:
        """``"done in 1 min 23 s"``."""
        seconds = time.monotonic() - self.started
        minutes, rest = divmod(int(round(seconds)), 60)
        return f"done in {minutes} min {rest} s" if minutes else f"done in {seconds:.1f} s"


def new_progress() -> Progress:
    """Transient progress bars on stderr."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=err,
                    transient=True, disable=not err.is_terminal)


class RichProgress:
    """The harness's :class:`~lsnet_deploy.bench.harness.ProgressSink` on a rich progress bar:
    one bar for the configurations, one for the calls of the current one."""

    def __init__(self, progress: Progress, total_configs: int | None) -> None:
        self.progress = progress
        self.overall = progress.add_task("configurations", total=total_configs)
        self.task: Any = None

    def plan(self, configurations: int) -> None:
        self.progress.update(self.overall, total=configurations)

    def begin(self, label: str, total: int | None) -> None:
        self.task = self.progress.add_task(escape(label), total=total)
        if not err.is_terminal:
            log.info("timing %s", label)

    def step(self) -> None:
        self.progress.advance(self.task)

    def end(self) -> None:
        self.progress.remove_task(self.task)
        self.progress.advance(self.overall)


# -- logging -------------------------------------------------------------------------------------

_CHATTY = ("torch.onnx", "torch._export", "torch.export", "onnxscript", "onnx_ir", "onnxruntime",
           "root")


class _ConsoleHandler(logging.Handler):
    """lsnet-deploy's log records as lines on the ``err`` console (above a live progress bar,
    on the real stderr inside :func:`quiet_work`)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            err.print(escape(self.format(record)), highlight=False, soft_wrap=True)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def setup_logging(verbose: bool) -> None:
    """Our log lines on stderr (``lsnet-deploy: ...``), debug with ``verbose``; without it the
    converters' warnings and chatty loggers are quietened (our own lines say what matters),
    and :func:`quiet_work` hides what the libraries print."""
    _verbose[0] = verbose
    if not verbose:
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="torch")
        for name in _CHATTY:
            logging.getLogger(name).setLevel(logging.ERROR)
    handler = _ConsoleHandler()
    handler.setFormatter(logging.Formatter("lsnet-deploy: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False
