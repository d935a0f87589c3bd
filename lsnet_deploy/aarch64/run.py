"""Running an artifact in the emulated aarch64 Python: inputs out through an ``.npz`` in a
temporary folder, :mod:`._runner` run by the arm64 interpreter under qemu-user, outputs back.

One emulated process runs every batch (its start-up, importing numpy and the runtime under
emulation, costs seconds); emulation is some 10-50x slower than the host, so callers pass a
few images.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import EmulationError, UnsupportedOptionError
from .environment import DEFAULT_CPU, Aarch64Env, find_env

__all__ = ["EmulatedRun", "run_emulated", "runner_command"]

log = logging.getLogger(__name__)

RUNNER = Path(__file__).resolve().parent / "_runner.py"
"""The self-contained script the arm64 interpreter runs."""

RETRIES = 1
"""Runs again after a crash of the emulated process (a signal): ONNX Runtime's thread pool
under qemu-user 7.2 died once in 4 runs of LSNet-T INT8 with SIGSEGV, and the same run passed
again with the same outputs (docs/decisions.md); ``facts["attempts"]`` says how many it took."""

Format = Literal["tflite", "onnx"]
FORMATS: tuple[Format, ...] = ("tflite", "onnx")


@dataclass(frozen=True)
class EmulatedRun:
    """The outputs of one emulated run and what produced them."""

    outputs: list[np.ndarray]
    """The first output of each input batch, float32 (dequantized when integer)."""
    facts: dict[str, Any]
    """``arch``, ``cpu``, ``qemu``, the runtime and its version, numpy, python, ``seconds``."""


def runner_command(env: Aarch64Env, fmt: Format, model: Path, inputs: Path, outputs: Path,
                   threads: int | None, cpu: str) -> tuple[list[str], dict[str, str]]:
    """The command (and environment) that runs ``model`` on ``inputs`` in the emulated
    Python, with the runner script copied next to them.

    Raises:
        UnsupportedOptionError: a format the runner does not know.
    """
    if fmt not in FORMATS:
        raise UnsupportedOptionError(f"aarch64 emulation runs {' and '.join(FORMATS)} "
                                     f"artifacts, not {fmt}")
    script = inputs.parent / RUNNER.name
    if not script.exists():
        shutil.copyfile(RUNNER, script)
    argv = [str(script), fmt, str(model), str(inputs), str(outputs), str(threads or 0)]
    return env.command(argv, cpu)


def _run(cmd: list[str], environ: dict[str, str], model: Path,
         timeout: float) -> subprocess.CompletedProcess[str]:
    """One emulated process, its output captured."""
    try:
        return subprocess.run(cmd, env=environ, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise EmulationError(f"the aarch64 run of {model.name} took over {timeout:.0f} s; "
                             "pass fewer images") from None


def _last_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The last non-empty stderr line, else the exit code."""
    lines = [ln for ln in (proc.stderr or "").strip().splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit code {proc.returncode}"


def run_emulated(model: Path, fmt: Format, inputs: list[np.ndarray], *,
                 threads: int | None = None, cpu: str = DEFAULT_CPU,
                 env: Aarch64Env | None = None, timeout: float = 1800.0) -> EmulatedRun:
    """Run ``model`` (a ``.tflite`` or ``.onnx`` file) on each of ``inputs`` (batches laid out
    as the artifact takes them) with the aarch64 kernels of its runtime, under qemu-user on
    the emulated ``cpu``.

    Raises:
        MissingDependencyError: no environment (the message names the setup command).
        EmulationError: the emulated process failed (twice, if it crashed) or timed out
            (its last stderr line).
    """
    env = env if env is not None else find_env()
    with tempfile.TemporaryDirectory(prefix="lsnet-aarch64-") as tmp:
        folder = Path(tmp)
        local = folder / f"model{model.suffix}"
        shutil.copyfile(model, local)
        np.savez(folder / "inputs.npz", **{f"x{k}": x for k, x in enumerate(inputs)})
        cmd, environ = runner_command(env, fmt, local, folder / "inputs.npz",
                                      folder / "outputs.npz", threads, cpu)
        t0 = time.perf_counter()
        for attempt in range(1, RETRIES + 2):
            proc = _run(cmd, environ, model, timeout)
            crashed = proc.returncode < 0 or "uncaught target signal" in (proc.stderr or "")
            if proc.returncode == 0 or not crashed or attempt > RETRIES:
                break
            log.warning("the aarch64 run of %s crashed under qemu (%s); running it again",
                        model.name, _last_line(proc))
        seconds = time.perf_counter() - t0
        if proc.returncode != 0 or not (folder / "outputs.npz").exists():
            raise EmulationError(f"the aarch64 run of {model.name} failed: {_last_line(proc)} "
                                 "(re-run the setup with --force if the environment is "
                                 "damaged)")
        with np.load(folder / "outputs.npz") as data:
            outputs = [np.asarray(data[f"y{k}"]) for k in range(len(inputs))]
            info = json.loads(str(data["info"]))
    facts = {"arch": "aarch64", "cpu": cpu, "emulator": "qemu-user",
             "qemu": env.facts().get("qemu"), **info, "seconds": round(seconds, 1),
             "attempts": attempt}
    return EmulatedRun(outputs, facts)
