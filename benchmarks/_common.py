"""What the report scripts in this folder share: their common options, the machine line and the
Markdown table.

Not part of the lsnet-deploy wheel; the scripts import it as ``_common`` with their own folder
on ``sys.path``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from lsnet_deploy.bench.environment import cpu_name

__all__ = [
    "DEFAULT_VARIANTS",
    "add_families",
    "add_timing_options",
    "base_parser",
    "machine",
    "markdown_table",
    "measuring",
    "progress",
    "weight_families",
    "weights_for",
    "write_markdown",
]

DEFAULT_VARIANTS = ["lsnet_t", "lsnet_s", "lsnet_b"]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def base_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser with the options every report script takes: ``--variants``, ``--weights``,
    ``--img-size`` and ``--out``."""
    ap = argparse.ArgumentParser(description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS,
                    help="variants to export (default: %(default)s; test_lsnet for a quick run)")
    ap.add_argument("--weights", default="random",
                    help="'random', 'official', or a folder holding <variant>.pth files")
    ap.add_argument("--img-size", type=_positive_int, default=224,
                    help="square input size every artifact is exported at (default: 224)")
    ap.add_argument("--out", type=Path, help="write the Markdown to this file instead of stdout")
    return ap


def add_timing_options(ap: argparse.ArgumentParser, runs: int, warmup: int) -> None:
    """Add ``--runs`` (timed calls) and ``--warmup`` (untimed calls before them)."""
    ap.add_argument("--runs", type=_positive_int, default=runs,
                    help="timed runs per configuration (default: %(default)s)")
    ap.add_argument("--warmup", type=int, default=warmup,
                    help="untimed warm-up runs before them (default: %(default)s)")


def add_families(ap: argparse.ArgumentParser) -> None:
    """Add ``--families``: the synthetic weight families measured with ``--weights random``."""
    ap.add_argument("--families", nargs="+", default=["random", "random-outliers"],
                    help="synthetic weight families, used with --weights random "
                         "(default: %(default)s)")


def weight_families(args: argparse.Namespace) -> list[str]:
    """The ``--weights`` values to measure: ``--families`` with ``--weights random``, else the
    one ``--weights`` given (resolve a folder per variant with :func:`weights_for`)."""
    return list(args.families) if args.weights == "random" else [args.weights]


def weights_for(weights: str, variant: str) -> str:
    """``--weights`` for one variant: ``random`` / ``official`` as given, a folder as
    ``<folder>/<variant>.pth``."""
    if weights in ("random", "random-outliers", "official"):
        return weights
    return str(Path(weights) / f"{variant}.pth")


def machine() -> str:
    """``"<CPU model>, <N> cores"`` for the first line of a report."""
    return f"{cpu_name()}, {os.cpu_count()} cores"


def markdown_table(caption: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """``caption``, a blank line, then a Markdown table of ``rows`` (cells already formatted)."""
    lines = [caption, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines) + "\n"


def write_markdown(text: str, out: Path | None) -> None:
    """Write ``text`` to ``out``, or to stdout without ``--out``."""
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        out.write_text(text)


def progress(cells: Sequence[str]) -> None:
    """Show a finished row on stderr while the rest is measured."""
    print("| " + " | ".join(cells) + " |", file=sys.stderr, flush=True)


@contextlib.contextmanager
def measuring() -> Iterator[None]:
    """Configure logging and keep stdout for the table: converters that print their own
    progress (litert-torch, the TFLite quantizer) print to stderr inside this block."""
    logging.basicConfig(level=logging.WARNING)
    with contextlib.redirect_stdout(sys.stderr):
        yield
