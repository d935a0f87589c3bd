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


def _only_cosines(probe: Any, groups: list[dict[str, Any]], say: Callable[[str], None],
                  suffix: str, what: str) -> float:
    """Each group's ``only_cosine_<suffix>`` (one group quantized) from ``probe``, the
    compared model's (``what`` names it in the progress); returns its full-INT8 cosine."""
    from ..quantize.auto import measure

    for g in counted(say, f"INT8 sensitivity, {what}", groups,
                     lambda g: f"group {g['group']}"):
        g[f"only_cosine_{suffix}"] = measure(probe.setup,
                                             replace(probe.base, only=(g["group"],)))[0]
    return measure(probe.setup, probe.base)[0]


def _rounded_copy(model: torch.nn.Module, images: torch.Tensor, say: Callable[[str], None]
                  ) -> tuple[torch.nn.Module, dict[str, object]]:
    """A copy of ``model`` with its weights rounded by GPTQ on ``images``, and the record."""
    from ..quantize.rounding import round_weights

    rounded = copy.deepcopy(model)
    return rounded, round_weights(rounded, images, say).as_dict()


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
    what the equalization does for each group. ``compare_gptq``: also quantize a copy of the
    measured model whose weights GPTQ rounded onto the int8 grid
    (:func:`~lsnet_deploy.quantize.rounding.round_weights`, what ``export --gptq`` ships),
    and give each group's ``only_cosine_gptq``, the ``full_int8_cosine_gptq`` and the
    rounding's record (``weight_rounding``): what GPTQ does for each group.
    """
    from ..api import create_model
    from ..quantize.auto import sensitivity
    from ..quantize.groups import GROUPS

    supported = sensitivity_formats()
    if format not in supported:
        raise UnsupportedOptionError(f"quant-report supports {' and '.join(supported)}, "
                                     f"not {format}")
    exp = get_exporter(format)
    say = progress or (lambda _msg: None)
    reference = create_model(variant, weights, img_size=img_size)
    images = split_images(Preprocess(img_size=reference.img_size), calib, val, calib_size,
                          need_calib=True, val_size=val_size)
    assert images.calib is not None
    with torch.no_grad():
        ref_logits = reference(images.val).numpy()
    fused = copy.deepcopy(reference)
    reparameterize(fused, None)
    if compare_equalize and not equalize:
        raise UnsupportedOptionError("--compare-equalize compares with the equalized model: "
                                     "drop --no-equalize")
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
        if compare_equalize:
            say(f"exporting fp32 {format}, not equalized")
            (Path(tmp) / "plain").mkdir()
            other = exp.sensitivity_probe(plain, reference.img_size, reference.num_classes,
                                          calibration, held_out, Path(tmp) / "plain")
            baseline["full_int8_cosine_unequalized"] = _only_cosines(
                other, groups, say, "unequalized", "not equalized")
        rounding = None
        if compare_gptq:
            rounded, rounding = _rounded_copy(fused, images.calib, say)
            say(f"exporting fp32 {format}, weights rounded by GPTQ")
            (Path(tmp) / "gptq").mkdir()
            other = exp.sensitivity_probe(rounded, reference.img_size, reference.num_classes,
                                          calibration, held_out, Path(tmp) / "gptq")
            baseline["full_int8_cosine_gptq"] = _only_cosines(other, groups, say, "gptq",
                                                              "weights rounded by GPTQ")
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
        **({"weight_rounding": rounding} if rounding is not None else {}),
        **baseline,
        "groups": groups,
    }
