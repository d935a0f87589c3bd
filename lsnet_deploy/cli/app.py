"""The root of the ``lsnet-deploy`` command line: the app, ``--verbose`` / ``--version``, the
commands of the leaf modules, and :func:`main`, which maps known errors to one line on stderr
and the exit code of :data:`EXIT_CODES`.

Human output goes to stdout, logs and progress to stderr; ``--json`` prints exactly one JSON
object on stdout. Set ``LSNET_DEPLOY_DEBUG=1`` to see the traceback of an error.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from rich.markup import escape

from .._version import __version__
from ..errors import (
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
from . import bench, export, models, report
from ._common import err, out, setup_logging

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
}
"""Exit code per error class (first match in MRO order); other LsnetDeployErrors exit 1."""

app = typer.Typer(
    name="lsnet-deploy",
    help="LSNet from PyTorch to ONNX / CoreML / TFLite, validated and measured.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
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


app.command("models")(models.models_cmd)
app.command("info")(models.info_cmd)
app.command("export")(export.export_cmd)
app.command("validate")(export.validate_cmd)
app.command("quant-report")(export.quant_report_cmd)
app.command("predict")(models.predict_cmd)
app.add_typer(bench.bench_app, name="bench")
app.command("report")(report.report_cmd)


def _exit_code(exc: LsnetDeployError) -> int:
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]  # type: ignore[index]
    return 1


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: runs the app, maps known errors to one line + exit code."""
    debug = bool(os.environ.get("LSNET_DEPLOY_DEBUG"))
    try:
        rc = app(args=argv, standalone_mode=False)
    except LsnetDeployError as e:
        if debug:
            raise
        err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)
        sys.exit(_exit_code(e))
    except (KeyboardInterrupt, typer.Abort):
        err.print("interrupted")
        sys.exit(130)
    except typer.Exit as e:
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
    sys.exit(rc if isinstance(rc, int) else 0)
