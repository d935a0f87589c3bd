"""Shared pieces of the benchmark report scripts: the machine line and the Markdown table."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

__all__ = ["cpu_name", "emit_table", "machine"]


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo`` on Linux, ``sysctl machdep.cpu.brand_string`` on
    macOS, else what :mod:`platform` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":  # platform.processor() only says "arm" / "i386" there
        try:
            brand = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            if brand:
                return brand
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """``"<CPU model>, <N> cores"`` for the first line of a report."""
    return f"{cpu_name()}, {os.cpu_count()} cores"


def emit_table(header: list[str], rows: list[str], out: Path | None) -> None:
    """Print ``header`` + ``rows`` as one Markdown block and write it to ``out`` if given."""
    table = "\n".join(header + rows)
    print(table)
    if out:
        out.write_text(table + "\n")
