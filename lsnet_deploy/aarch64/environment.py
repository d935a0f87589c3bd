"""The emulated aarch64 environment: where it lives, whether it is complete, and the command
that runs its Python under qemu-user.

Layout of the folder (``$LSNET_DEPLOY_AARCH64``, default ``~/.cache/lsnet-deploy/aarch64``)::

    rootfs/     Debian 12 arm64 files (python3.11 and the libraries it and the wheels load)
    site/       the aarch64 wheels (numpy, ai-edge-litert, onnxruntime), pip --target
    env.json    written last by the setup: versions, how long it took (its presence = ready)

qemu-user runs the arm64 ``python3`` with ``QEMU_LD_PREFIX=rootfs``: the loader and every
absolute path that exists under ``rootfs`` are read from there. That is also how the ARM
``/proc/cpuinfo`` reaches the runtimes: Debian 12's qemu-user (7.2) passes the host's x86
``/proc/cpuinfo`` through, and the cpuinfo library inside XNNPACK and ONNX Runtime crashes
parsing it (SIGSEGV at import). A file at ``rootfs/proc/cpuinfo`` describing the emulated
core (:func:`fake_cpuinfo`) shadows it for the emulated process only: the effect of a bind
mount in a private mount namespace (``unshare -m``), without needing root to run.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError, UnsupportedOptionError

__all__ = [
    "CPU_PARTS",
    "DEFAULT_CPU",
    "ENV_VAR",
    "QEMU",
    "SETUP_COMMAND",
    "Aarch64Env",
    "env_dir",
    "fake_cpuinfo",
    "find_env",
    "qemu_binary",
]

ENV_VAR = "LSNET_DEPLOY_AARCH64"
"""Overrides the folder of the environment."""

SETUP_COMMAND = "lsnet-deploy setup-aarch64"
"""The one command that builds the environment (as root: it runs debootstrap)."""

QEMU = "qemu-aarch64-static"

CPU_PARTS = {"cortex-a53": 0xD03, "cortex-a57": 0xD07, "cortex-a72": 0xD08,
             "cortex-a76": 0xD0B, "neoverse-n1": 0xD0C}
"""qemu CPU models with an Arm Ltd. part number (MIDR) for the fake ``/proc/cpuinfo``."""

DEFAULT_CPU = "cortex-a76"
"""The big core of most phones since 2019 (Armv8.2 with the dot-product instructions)."""

_FEATURES = {
    "cortex-a53": "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid",
    "cortex-a57": "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid",
    "cortex-a72": "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid",
    "cortex-a76": "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
                  "asimdrdm lrcpc dcpop asimddp",
    "neoverse-n1": "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
                   "asimdrdm lrcpc dcpop asimddp ssbs",
}


def env_dir() -> Path:
    """The environment's folder: ``$LSNET_DEPLOY_AARCH64``, else
    ``~/.cache/lsnet-deploy/aarch64``."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "lsnet-deploy" / "aarch64"


def fake_cpuinfo(cpu: str, cores: int) -> str:
    """An arm64 ``/proc/cpuinfo`` with ``cores`` processors of the qemu model ``cpu``, in the
    format of the Linux kernel (what the cpuinfo library parses).

    Raises:
        UnsupportedOptionError: a CPU model without a known part number.
    """
    if cpu not in CPU_PARTS:
        raise UnsupportedOptionError(f"unknown emulated CPU {cpu!r}; choose one of "
                                     f"{', '.join(CPU_PARTS)}")
    blocks = [
        f"processor\t: {k}\nBogoMIPS\t: 50.00\nFeatures\t: {_FEATURES[cpu]}\n"
        f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n"
        f"CPU part\t: 0x{CPU_PARTS[cpu]:03x}\nCPU revision\t: 0\n"
        for k in range(max(1, cores))
    ]
    return "\n".join(blocks) + "\n"


def qemu_binary() -> str:
    """The path of ``qemu-aarch64-static``.

    Raises:
        MissingDependencyError: it is not installed.
    """
    found = shutil.which(QEMU)
    if found is None:
        raise MissingDependencyError(f"{QEMU} not found: apt-get install -y qemu-user-static, "
                                     f"then {SETUP_COMMAND}")
    return found


@dataclass(frozen=True)
class Aarch64Env:
    """A complete environment folder (see the module docstring)."""

    root: Path

    @property
    def rootfs(self) -> Path:
        return self.root / "rootfs"

    @property
    def site(self) -> Path:
        return self.root / "site"

    @property
    def python(self) -> Path:
        """The arm64 interpreter (run through qemu, never directly)."""
        return self.rootfs / "usr" / "bin" / "python3"

    @property
    def manifest(self) -> Path:
        return self.root / "env.json"

    def facts(self) -> dict[str, Any]:
        """What the setup recorded in ``env.json`` (versions, setup time)."""
        return dict(json.loads(self.manifest.read_text()))

    def command(self, argv: list[str], cpu: str = DEFAULT_CPU) -> tuple[list[str], dict[str, str]]:
        """``(command, environment)`` running the arm64 python with ``argv`` on the emulated
        ``cpu``; writes the fake ``/proc/cpuinfo`` for it first (see the module docstring).
        The host's Python variables are dropped so the host's site-packages stay out."""
        self.write_cpuinfo(cpu)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "QEMU_"))}
        env.update(QEMU_LD_PREFIX=str(self.rootfs), QEMU_CPU=cpu, PYTHONPATH=str(self.site),
                   PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1",
                   TF_CPP_MIN_LOG_LEVEL="2")
        return [qemu_binary(), str(self.python), *argv], env

    def write_cpuinfo(self, cpu: str) -> None:
        """Put the fake ``/proc/cpuinfo`` of ``cpu`` (one processor per host core, as the
        host's sysfs counts them) at ``rootfs/proc/cpuinfo``, atomically."""
        text = fake_cpuinfo(cpu, os.cpu_count() or 1)
        target = self.rootfs / "proc" / "cpuinfo"
        if target.is_file() and target.read_text() == text:
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".cpuinfo.{os.getpid()}")
        tmp.write_text(text)
        tmp.replace(target)


def find_env(root: Path | None = None) -> Aarch64Env:
    """The environment at ``root`` (default :func:`env_dir`), checked complete, with qemu
    installed.

    Raises:
        MissingDependencyError: no complete environment there, or no qemu-aarch64-static;
            the message names the setup command.
    """
    env = Aarch64Env(root if root is not None else env_dir())
    if not env.manifest.is_file() or not env.python.exists():
        raise MissingDependencyError(f"no aarch64 emulation environment in {env.root}; set it "
                                     f"up with: {SETUP_COMMAND} (as root, a few minutes)")
    qemu_binary()
    return env
