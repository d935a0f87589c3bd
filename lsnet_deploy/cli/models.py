"""``lsnet-deploy models``, ``info`` and ``predict``: the variants, one model, its predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ..api import OFFICIAL
from ..describe import model_info, variant_table
from ..preprocess import Preprocess, list_images, probe_image
from ._common import (
    DEFAULT_VARIANT,
    ImgSizeOpt,
    JsonOpt,
    ModelOpt,
    TestModelOpt,
    WeightsOpt,
    choose_model,
    emit_json,
    out,
    print_table,
)

__all__ = ["info_cmd", "models_cmd", "predict_cmd"]


def models_cmd(as_json: JsonOpt = False) -> None:
    """List the variants with params, MACs, paper top-1 and checkpoint cache state."""
    rows = variant_table()
    if as_json:
        emit_json({"variants": rows})
        return
    table = Table(title="LSNet variants (ImageNet-1K, 224x224)")
    for col in ("variant", "params M", "fused M", "GMACs", "paper M/GMACs/top-1", "weights"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["variant"], f"{r['params_m']:.2f}", f"{r['params_fused_m']:.2f}",
            f"{r['gmacs']:.3f}",
            f"{r['paper_params_m']} / {r['paper_gmacs']} / {r['paper_top1']}",
            "cached" if r["cached"] else "-",
        )
    print_table(table)
    out.print("GMACs: convs, linears, attention matmuls and SKA counted as a dw 3x3 "
              "(docs/benchmarks.md); weights: '-' = not downloaded yet")


def info_cmd(
    model: ModelOpt = DEFAULT_VARIANT,
    weights: WeightsOpt = None,
    img_size: ImgSizeOpt = 224,
    images: Annotated[
        Path | None,
        typer.Option("--images", help="Folder of images for the fused-vs-unfused check "
                     "(default: the calibration folder)."),
    ] = None,
    max_images: Annotated[int, typer.Option("--max-images", min=1)] = 8,
    as_json: JsonOpt = False,
    test_model: TestModelOpt = None,
) -> None:
    """Architecture summary, parameter/MAC counts, input spec and the fused-vs-unfused check."""
    if images is not None:
        list_images(images)  # a missing folder or a file fails before any model is built
    result = model_info(choose_model(model, test_model), weights or OFFICIAL,
                        img_size=img_size, images=images, max_images=max_images)
    if as_json:
        emit_json(result)
        return
    _print_info(result)


def _print_info(r: dict[str, Any]) -> None:
    out.print(f"[bold]{r['variant']}[/bold]  weights: {escape(r['weights']['label'])}")
    h, w = r["img_size"]
    t = Table(title=f"architecture at {h}x{w}")
    for col in ("stage", "channels", "blocks", "grid", "mixers"):
        t.add_column(col)
    for s in r["stages"]:
        t.add_row(str(s["stage"]), str(s["channels"]), str(s["blocks"]), s["grid"], s["mixers"])
    print_table(t)
    out.print(f"params: {r['params'] / 1e6:.3f} M unfused, {r['params_fused'] / 1e6:.3f} M fused;"
              f" MACs: {r['macs'] / 1e9:.3f} G ({r['macs_paper_convention'] / 1e9:.3f} G paper "
              "convention)")
    rc = r["reparam_check"]
    out.print(f"fused vs unfused on {rc['images']} images from {escape(rc['folder'])}: max |diff| "
              f"{rc['max_abs_diff']:.2e} (max |logit| {rc['max_abs_logit']:.2f}), top-1 agreement "
              f"{rc['top1_agreement']:.0%}; {rc['remaining_batchnorms']} BatchNorms left (the BNs "
              "after SKA)")
    spec = r["input_spec"]
    out.print(f"input: {spec['input_name']} {spec['dtype']} {spec['layout']} "
              f"{spec['input_shape']} {spec['colour_order']}, {spec['value_range']} (mean "
              f"{spec['mean']}, std {spec['std']}); output: {', '.join(spec['output_names'])} "
              f"[B, {spec['num_classes']}]")


def predict_cmd(
    images: Annotated[list[Path], typer.Argument(help="Image files to classify.")],
    model: ModelOpt = DEFAULT_VARIANT,
    weights: WeightsOpt = None,
    img_size: ImgSizeOpt = 224,
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=1000)] = 5,
    as_json: JsonOpt = False,
    test_model: TestModelOpt = None,
) -> None:
    """Print the top-k ImageNet classes of each image."""
    from .. import api

    variant = choose_model(model, test_model)
    pre = Preprocess.for_size(img_size)
    for image in images:  # paths and headers first: a bad image fails before any model is built
        probe_image(image, pre)
    net = api.create_model(variant, weights or OFFICIAL, img_size=img_size, reparameterize=True)
    preds = api.predict(net, list(images), top_k=top_k)
    source = net.weights_source
    if as_json:
        emit_json({
            "variant": variant,
            "weights": {"kind": source.kind, "path": source.path, "sha256": source.sha256},
            "predictions": [
                {"image": p.path, "top": [{"index": i, "name": n, "prob": pr} for i, n, pr in p.top]}
                for p in preds
            ],
        })
        return
    out.print(f"[bold]{variant}[/bold]  weights: {escape(source.label)}")
    for p in preds:
        out.print(escape(p.path))
        for rank, (idx, name, prob) in enumerate(p.top, 1):
            out.print(escape(f"  {rank}. {name:<32} {prob:6.1%}  (class {idx})"))
