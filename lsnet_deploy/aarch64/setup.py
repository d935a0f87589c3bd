"""Building the emulated aarch64 environment from package registries only: Debian's arm64
packages (debootstrap) and PyPI's aarch64 wheels (pip), on a Debian/Ubuntu host as root.

Steps (about a minute on a 2-core machine with a fast mirror, see ``docs/decisions.md``):

1. ``debootstrap --foreign --variant=minbase --arch=arm64`` downloads a minimal Debian 12 with
   ``python3.11`` and ``libstdc++6`` and extracts the essential packages; the others are only
   downloaded, and are extracted here with ``dpkg-deb -x`` (no second stage: nothing needs
   configuring to run one interpreter, and running maintainer scripts under emulation would
   take minutes).
2. ``pip install --target site --platform manylinux..._aarch64 --only-binary=:all:`` from the
   host, for the interpreter's version: numpy, ai-edge-litert and onnxruntime at the versions
   installed on the host (so both ISAs run the same release).
3. An import check under qemu, then ``env.json``; the folder is built next to its final place
   and renamed when complete, so an interrupted setup leaves nothing half-made.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ..errors import EmulationError, MissingDependencyError
from ..progress import Say
from .environment import DEFAULT_CPU, SETUP_COMMAND, Aarch64Env, env_dir, qemu_binary

__all__ = ["DEFAULT_MIRROR", "RUNTIMES", "SUITE", "requirements", "setup_env", "wheel_command"]

log = logging.getLogger(__name__)

SUITE = "bookworm"
"""Debian 12: python3.11 (the wheels' cp311 tag)."""
PYTHON_TAG = ("3.11", "cp311")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
RUNTIMES = ("numpy", "ai-edge-litert", "onnxruntime")
"""The aarch64 wheels; each pinned to the host's installed version when there is one."""
PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_27_aarch64",
             "manylinux_2_28_aarch64", "manylinux_2_34_aarch64")
"""Wheel platforms the rootfs satisfies (Debian 12: glibc 2.36)."""
_CHECK = ("import json, platform, numpy, onnxruntime, ai_edge_litert.interpreter; "
          "from importlib.metadata import version as v; print(json.dumps({'python': "
          "platform.python_version(), 'machine': platform.machine(), 'packages': "
          "{n: v(n) for n in ('numpy', 'ai-edge-litert', 'onnxruntime')}}))")


def requirements() -> list[str]:
    """``name==version`` of each of :data:`RUNTIMES` installed on the host, else ``name``."""
    out = []
    for name in RUNTIMES:
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            out.append(name)
    return out


def wheel_command(site: Path, packages: list[str]) -> list[str]:
    """The host pip command installing the aarch64 wheels of ``packages`` into ``site``."""
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    return [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--no-input", "--target", str(site), *platforms, "--python-version", PYTHON_TAG[0],
            "--implementation", "cp", "--abi", PYTHON_TAG[1], "--only-binary=:all:", *packages]


def _tool(name: str) -> str:
    """A host tool, also found in /usr/sbin (not on a plain user's PATH)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        raise MissingDependencyError(f"{name} not found: apt-get install -y qemu-user-static "
                                     f"debootstrap, then {SETUP_COMMAND}")
    return found


def _run(cmd: list[str], what: str, **kw: Any) -> str:
    """Run a setup step; its last error line in an :class:`EmulationError` if it fails."""
    log.debug("%s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).strip().splitlines() if ln.strip()]
        raise EmulationError(f"{what} failed: {lines[-1] if lines else proc.returncode}")
    return proc.stdout


def _rootfs(rootfs: Path, mirror: str) -> None:
    """Step 1: the arm64 files (see the module docstring)."""
    _run([_tool("debootstrap"), "--arch=arm64", "--variant=minbase", "--foreign",
          "--include=python3.11,libstdc++6", SUITE, str(rootfs), mirror], "debootstrap")
    archives = rootfs / "var" / "cache" / "apt" / "archives"
    dpkg_deb = _tool("dpkg-deb")
    for deb in sorted(archives.glob("*.deb")):
        _run([dpkg_deb, "-x", str(deb), str(rootfs)], f"extracting {deb.name}")
        deb.unlink()
    if not (rootfs / "usr" / "bin" / "python3").exists():
        os.symlink("python3.11", rootfs / "usr" / "bin" / "python3")


def setup_env(root: Path | None = None, *, force: bool = False, mirror: str = DEFAULT_MIRROR,
              packages: list[str] | None = None, progress: Say | None = None) -> dict[str, Any]:
    """Build the environment at ``root`` (default :func:`~.environment.env_dir`) unless a
    complete one is there (``force``: rebuild). ``packages``: the wheels (default
    :func:`requirements`). Returns the facts of ``env.json`` plus ``"reused"``.

    Raises:
        MissingDependencyError: qemu-user-static or debootstrap missing, or not root.
        EmulationError: a step failed (its last error line).
    """
    env = Aarch64Env(root if root is not None else env_dir())
    say = progress or (lambda _m: None)
    if env.manifest.is_file() and not force:
        return {**env.facts(), "reused": True, "root": str(env.root)}
    qemu = qemu_binary()
    _tool("debootstrap")
    if os.geteuid() != 0:
        raise MissingDependencyError(f"debootstrap needs root: sudo {SETUP_COMMAND}")
    env.root.parent.mkdir(parents=True, exist_ok=True)
    staging = Aarch64Env(Path(tempfile.mkdtemp(prefix=".aarch64-", dir=env.root.parent)))
    try:
        seconds: dict[str, float] = {}
        t0 = time.perf_counter()
        say(f"debootstrap arm64 {SUITE} (python3.11) into {env.root}")
        _rootfs(staging.rootfs, mirror)
        seconds["rootfs"] = round(time.perf_counter() - t0, 1)
        t1 = time.perf_counter()
        wanted = packages if packages is not None else requirements()
        say(f"pip: aarch64 wheels of {', '.join(wanted)}")
        _run(wheel_command(staging.site, wanted), "pip install of the aarch64 wheels")
        seconds["wheels"] = round(time.perf_counter() - t1, 1)
        t2 = time.perf_counter()
        say("import check under qemu-user")
        staging.manifest.write_text("{}")  # Aarch64Env.command reads nothing from it
        cmd, environ = staging.command(["-c", _CHECK], DEFAULT_CPU)
        found = json.loads(_run(cmd, "the import check under qemu", env=environ))
        seconds["check"] = round(time.perf_counter() - t2, 1)
        seconds["total"] = round(time.perf_counter() - t0, 1)
        facts = {"suite": SUITE, "mirror": mirror, "qemu": _qemu_version(qemu),
                 "host": platform.machine(), **found, "setup_seconds": seconds}
        staging.manifest.write_text(json.dumps(facts, indent=2) + "\n")
        if env.root.exists():
            shutil.rmtree(env.root)
        staging.root.rename(env.root)
    except BaseException:
        shutil.rmtree(staging.root, ignore_errors=True)
        raise
    return {**facts, "reused": False, "root": str(env.root)}


def _qemu_version(qemu: str) -> str:
    """``"7.2.22"`` from ``qemu-aarch64-static --version``."""
    first = _run([qemu, "--version"], "qemu --version").splitlines()[0]
    return first.split(" version ", 1)[-1].split()[0]
