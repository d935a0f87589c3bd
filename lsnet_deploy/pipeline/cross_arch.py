"""The validation on phone kernels: the artifact run with the aarch64 kernels of its runtime
(XNNPACK in LiteRT, ONNX Runtime's MLAS) under qemu-user, compared with PyTorch (gated as on
the host) and with the host's own x86-64 run of the same file (reported).

INT8 kernels round differently per ISA (requantization, dot-product accumulation order of
the float paths), so an artifact that passes on x86 is not proven on a phone; this shows by
how much the two runs differ, on a few images (emulation is slow).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UnsupportedOptionError
from ..fidelity import ValidationReport, artifact_batches, comparable_outputs, compare_logits
from ..progress import Say

__all__ = ["ARCHES", "DEFAULT_EMULATED_IMAGES", "check_arch", "emulated_record"]

ARCHES = ("host", "aarch64")
"""``host``: the runtime of this machine; ``aarch64``: its arm64 build under qemu-user."""

DEFAULT_EMULATED_IMAGES = 4
"""Held-out images validated under emulation unless told otherwise (some 10 s each)."""


def check_arch(arch: str, fmt: str, max_images: int | None, cpu: str | None) -> None:
    """Refuse an unknown ``arch`` or ``cpu``, a format without an aarch64 runner, a bad
    ``max_images`` and a missing emulation environment, before any work.

    Raises:
        UnsupportedOptionError: any of the options.
        MissingDependencyError: no emulation environment (names the setup command).
    """
    from ..aarch64.environment import CPU_PARTS, find_env
    from ..aarch64.run import FORMATS

    if arch not in ARCHES:
        raise UnsupportedOptionError(f"--arch must be one of {', '.join(ARCHES)}, got {arch!r}")
    if arch == "aarch64" and fmt not in FORMATS:
        raise UnsupportedOptionError(f"--arch aarch64 runs {' and '.join(FORMATS)} artifacts, "
                                     f"not {fmt}")
    if max_images is not None and max_images < 1:
        raise UnsupportedOptionError(f"--max-images must be at least 1, got {max_images}")
    if cpu is not None and (arch != "aarch64" or cpu not in CPU_PARTS):
        raise UnsupportedOptionError(f"--cpu names an emulated core for --arch aarch64: one of "
                                     f"{', '.join(CPU_PARTS)}, got {cpu!r}")
    if arch == "aarch64":
        find_env()


def _versus(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """aarch64 vs host outputs (both in logit units): cosine, top-1, max |diff|, bit-exact."""
    r = compare_logits(a, b, "int8", "", min_cosine=0.0)
    return {"mean_cosine": r.mean_cosine, "min_cosine": r.min_cosine,
            "top1_agreement": r.top1_agreement, "top5_overlap": r.top5_overlap,
            "max_abs_diff": r.max_abs_diff, "bit_exact": bool(np.array_equal(a, b))}


def emulated_record(path: Path, fmt: str, val: torch.Tensor, spec: Any, logits: torch.Tensor,
                    host: tuple[np.ndarray, ValidationReport], *, kind: str, precision: str,
                    gates: tuple[float | None, float | None], threads: int | None,
                    cpu: str | None, progress: Say | None,
                    names: Sequence[str] = ()) -> dict[str, Any]:
    """The ``validation`` record of an aarch64 run: its comparison with PyTorch (``gates``:
    ``min_cosine`` and ``min_photo_cosine`` of :func:`~lsnet_deploy.fidelity.compare_logits`;
    ``names``: the photos' file names, for its ``worst_photo``),
    ``host`` (the host's comparable outputs and report) under ``"host"``, the two runs against
    each other under ``"aarch64_vs_host"``, and what ran it under ``"emulation"``.

    Raises:
        MissingDependencyError: no emulation environment (names the setup command).
        EmulationError: the emulated run failed.
    """
    from ..aarch64.environment import DEFAULT_CPU
    from ..aarch64.run import run_emulated

    batches = artifact_batches(val, spec)
    if progress is not None:
        progress(f"running {path.name} on aarch64 kernels (qemu-user, {val.shape[0]} images)")
    run = run_emulated(path, fmt, [x for x, _ in batches], threads=threads,  # type: ignore[arg-type]
                       cpu=cpu or DEFAULT_CPU)
    raw = np.concatenate([y[:n] for y, (_, n) in zip(run.outputs, batches, strict=True)])
    raw = raw.astype(np.float64)
    if kind == "log_probs":  # a classifier returns probabilities, compared as log-probabilities
        raw = np.log(np.maximum(raw, float(np.finfo(np.float32).tiny)))
    outputs, expected = comparable_outputs(raw, logits, kind)  # type: ignore[arg-type]
    host_outputs, host_report = host
    report = compare_logits(outputs, expected, precision, host_report.images, *gates, names)
    versus = _versus(outputs, host_outputs)
    summary = (f"aarch64 ({run.facts['cpu']}, qemu): {report.summary()}; host: "
               f"cosine mean {host_report.mean_cosine:.5f}; aarch64 vs host: cosine mean "
               f"{versus['mean_cosine']:.5f} / min {versus['min_cosine']:.5f}, top-1 "
               f"{versus['top1_agreement']:.0%}, max|diff| {versus['max_abs_diff']:.2e}")
    return {**report.to_dict(), "arch": "aarch64", "emulation": run.facts,
            "host": {**host_report.to_dict(), "summary": host_report.summary()},
            "aarch64_vs_host": versus, "summary": summary}
