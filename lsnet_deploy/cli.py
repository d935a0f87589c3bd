"""The ``lsnet-deploy`` command line: thin commands over the Python API.

Human output goes to stdout, logs and progress to stderr; ``--json`` prints exactly one JSON
object on stdout. Known errors print one line on stderr and exit with the code of
:data:`EXIT_CODES`; set ``LSNET_DEPLOY_DEBUG=1`` to see the traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__
from .errors import (
    BenchmarkError,
    CheckpointError,
    DeviceError,
    ExportError,
    ImageError,
    InputShapeError,
    LsnetDeployError,
    MissingDependencyError,
    OutputError,
    UnknownVariantError,
    UnsupportedOptionError,
    ValidationFailedError,
    WeightsUnavailableError,
)

EXIT_CODES: dict[type[LsnetDeployError], int] = {
    UnknownVariantError: 2,
    InputShapeError: 2,
    UnsupportedOptionError: 2,
    ImageError: 3,
    CheckpointError: 4,
    WeightsUnavailableError: 5,
    MissingDependencyError: 6,
    OutputError: 7,
    ExportError: 8,
    ValidationFailedError: 9,
    DeviceError: 11,
    BenchmarkError: 10,
}
"""Exit code per error class (first match in MRO order); other LsnetDeployErrors exit 1."""

app = typer.Typer(
    name="lsnet-deploy",
    help="LSNet from PyTorch to ONNX / CoreML / TFLite, validated and measured.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
log = logging.getLogger("lsnet_deploy")


class Variant(str, Enum):
    lsnet_t = "lsnet_t"
    lsnet_t_distill = "lsnet_t_distill"
    lsnet_s = "lsnet_s"
    lsnet_s_distill = "lsnet_s_distill"
    lsnet_b = "lsnet_b"
    lsnet_b_distill = "lsnet_b_distill"


ModelOpt = Annotated[Variant, typer.Option("--model", "-m", help="LSNet variant.")]
WeightsOpt = Annotated[
    str | None,
    typer.Option(
        "--weights",
        "-w",
        help="Checkpoint path; 'random' for synthetic untrained weights; "
        "default: the official checkpoint (cached in models/ or downloaded).",
    ),
]
ImgSizeOpt = Annotated[
    int, typer.Option("--img-size", min=32, help="Input size the model is built for.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def _setup_logging(verbose: bool) -> None:
    if not verbose:  # converters are chatty; our own log lines say what matters
        import warnings

        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="torch")
        for name in ("torch.onnx", "torch._export", "torch.export", "onnxscript", "onnx_ir",
                     "onnxruntime", "root"):
            logging.getLogger(name).setLevel(logging.ERROR)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("lsnet-deploy: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False


def _print_version(value: bool) -> None:
    if value:
        out.print(f"lsnet-deploy {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    show_version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", is_eager=True,
                     callback=_print_version),
    ] = False,
) -> None:
    _setup_logging(verbose)


def _load(variant: Variant, weights: str | None, img_size: int, reparam: bool = False) -> Any:
    from .api import OFFICIAL, create_model

    return create_model(
        variant.value, weights if weights else OFFICIAL, img_size=img_size, reparameterize=reparam
    )


def _emit_json(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


@app.command("models")
def models_cmd(as_json: JsonOpt = False) -> None:
    """List the variants with params, MACs, paper top-1 and checkpoint cache state."""
    from .flops import count_macs, count_params
    from .lsnet import build_lsnet
    from .reparam import reparameterize
    from .zoo import cached_checkpoint, zoo

    rows = []
    for name, entry in zoo().items():
        model = build_lsnet(name)
        params = count_params(model)
        macs = count_macs(model)
        reparameterize(model, check_inputs=None)
        cached = cached_checkpoint(name)
        rows.append(
            {
                "variant": name,
                "params_m": round(params / 1e6, 3),
                "params_fused_m": round(count_params(model) / 1e6, 3),
                "gmacs": round(macs.total / 1e9, 3),
                "gmacs_paper_convention": round(macs.paper_total / 1e9, 3),
                "paper_params_m": entry.paper.get("params_m"),
                "paper_gmacs": entry.paper.get("gmacs"),
                "paper_top1": entry.paper.get("top1"),
                "input_size": entry.input_size,
                "cached": str(cached) if cached else None,
            }
        )
    if as_json:
        _emit_json({"variants": rows})
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
    out.print(table)
    out.print("GMACs: convs, linears, attention matmuls and SKA counted as a dw 3x3 "
              "(docs/benchmarks.md); weights: '-' = not downloaded yet")


@app.command("info")
def info_cmd(
    model: ModelOpt = Variant.lsnet_t,
    weights: WeightsOpt = None,
    img_size: ImgSizeOpt = 224,
    images: Annotated[
        Path | None,
        typer.Option("--images", help="Folder of images for the fused-vs-unfused check "
                     "(default: the calibration folder)."),
    ] = None,
    max_images: Annotated[int, typer.Option("--max-images", min=1)] = 8,
    as_json: JsonOpt = False,
) -> None:
    """Architecture summary, parameter/MAC counts, input spec and the fused-vs-unfused check."""
    with torch.no_grad():
        result = _info(model, weights, img_size, images, max_images)
    if as_json:
        _emit_json(result)
        return
    _print_info(result)


def _info(
    model: Variant, weights: str | None, img_size: int, images: Path | None, max_images: int
) -> dict[str, Any]:
    from .flops import count_macs, count_params
    from .lsnet import stage_grid
    from .paths import calibration_dir
    from .preprocess import Preprocess, load_folder
    from .reparam import reparameterize
    from .spec import IOSpec

    net = _load(model, weights, img_size)
    source = net.weights_source
    stages = []
    for i, (dim, depth) in enumerate(zip(net.embed_dim, net.depth, strict=True)):
        h, w = stage_grid(net.img_size, i + 1)
        stages.append({"stage": i + 1, "channels": dim, "blocks": depth, "grid": f"{h}x{w}",
                       "mixers": _mixers(i, depth)})
    macs = count_macs(net)
    params = count_params(net)
    folder = images or calibration_dir()
    loaded = load_folder(folder, Preprocess.for_size(img_size), limit=max_images)
    unfused_top1 = net(loaded.tensors).argmax(-1)
    report = reparameterize(net, loaded.tensors)
    agree = float((net(loaded.tensors).argmax(-1) == unfused_top1).float().mean())
    spec = IOSpec(img_size=net.img_size, num_classes=net.num_classes)
    result = {
        "variant": model.value,
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
    return result


def _print_info(r: dict[str, Any]) -> None:
    out.print(f"[bold]{r['variant']}[/bold]  weights: {escape(r['weights']['label'])}")
    h, w = r["img_size"]
    t = Table(title=f"architecture at {h}x{w}")
    for col in ("stage", "channels", "blocks", "grid", "mixers"):
        t.add_column(col)
    for s in r["stages"]:
        t.add_row(str(s["stage"]), str(s["channels"]), str(s["blocks"]), s["grid"], s["mixers"])
    out.print(t)
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


class Format(str, Enum):
    onnx = "onnx"
    tflite = "tflite"
    coreml = "coreml"
    all = "all"


class Layout(str, Enum):
    nchw = "nchw"
    nhwc = "nhwc"


class IoType(str, Enum):
    int8 = "int8"
    float32 = "float32"
    uint8 = "uint8"


class IosTarget(str, Enum):
    ios16 = "16"
    ios17 = "17"
    ios18 = "18"


class ComputeUnits(str, Enum):
    ALL = "ALL"
    CPU_ONLY = "CPU_ONLY"
    CPU_AND_GPU = "CPU_AND_GPU"
    CPU_AND_NE = "CPU_AND_NE"


class CalibMethod(str, Enum):
    minmax = "minmax"
    percentile = "percentile"


def _progress() -> tuple[Any, Any]:
    """A rich status line on stderr and the callback that updates it."""
    status = err.status("starting", spinner="dots")

    def say(msg: str) -> None:
        status.update(escape(msg))
        log.debug(msg)

    return status, say


@app.command("export")
def export_cmd(
    model: ModelOpt = Variant.lsnet_t,
    weights: WeightsOpt = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Target format.")] = Format.onnx,
    int8: Annotated[bool, typer.Option("--int8", help="INT8 post-training quantization (CoreML: "
                                        "8-bit weights).")] = False,
    fp16: Annotated[bool, typer.Option("--fp16", help="fp16 weights (default for CoreML).")] = False,
    fp32: Annotated[bool, typer.Option("--fp32", help="fp32 (default except for CoreML).")] = False,
    w8a8: Annotated[bool, typer.Option("--w8a8", help="CoreML: int8 weights and activations, "
                                        "calibrated in PyTorch.")] = False,
    calib: Annotated[Path | None, typer.Option("--calib", help="Calibration image folder "
                                               "(default: calibration/).")] = None,
    calib_size: Annotated[int | None, typer.Option("--calib-size", min=1,
                                                   help="Use at most N calibration images.")] = None,
    calib_method: Annotated[CalibMethod, typer.Option("--calib-method")] = CalibMethod.minmax,
    val: Annotated[Path | None, typer.Option("--val", help="Validation image folder (default: "
                                             "every 4th image of the calibration folder).")] = None,
    img_size: ImgSizeOpt = 224,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Static batch size.")] = 1,
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch")] = False,
    image_input: Annotated[bool | None, typer.Option(
        "--image-input/--tensor-input", help="RGB 0..255 image input with the normalization "
        "inside the model (default for CoreML), or the normalized float tensor (default "
        "otherwise).", show_default=False)] = None,
    classifier: Annotated[bool | None, typer.Option(
        "--classifier/--logits", help="CoreML: classifier with class labels and probabilities "
        "(default for 1000-class models), or the logits array.", show_default=False)] = None,
    ios: Annotated[IosTarget | None, typer.Option(
        "--ios", help="CoreML minimum deployment target (default 17).")] = None,
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset.")] = 18,
    layout: Annotated[Layout | None, typer.Option(
        "--layout", help="Input layout (default: nhwc for TFLite, nchw for ONNX).")] = None,
    io: Annotated[IoType | None, typer.Option(
        "--io", help="TFLite INT8 input/output tensor type (default int8; the quantization "
        "parameters are in the sidecar).")] = None,
    min_cosine: Annotated[float | None, typer.Option(
        "--min-cosine", help="INT8/fp16 gate: mean logit cosine vs PyTorch (default 0.98 "
        "for INT8, 0.999 for fp16).")] = None,
    int8_exclude: Annotated[list[str] | None, typer.Option(
        "--int8-exclude", help="Op group or node kept in float (repeatable), or 'auto'.")] = None,
    output_dir: Annotated[Path | None, typer.Option("--output-dir", "-o",
                                                    help="Default: export/.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing artifacts.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Export (reparameterized) LSNet and validate every artifact against PyTorch."""
    from .pipeline import export

    chosen = [name for name, on in (("int8", int8), ("fp16", fp16), ("fp32", fp32),
                                    ("w8a8", w8a8)) if on]
    if len(chosen) > 1:
        raise UnsupportedOptionError(f"--{' and --'.join(chosen)} are exclusive")
    precision = chosen[0] if chosen else None
    from .api import OFFICIAL

    status, say = _progress()
    failed: ValidationFailedError | None = None
    with status:
        try:
            artifacts = export(
                model.value, fmt.value, weights=weights if weights else OFFICIAL,
                precision=precision, img_size=img_size, batch=batch,
                dynamic_batch=dynamic_batch, image_input=image_input, opset=opset, calib=calib,
                calib_size=calib_size, calib_method=calib_method.value, val=val,
                min_cosine=min_cosine, int8_exclude=tuple(int8_exclude or ()),
                layout=layout.value if layout else None, io=io.value if io else None,
                ios=int(ios.value) if ios else None, classifier=classifier,
                output_dir=output_dir, force=force, progress=say,
            )
        except ValidationFailedError as e:
            failed, artifacts = e, list(e.artifacts)  # type: ignore[arg-type]
    if as_json:
        _emit_json({"model": model.value, "artifacts": [_artifact_json(a) for a in artifacts]})
    else:
        for a in artifacts:
            label = "" if a.metadata.get("weights_kind") != "random" else "  [RANDOM weights]"
            out.print(f"{escape(str(a.path))}  {a.size_bytes / 1e6:.1f} MB{label}")
            out.print(f"  {escape(a.validation['summary'])}")
    if failed is not None:
        raise failed


