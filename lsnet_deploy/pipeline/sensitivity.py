"""The per-op-group INT8 sensitivity report (``lsnet-deploy quant-report``) for any format
that offers one (see :mod:`lsnet_deploy.quantize.auto`)."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ..errors import UnsupportedOptionError
from ..exporters import CalibrationSet, ReferenceSet, exporters, get_exporter
from ..fidelity import compare_logits
from ..preprocess import Preprocess
from ..progress import counted
from ..reparam import reparameterize
from .exporting import prepared_copy
from .images import split_images

__all__ = ["quant_report", "sensitivity_formats"]


def _compared(exp: Any, model: torch.nn.Module, facts: Any, data: tuple[Any, Any],
              folder: Path, groups: list[dict[str, Any]], say: Callable[[str], None],
              suffix: str, what: str) -> float:
    """Quantize ``model`` (the compared form: ``what`` names it) group by group as the main
    probe did: each group's ``only_cosine_<suffix>`` (one group quantized, written into
    ``groups``); returns its full-INT8 cosine. ``facts``: the reference model (image size,
    classes); ``data``: (calibration, held-out) sets; ``folder``: a new folder for the probe's
    fp32 export."""
    from ..quantize.auto import measure

    say(f"exporting fp32 {exp.name}, {what}")
    folder.mkdir()
    probe = exp.sensitivity_probe(model, facts.img_size, facts.num_classes, *data, folder)
    for g in counted(say, f"INT8 sensitivity, {what}", groups,
                     lambda g: f"group {g['group']}"):
        g[f"only_cosine_{suffix}"] = measure(probe.setup,
                                             replace(probe.base, only=(g["group"],)))[0]
    return measure(probe.setup, probe.base)[0]


def _gptq_by_group(exp: Any, fused: torch.nn.Module, facts: Any, data: tuple[Any, Any],
                   folder: Path, groups: list[dict[str, Any]], images: torch.Tensor,
                   say: Callable[[str], None]) -> tuple[float, dict[str, object]]:
    """GPTQ's effect per group: the weights of ``fused`` rounded by GPTQ once
    (:func:`~lsnet_deploy.quantize.rounding.round_weights`, Hessians from the float model, so
    each layer's rounding does not depend on the others'); for every group holding weights, a
    copy with only that group's layers rounded, quantized with only that group INT8
    (``only_cosine_gptq``; ``None`` for groups without weights); and the fully rounded model
    quantized whole. Returns (that full-INT8 cosine, the rounding's record)."""
    from ..quantize.auto import measure
    from ..quantize.groups import group_of_scope
    from ..quantize.rounding import round_weights, weight_layers

    folder.mkdir()
    rounded = copy.deepcopy(fused)
    record = round_weights(rounded, images, say).as_dict()
    weights = {n: m.weight.detach() for n, m in weight_layers(rounded)}
    by_group: dict[str | None, set[str]] = {}
    for name in weights:  # each layer's group, from its module path and its parents'
        parts = name.split(".")
        scopes = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
        by_group.setdefault(group_of_scope(scopes, "Conv"), set()).add(name)

    def probe(model: torch.nn.Module, name: str) -> Any:
        (folder / name).mkdir()
        return exp.sensitivity_probe(model, facts.img_size, facts.num_classes, *data,
                                     folder / name)

    for g in counted(say, "INT8 sensitivity, weights rounded by GPTQ", groups,
                     lambda g: f"group {g['group']}"):
        names = by_group.get(g["group"], set())
        g["only_cosine_gptq"] = None
        if names:
            model = copy.deepcopy(fused)
            with torch.no_grad():
                for n, m in weight_layers(model):
                    if n in names:
                        m.weight.copy_(weights[n])
            g["only_cosine_gptq"] = measure((p := probe(model, g["group"])).setup,
                                            replace(p.base, only=(g["group"],)))[0]
    whole = probe(rounded, "all")
    return measure(whole.setup, whole.base)[0], record


def _exporter(format: str, equalize: bool, compare_equalize: bool) -> Any:
    """The exporter whose sensitivity probe ``quant-report`` uses; refuses an unsupported
    format or ``--compare-equalize`` with ``--no-equalize``."""
    supported = sensitivity_formats()
    if format not in supported:
        raise UnsupportedOptionError(f"quant-report supports {' and '.join(supported)}, "
                                     f"not {format}")
    if compare_equalize and not equalize:
        raise UnsupportedOptionError("--compare-equalize compares with the equalized model: "
                                     "drop --no-equalize")
    return get_exporter(format)


def sensitivity_formats() -> tuple[str, ...]:
    """The formats ``quant-report`` supports."""
    return tuple(e.name for e in exporters() if e.capabilities.sensitivity)


def quant_report(
    variant: str,
    *,
    weights: str | Path | None = "official",
    img_size: int | tuple[int, int] = 224,
    calib: Path | None = None,
    calib_size: int | None = None,
    calib_method: str = "minmax",
    val: Path | None = None,
    progress: Callable[[str], None] | None = None,
    format: str = "onnx",
    val_size: int | None = None,
    equalize: bool = True,
    compare_equalize: bool = False,
    compare_gptq: bool = False,
) -> dict[str, Any]:
    """Per-op-group INT8 sensitivity: quantize one group at a time, and all but one group.

    ``format="onnx"`` quantizes with ONNX Runtime and runs each candidate in ONNX Runtime;
    ``format="tflite"`` quantizes with PT2E and measures the fake-quantized PyTorch model.
    Returns ``{"variant", "format", "full_int8_cosine", "groups": [...], ...}``; every cosine
    is the mean logit cosine vs the unfused PyTorch model on the validation photos (at most
    ``val_size`` of them). ``equalize``: measure the channel-equalized model INT8 exports
    quantize (:func:`~lsnet_deploy.quantize.prepare.prepare_for_int8`), as ``export`` does.
    ``compare_equalize`` (with ``equalize``): also quantize the fused model without it, and
    give each group's ``only_cosine_unequalized`` and the ``full_int8_cosine_unequalized``:
    what the equalization does for each group. ``compare_gptq``: round the measured model's
    weights with GPTQ (what ``export --gptq`` ships) and give each group's
    ``only_cosine_gptq`` (only that group INT8, its own layers GPTQ-rounded, the rest float;
    ``None`` for a group without weights: one more fp32 export per group), the
    ``full_int8_cosine_gptq`` (everything rounded and quantized) and the rounding's record
    (``weight_rounding``): what GPTQ does for each group.
    """
    from ..api import create_model
    from ..quantize.auto import sensitivity
    from ..quantize.groups import GROUPS

    exp = _exporter(format, equalize, compare_equalize)
    say = progress or (lambda _msg: None)
    reference = create_model(variant, weights, img_size=img_size)
    images = split_images(Preprocess(img_size=reference.img_size), calib, val, calib_size,
                          need_calib=True, val_size=val_size)
    assert images.calib is not None
    with torch.no_grad():
        ref_logits = reference(images.val).numpy()
    fused = copy.deepcopy(reference)
    reparameterize(fused, None)
    plain, (fused, preparation) = fused, (prepared_copy(fused, images, say) if equalize
                                          else (fused, None))
    calibration = CalibrationSet(images.calib, images.calib_source, calib_method)  # type: ignore[arg-type]
    held_out = ReferenceSet(images.val, ref_logits, images.val_source)
    with tempfile.TemporaryDirectory(prefix="lsnet-qreport-") as tmp:
        say(f"exporting fp32 {format}")
        probe = exp.sensitivity_probe(fused, reference.img_size, reference.num_classes,
                                      calibration, held_out, Path(tmp))
        fp32_rep = compare_logits(probe.fp32_logits, ref_logits, "fp32", images.val_source)
        baseline, rows = sensitivity(probe.setup, probe.base, progress=say)
        groups = [{**r.__dict__, "description": GROUPS[r.group]} for r in rows]
        data = (calibration, held_out)
        if compare_equalize:
            baseline["full_int8_cosine_unequalized"] = _compared(
                exp, plain, reference, data, Path(tmp) / "plain", groups, say, "unequalized",
                "not equalized")
        if compare_gptq:
            baseline["full_int8_cosine_gptq"], baseline["weight_rounding"] = _gptq_by_group(
                exp, fused, reference, data, Path(tmp) / "gptq", groups, images.calib, say)
    return {
        "variant": variant,
        "format": format,
        "weights": reference.weights_source.__dict__,
        "calibration": images.calib_source,
        "calibration_method": probe.method,
        "validation_images": images.val_source,
        "n_validation_images": int(images.val.shape[0]),
        "fp32_cosine": fp32_rep.mean_cosine,
        "preparation": preparation,
        **baseline,
        "groups": groups,
    }
