"""What ``lsnet-deploy models`` and ``lsnet-deploy info`` report, as plain data.

:func:`variant_table`: one row per official variant (parameters, MACs, the paper's numbers,
checkpoint cache state). :func:`model_info`: one model's architecture, counts, input spec and
the fused-vs-unfused check on real photos. Both return JSON-ready dicts; the CLI prints them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

__all__ = ["model_info", "stage_mixers", "variant_counts", "variant_table"]


def variant_counts(name: str) -> dict[str, int]:
    """Parameters (unfused, fused) and MACs (ours, the paper's convention) of variant
    ``name`` at its zoo input size, counted on a freshly built model (seconds per variant; the
    zoo manifest keeps the result as ``counts``, checked against this by the tests)."""
    from .flops import count_macs, count_params
    from .lsnet import build_lsnet
    from .reparam import reparameterize

    model = build_lsnet(name)
    params = count_params(model)
    macs = count_macs(model)
    reparameterize(model, check_inputs=None)
    return {"params": params, "params_fused": count_params(model), "macs": macs.total,
            "macs_paper_convention": macs.paper_total}


def variant_table() -> list[dict[str, Any]]:
    """One row per zoo variant: ``variant``, ``params_m``, ``params_fused_m``, ``gmacs``,
    ``gmacs_paper_convention``, the paper's ``paper_params_m`` / ``paper_gmacs`` /
    ``paper_top1``, ``input_size`` and ``cached`` (the checkpoint path, or ``None``). The
    counts come from the manifest (instant), or are counted when it has none."""
    from .zoo import cached_checkpoint, zoo

    rows = []
    for name, entry in zoo().items():
        counts = entry.counts or variant_counts(name)
        cached = cached_checkpoint(name)
        rows.append({
            "variant": name,
            "params_m": round(counts["params"] / 1e6, 3),
            "params_fused_m": round(counts["params_fused"] / 1e6, 3),
            "gmacs": round(counts["macs"] / 1e9, 3),
            "gmacs_paper_convention": round(counts["macs_paper_convention"] / 1e9, 3),
            "paper_params_m": entry.paper.get("params_m"),
            "paper_gmacs": entry.paper.get("gmacs"),
            "paper_top1": entry.paper.get("top1"),
            "input_size": entry.input_size,
            "cached": str(cached) if cached else None,
        })
    return rows


@torch.no_grad()
def model_info(
    variant: str,
    weights: str | Path | None = "official",
    *,
    img_size: int = 224,
    images: Path | None = None,
    max_images: int = 8,
) -> dict[str, Any]:
    """Architecture summary, parameter and MAC counts, input spec and the fused-vs-unfused
    check of ``variant`` built with ``weights`` (as :func:`lsnet_deploy.create_model` takes
    them) on up to ``max_images`` photos of ``images`` (default: the calibration folder).

    Returns ``{"variant", "weights", "img_size", "attention_grid", "stages", "params",
    "params_fused", "macs", "macs_paper_convention", "reparam_check", "input_spec"}``.
    """
    from . import api
    from .flops import count_macs, count_params
    from .lsnet import stage_grid
    from .paths import calibration_dir
    from .preprocess import Preprocess, load_folder
    from .reparam import reparameterize
    from .spec import IOSpec

    net = api.create_model(variant, weights, img_size=img_size)
    source = net.weights_source
    stages = []
    for i, (dim, depth) in enumerate(zip(net.embed_dim, net.depth, strict=True)):
        h, w = stage_grid(net.img_size, i + 1)
        stages.append({"stage": i + 1, "channels": dim, "blocks": depth, "grid": f"{h}x{w}",
                       "mixers": stage_mixers(i, depth)})
    macs = count_macs(net)
    params = count_params(net)
    folder = images or calibration_dir()
    loaded = load_folder(folder, Preprocess.for_size(img_size), limit=max_images)
    unfused_top1 = net(loaded.tensors).argmax(-1)
    report = reparameterize(net, loaded.tensors)
    agree = float((net(loaded.tensors).argmax(-1) == unfused_top1).float().mean())
    spec = IOSpec(img_size=net.img_size, num_classes=net.num_classes)
    return {
        "variant": variant,
        "weights": {"kind": source.kind, "path": source.path, "sha256": source.sha256,
                    "label": source.label},
        "img_size": list(net.img_size),
        "attention_grid": list(net.attn_resolution),
        "stages": stages,
        "params": params,
        "params_fused": count_params(net),
        "macs": macs.total,
        "macs_paper_convention": macs.paper_total,
        "reparam_check": {
            "images": len(loaded.paths),
            "folder": str(folder),
            "max_abs_diff": report.max_abs_diff,
            "max_abs_logit": report.max_abs_logit,
            "top1_agreement": agree,
            "remaining_batchnorms": len(report.remaining_batchnorms),
        },
        "input_spec": spec.to_dict(),
    }


def stage_mixers(stage_index: int, depth: int) -> str:
    """The token mixers of one stage (0-based ``stage_index``) of ``depth`` blocks: even blocks
    are RepVGG depthwise + SE, odd ones LSConv (attention in the last stage)."""
    if depth == 0:
        return "-"
    odd = "Attention" if stage_index == 3 else "LSConv"
    n_even, n_odd = (depth + 1) // 2, depth // 2
    parts = [f"{n_even}x RepVGGDW+SE"] + ([f"{n_odd}x {odd}"] if n_odd else [])
    return ", ".join(parts) + " (+FFN each)"
