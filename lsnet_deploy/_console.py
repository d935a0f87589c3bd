"""The ``lsnet-deploy`` console script: imports the command line inside a guard, so a Ctrl-C
while PyTorch and the backends load exits 130 with one line instead of a traceback."""

from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> None:
    """Run :func:`lsnet_deploy.cli.main` (which maps errors to exit codes)."""
    try:
        from .cli.app import main as run
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    run()
