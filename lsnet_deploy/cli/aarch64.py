"""``lsnet-deploy setup-aarch64``: the emulated aarch64 environment of ``validate --arch
aarch64``, built once from Debian's and PyPI's packages."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ._common import JsonOpt, WorkProgress, emit_json, out

__all__ = ["setup_aarch64_cmd"]


def setup_aarch64_cmd(
    folder: Annotated[Path | None, typer.Option(
        "--dir", help="Where to build it (default: $LSNET_DEPLOY_AARCH64, else "
        "~/.cache/lsnet-deploy/aarch64).", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild an existing one.")] = False,
    mirror: Annotated[str | None, typer.Option(
        "--mirror", help="Debian mirror (default deb.debian.org).", show_default=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Build the arm64 Python (Debian 12, debootstrap) with the aarch64 wheels of numpy,
    ai-edge-litert and onnxruntime (the host's versions) that validate --arch aarch64 runs
    under qemu-user. Needs root and apt-get install -y qemu-user-static debootstrap; about a
    minute; an existing environment is reused."""
    from ..aarch64.setup import DEFAULT_MIRROR, setup_env

    with WorkProgress() as say:
        facts = setup_env(folder, force=force, mirror=mirror or DEFAULT_MIRROR, progress=say)
    if as_json:
        emit_json(facts)
        return
    verb = "reused" if facts["reused"] else f"built in {facts['setup_seconds']['total']:.0f} s"
    packages = ", ".join(f"{k} {v}" for k, v in facts.get("packages", {}).items())
    out.print(f"aarch64 environment {verb}: {escape(facts['root'])} (python "
              f"{facts.get('python')}, {escape(packages)}, qemu {facts.get('qemu')})")