def _artifact_json(a: Any) -> dict[str, Any]:
    return {"path": str(a.path), "format": a.format, "precision": a.precision,
            "size_bytes": a.size_bytes, "sha256": a.sha256, "passed": a.passed,
            "validation": a.validation, "weights_kind": a.metadata.get("weights_kind")}


@app.command("validate")
def validate_cmd(
    artifact: Annotated[Path, typer.Argument(help="An artifact exported by lsnet-deploy.")],
    weights: WeightsOpt = None,
    images: Annotated[Path | None, typer.Option("--images", help="Image folder (default: the "
                                                "held-out calibration photos).")] = None,
    min_cosine: Annotated[float | None, typer.Option("--min-cosine")] = None,
    compute_units: Annotated[ComputeUnits | None, typer.Option(
        "--compute-units", help="CoreML on macOS: the compute units to run on (default ALL).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-run the artifact-vs-PyTorch comparison of an exported artifact (CoreML packages:
    on macOS; elsewhere they are re-checked structurally)."""
    from .pipeline import validate

    status, say = _progress()
    with status:
        say(f"validating {artifact.name}")
        result = validate(artifact, weights=weights if weights else ..., images=images,
                          min_cosine=min_cosine,
                          compute_units=compute_units.value if compute_units else None)
    if as_json:
        _emit_json(result)
    else:
        out.print(f"{escape(str(artifact))}: {escape(result['validation']['summary'])}")
    if not result["passed"]:
        raise ValidationFailedError(f"{artifact.name}: {result['validation']['summary']}")


@app.command("quant-report")
def quant_report_cmd(
    model: ModelOpt = Variant.lsnet_t,
    weights: WeightsOpt = None,
    img_size: ImgSizeOpt = 224,
    calib: Annotated[Path | None, typer.Option("--calib")] = None,
    calib_size: Annotated[int | None, typer.Option("--calib-size", min=1)] = None,
    calib_method: Annotated[CalibMethod, typer.Option("--calib-method")] = CalibMethod.minmax,
    val: Annotated[Path | None, typer.Option("--val")] = None,
    fmt: Annotated[Format, typer.Option(
        "--format", "-f", help="onnx (ONNX Runtime QDQ) or tflite (PT2E, measured on the "
        "fake-quantized model).")] = Format.onnx,
    as_json: JsonOpt = False,
) -> None:
    """INT8 sensitivity per op group: quantize one group at a time, and all but one group,
    and compare the logits with PyTorch."""
    from .api import OFFICIAL
    from .pipeline import quant_report

    status, say = _progress()
    with status:
        rep = quant_report(model.value, weights=weights if weights else OFFICIAL,
                           img_size=img_size, calib=calib, calib_size=calib_size,
                           calib_method=calib_method.value, val=val, progress=say,
                           format=fmt.value)
    if as_json:
        _emit_json(rep)
        return
    out.print(f"[bold]{model.value}[/bold] {rep['format']} INT8 sensitivity "
              f"({rep['calibration_method']}, {escape(rep['calibration'])}; validated on "
              f"{rep['n_validation_images']} images)")
    out.print(f"fp32 cosine {rep['fp32_cosine']:.5f}; full INT8 cosine "
              f"{rep['full_int8_cosine']:.5f}, top-1 agreement {rep['full_int8_top1']:.0%}")
    t = Table(title="mean logit cosine vs PyTorch")
    for col in ("group", "nodes", "only this group INT8", "all but this group INT8",
                "description"):
        t.add_column(col)
    for g in sorted(rep["groups"], key=lambda r: r["only_cosine"]):
        t.add_row(g["group"], str(g["nodes"]), f"{g['only_cosine']:.5f}",
                  f"{g['without_cosine']:.5f}", g["description"])
    out.print(t)
    out.print("keep groups in float with: lsnet-deploy export --int8 --int8-exclude GROUP "
              f"(repeatable) --format {rep['format']}, or --int8-exclude auto")


def _mixers(stage_index: int, depth: int) -> str:
    if depth == 0:
        return "-"
    odd = "Attention" if stage_index == 3 else "LSConv"
    n_even, n_odd = (depth + 1) // 2, depth // 2
    parts = [f"{n_even}x RepVGGDW+SE"] + ([f"{n_odd}x {odd}"] if n_odd else [])
    return ", ".join(parts) + " (+FFN each)"


@app.command("predict")
def predict_cmd(
    images: Annotated[list[Path], typer.Argument(help="Image files to classify.")],
    model: ModelOpt = Variant.lsnet_t,
    weights: WeightsOpt = None,
    img_size: ImgSizeOpt = 224,
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=1000)] = 5,
    as_json: JsonOpt = False,
) -> None:
    """Print the top-k ImageNet classes of each image."""
    from .api import predict

    net = _load(model, weights, img_size, reparam=True)
    preds = predict(net, list(images), top_k=top_k)
    source = net.weights_source
    if as_json:
        _emit_json({
            "variant": model.value,
            "weights": {"kind": source.kind, "path": source.path, "sha256": source.sha256},
            "predictions": [
                {"image": p.path, "top": [{"index": i, "name": n, "prob": pr} for i, n, pr in p.top]}
                for p in preds
            ],
        })
        return
    out.print(f"[bold]{model.value}[/bold]  weights: {escape(source.label)}")
    for p in preds:
        out.print(escape(p.path))
        for rank, (idx, name, prob) in enumerate(p.top, 1):
            out.print(escape(f"  {rank}. {name:<32} {prob:6.1%}  (class {idx})"))


# The benchmark commands live in their own module; imported here, after everything they use
# from this module is defined.
from .cli_bench import bench_app, report_cmd  # noqa: E402

app.add_typer(bench_app, name="bench")
app.command("report")(report_cmd)


def _exit_code(exc: LsnetDeployError) -> int:
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]  # type: ignore[index]
    return 1


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: runs the app, maps known errors to one line + exit code."""
    debug = bool(os.environ.get("LSNET_DEPLOY_DEBUG"))
    try:
        rc = app(args=argv, standalone_mode=False)
    except LsnetDeployError as e:
        if debug:
            raise
        err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)
        sys.exit(_exit_code(e))
    except (KeyboardInterrupt, typer.Abort):
        err.print("interrupted")
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.TyperException as e:  # usage errors (bad option values, missing arguments)
        show = getattr(e, "show", None)
        if callable(show):
            show()
        else:
            err.print(f"error: {e}", highlight=False)
        sys.exit(int(getattr(e, "exit_code", 2)))
    except Exception as e:  # a bug or an unexpected environment: still one line
        if debug:
            raise
        err.print(
            f"[red]internal error:[/red] {escape(type(e).__name__)}: {escape(str(e))} "
            "(set LSNET_DEPLOY_DEBUG=1 for the traceback)",
            highlight=False,
        )
        sys.exit(1)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
