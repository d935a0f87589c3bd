"""The root of the ``lsnet-deploy`` command line: the app, ``--verbose`` / ``--version``, the
commands of the leaf modules, and :func:`main`, which maps known errors to one line on stderr
and the exit code of :data:`EXIT_CODES`.

Human output goes to stdout, logs and progress to stderr; ``--json`` prints exactly one JSON
object on stdout. Set ``LSNET_DEPLOY_DEBUG=1`` to see the traceback of an error.

SIGTERM is handled like Ctrl-C (clean-up runs, partial benchmark results are kept) and exits
143; Ctrl-C exits 130. Both print one "interrupted" line.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType
from typing import Annotated

import typer
from rich.markup import escape

from .._version import __version__
from ..errors import (
    ArtifactError,
    BenchmarkError,
    CheckpointError,
    DeviceError,
    ExportError,
    ImageError,
    InputShapeError,
    LsnetDeployError,
    MissingDependencyError,
    OutputError,
    UnknownVariantError,
    UnsupportedOptionError,
    ValidationFailedError,
    WeightsUnavailableError,
)
from ..threads import apply_to_torch
from . import aarch64, bench, evaluate, export, models, profile, report
from ._common import err, out, quiet_command, setup_logging

__all__ = ["EXIT_CODES", "app", "main"]

EXIT_CODES: dict[type[LsnetDeployError], int] = {
    UnknownVariantError: 2,
    InputShapeError: 2,
    UnsupportedOptionError: 2,
    ImageError: 3,
    CheckpointError: 4,
    WeightsUnavailableError: 5,
    MissingDependencyError: 6,
    OutputError: 7,
    ExportError: 8,
    ValidationFailedError: 9,
    DeviceError: 11,
    BenchmarkError: 10,
    ArtifactError: 12,
}
"""Exit code per error class (first match in MRO order); other LsnetDeployErrors exit 1."""

app = typer.Typer(
    name="lsnet-deploy",
    help="LSNet from PyTorch to ONNX / CoreML / TFLite, validated and measured.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: no <bool> metavars, wraps at words, pipes well
)


def _print_version(value: bool) -> None:
    if value:
        out.print(f"lsnet-deploy {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    show_version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", is_eager=True,
                     callback=_print_version),
    ] = False,
) -> None:
    setup_logging(verbose)
    apply_to_torch()  # LSNET_DEPLOY_THREADS: PyTorch's share of a shared machine


app.command("models")(quiet_command(models.models_cmd))
app.command("info")(quiet_command(models.info_cmd))
app.command("export")(quiet_command(export.export_cmd))
app.command("validate")(quiet_command(export.validate_cmd))
app.command("quant-report")(quiet_command(export.quant_report_cmd))
app.command("predict")(quiet_command(models.predict_cmd))
app.command("evaluate")(quiet_command(evaluate.evaluate_cmd))
bench.bench_app.command("profile")(quiet_command(profile.profile_cmd))
app.add_typer(bench.bench_app, name="bench")
app.command("report")(quiet_command(report.report_cmd))
app.command("setup-aarch64")(quiet_command(aarch64.setup_aarch64_cmd))


def _exit_code(exc: LsnetDeployError) -> int:
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]  # type: ignore[index]
    return 1


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM: the same unwinding as Ctrl-C (every ``finally``
    and clean-up runs), exit code 143."""


_signal_seen: list[int] = []
"""The signals received while a command runs (typer turns the interrupt into a bare exit code,
so the handlers record which one it was)."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _signal_seen.append(signum)
    if signum == signal.SIGTERM:
        raise Terminated()
    raise KeyboardInterrupt()


def debug_enabled() -> bool:
    """``LSNET_DEPLOY_DEBUG`` set to 1 / true / yes / on (not merely set: ``0`` is off)."""
    return os.environ.get("LSNET_DEPLOY_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def _interrupted() -> None:
    """Print the one "interrupted" line and exit 130 (Ctrl-C) or 143 (SIGTERM)."""
    term = signal.SIGTERM in _signal_seen
    err.print("interrupted" + (" (SIGTERM)" if term else ""), highlight=False)
    sys.exit(143 if term else 130)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: runs the app, maps known errors to one line + exit code.
    Always ends with :class:`SystemExit`; the signal handlers it installs for the run are
    restored afterwards."""
    _signal_seen.clear()
    saved = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            saved[sig] = signal.signal(sig, _on_signal)
    try:
        _run(argv)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _run(argv: list[str] | None) -> None:
    debug = debug_enabled()
    try:
        rc = app(args=argv, standalone_mode=False)
    except LsnetDeployError as e:
        if debug:
            raise
        err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)
        sys.exit(_exit_code(e))
    except (KeyboardInterrupt, typer.Abort):
        _interrupted()
    except typer.Exit as e:
        if _signal_seen:
            _interrupted()
        sys.exit(e.exit_code)
    except typer.TyperException as e:  # usage errors (bad option values, missing arguments)
        show = getattr(e, "show", None)
        if callable(show):
            show()
        else:
            err.print(f"error: {e}", highlight=False)
        sys.exit(int(getattr(e, "exit_code", 2)))
    except Exception as e:  # a bug or an unexpected environment: still one line
        if debug:
            raise
        err.print(
            f"[red]internal error:[/red] {escape(type(e).__name__)}: {escape(str(e))} "
            "(set LSNET_DEPLOY_DEBUG=1 for the traceback)",
            highlight=False,
        )
        sys.exit(1)
    if _signal_seen:  # typer returned the interrupt as exit code 130
        _interrupted()
    sys.exit(rc if isinstance(rc, int) else 0)
