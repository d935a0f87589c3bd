"""What every command module shares: the consoles, the option aliases, the choice enums
(derived from the registries, never listed twice), JSON output, progress and logging.

The leaves (:mod:`.models`, :mod:`.export`, :mod:`.bench`, :mod:`.report`) import this module
and library code only, never the root (:mod:`.app`).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.status import Status

from ..api import list_variants
from ..errors import UnsupportedOptionError
from ..exporters import format_names
from ..exporters.coreml import COMPUTE_UNITS
from ..exporters.coreml_checks import IOS_SPEC_VERSION
from ..exporters.tflite import IO_TYPES
from ..pipeline import sensitivity_formats
from ..pipeline.plan import CALIB_METHODS

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
    "JsonOpt",
    "Layout",
    "ModelOpt",
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
    "setup_logging",
    "status_progress",
    "stdout_to_stderr",
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
        help="Checkpoint path; 'random' for synthetic untrained weights; "
        "default: the official checkpoint (cached in models/ or downloaded).",
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
CalibMethodOpt = Annotated[CalibMethod, typer.Option("--calib-method")]
ValOpt = Annotated[Path | None, typer.Option("--val", help="Validation image folder (default: "
                                             "every 4th image of the calibration folder).")]


# -- output --------------------------------------------------------------------------------------

def _flush_native_stdio() -> None:
    """Flush the C library's stdio buffers (native code's ``printf`` output)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).fflush(None)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """For the block (a command's work): whatever the libraries print on stdout, from Python
    (``print``) or native code (file descriptor 1), goes to stderr, so stdout carries only
    lsnet-deploy's own output (the table, the ``--json`` object), printed after the block.
    Where ``sys.stdout`` is not file descriptor 1 (an in-process test capture) only the
    Python level is redirected."""
    saved = sys.stdout
    saved.flush()
    fd_saved: int | None = None
    with contextlib.suppress(OSError, ValueError, AttributeError, io.UnsupportedOperation):
        if saved.fileno() == 1:
            _flush_native_stdio()
            fd_saved = os.dup(1)
            os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout = saved
        if fd_saved is not None:
            _flush_native_stdio()
            os.dup2(fd_saved, 1)
            os.close(fd_saved)


def emit_json(obj: dict[str, Any]) -> None:
    """Print ``obj`` as the one JSON object of ``--json`` on stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def status_progress() -> tuple[Status, Callable[[str], None]]:
    """A rich status line on stderr and the callback that updates it."""
    status = err.status("starting", spinner="dots")

    def say(msg: str) -> None:
        status.update(escape(msg))
        log.debug(msg)

    return status, say


def new_progress() -> Progress:
    """Transient progress bars on stderr."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=True)


class RichProgress:
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


# -- logging -------------------------------------------------------------------------------------

_CHATTY = ("torch.onnx", "torch._export", "torch.export", "onnxscript", "onnx_ir", "onnxruntime",
           "root")


def setup_logging(verbose: bool) -> None:
    """Our log lines on stderr (``lsnet-deploy: ...``), debug with ``verbose``; without it the
    converters' warnings and chatty loggers are quietened (our own lines say what matters)."""
    if not verbose:
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="torch")
        for name in _CHATTY:
            logging.getLogger(name).setLevel(logging.ERROR)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("lsnet-deploy: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False
