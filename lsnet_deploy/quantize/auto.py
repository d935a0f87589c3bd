"""Per-group INT8 sensitivity and the automatic mixed-precision search (any backend).

Sensitivity of an op group is measured two ways, both against PyTorch logits on held-out photos:

* ``only``: quantize *only* that group (everything else float): the damage the group does;
* ``without``: quantize everything *except* that group: what keeping it in float buys.

:func:`auto_exclude` keeps groups in float (or, for ONNX's ``--int8-int16 auto``, carries
their activations in int16) until the logits meet the gate (a mean cosine and, when given, a
cosine every photo must reach): first the *cheap* groups (elementwise work: residual adds,
SKA, SE, GroupNorm, attention core, head), most damaging first (lowest ``only`` cosine), and
only then the convolution groups, which carry the MACs and therefore the INT8 speed-up. With
every group in float the graph is the fp32 one, so that gate is always reachable; with every
group in int16 the int8 weights are left, which may not be. The report says what was carried.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..fidelity import ValidationReport, compare_logits
from ..progress import Say, counted
from .groups import COMPUTE_GROUPS, GROUPS

__all__ = [
    "CARRIERS",
    "COMPUTE_GROUPS",
    "GroupSensitivity",
    "QuantSetup",
    "SensitivityProbe",
    "auto_exclude",
    "measure",
    "sensitivity",
]


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GroupSensitivity:
    """One op group: node count, cosine with only it quantized, cosine with all but it."""

    group: str
    nodes: int
    only_cosine: float
    without_cosine: float
    only_top1: float
    without_top1: float


@dataclass(frozen=True)
class QuantSetup:
    """What stays fixed while searching, for any backend.

    Attributes:
        logits: quantizes with a config (a frozen dataclass with ``exclude`` and ``only``
            fields: ONNX :class:`~lsnet_deploy.quantize.onnx_int8.Int8Config` or TFLite
            :class:`~lsnet_deploy.quantize.tflite_int8.TfliteInt8Config`) and returns the
            logits ``(N, classes)`` on the validation images.
        group_sizes: number of ops per op group in the graph being quantized.
        reference: the PyTorch logits ``(N, classes)`` the cosines are measured against.
    """

    logits: Callable[[Any], np.ndarray]
    group_sizes: dict[str, int]
    reference: np.ndarray


@dataclass(frozen=True)
class SensitivityProbe:
    """A format's ready-to-measure INT8 setup for ``quant-report``: the :class:`QuantSetup`,
    the backend's full-INT8 configuration ``base``, the fp32 artifact's logits
    ``(N, classes)`` on the validation photos, and a label of the calibration method."""

    setup: QuantSetup
    base: Any
    fp32_logits: np.ndarray
    method: str


def measure(setup: QuantSetup, config: Any) -> tuple[float, float]:
    """Quantize with ``config`` and return ``(mean cosine, top-1 agreement)`` vs the reference."""
    rep = _check(setup, config)
    return rep.mean_cosine, rep.top1_agreement


def sensitivity(
    setup: QuantSetup,
    base: Any,
    progress: Say | None = None,
    baseline: tuple[float, float] | None = None,
) -> tuple[dict[str, float], list[GroupSensitivity]]:
    """Full-INT8 baseline and the per-group ``only`` / ``without`` measurements (``baseline``:
    the ``(cosine, top-1)`` of ``base`` when already measured)."""
    full_cos, full_top1 = baseline if baseline is not None else measure(setup, base)
    counts = setup.group_sizes
    rows = []
    groups = [g for g in GROUPS if counts.get(g)]
    for g in counted(progress, "INT8 sensitivity", groups, lambda g: f"group {g}"):
        only = measure(setup, replace(base, only=(g,)))
        without = measure(setup, replace(base, exclude=(*base.exclude, g)))
        rows.append(GroupSensitivity(g, counts[g], only[0], without[0], only[1], without[1]))
    return {"full_int8_cosine": full_cos, "full_int8_top1": full_top1}, rows


CARRIERS: dict[str, tuple[str, str]] = {
    "float": ("exclude", "excluded_groups"),
    "int16": ("int16", "int16_groups"),
}
"""What the greedy search does with a chosen group: ``carry`` (the precision it is carried
in) -> (the config field it joins, the report's key for the chosen groups)."""


def auto_exclude(
    setup: QuantSetup,
    min_cosine: float,
    base: Any,
    progress: Say | None = None,
    carry: str = "float",
    min_photo_cosine: float | None = None,
) -> tuple[tuple[str, ...], dict[str, Any]]:
    """Greedy mixed precision: carry groups at a higher precision (``carry``: ``"float"``,
    kept out of the quantization, or ``"int16"``, w8a16 activations, for configs with an
    ``int16`` field) until the mean cosine reaches ``min_cosine`` and, when given, every
    photo's cosine ``min_photo_cosine``; cheap groups first, each tier most damaging first.
    Returns ``(the groups carried, base's own included; report)``.

    When the starting configuration already meets the gate, nothing more is carried and the
    per-group sensitivity is not measured (``"sensitivity": []``; see ``quant-report``)."""
    field, key = CARRIERS[carry]
    steps: list[dict[str, Any]] = []
    carried = tuple(getattr(base, field))
    target = {"target_cosine": min_cosine}
    if min_photo_cosine is not None:
        target["target_photo_cosine"] = min_photo_cosine
    rep = _check(setup, base, min_cosine, min_photo_cosine)
    start = {"full_int8_cosine": rep.mean_cosine, "full_int8_min_cosine": rep.min_cosine,
             "full_int8_top1": rep.top1_agreement}
    if rep.passed:
        log.info("auto INT8: %s already meets %s; nothing carried in %s", _said(rep),
                 rep.gate, carry)
        return carried, {**start, **target, "reached": True, "steps": [], key: list(carried),
                         "sensitivity": []}
    _, rows = sensitivity(setup, base, progress, (rep.mean_cosine, rep.top1_agreement))
    ranked = sorted(rows, key=lambda r: (r.group in COMPUTE_GROUPS, r.only_cosine))
    verb = "keeping" if carry == "float" else "carrying"
    for row in counted(progress, "mixed precision", ranked,
                       lambda r: f"{verb} {r.group} in {carry}"):
        if rep.passed:
            break
        if row.group in carried or row.group in base.exclude:
            continue
        carried = (*carried, row.group)
        rep = _check(setup, replace(base, **{field: carried}), min_cosine, min_photo_cosine)
        steps.append({field: row.group, "cosine": rep.mean_cosine,
                      "min_cosine": rep.min_cosine, "top1": rep.top1_agreement})
        log.info("auto INT8: + %s %s in %s -> %s", verb, row.group, carry, _said(rep))
    report = {
        **start,
        **target,
        "reached": rep.passed,
        "steps": steps,
        key: list(carried),
        "sensitivity": [r.__dict__ for r in rows],
    }
    return carried, report


def _check(setup: QuantSetup, config: Any, min_cosine: float | None = None,
           min_photo_cosine: float | None = None) -> ValidationReport:
    """Quantize with ``config``: its logits vs the reference, with the search's gates (default:
    INT8's mean gate alone)."""
    return compare_logits(setup.logits(config), setup.reference, "int8", "held-out",
                          min_cosine, min_photo_cosine)


def _said(rep: ValidationReport) -> str:
    return f"cosine mean {rep.mean_cosine:.5f} / min {rep.min_cosine:.5f}"
