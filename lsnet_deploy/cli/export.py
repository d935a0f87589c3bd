"""``lsnet-deploy export``, ``validate`` and ``quant-report``: artifacts written, checked again,
and the INT8 sensitivity per op group."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ..aarch64.environment import CPU_PARTS, DEFAULT_CPU
from ..api import OFFICIAL
from ..errors import UnsupportedOptionError, ValidationFailedError
from ..pipeline import ExportRequest, quant_report, run_export, validate
from ..pipeline.cross_arch import ARCHES, DEFAULT_EMULATED_IMAGES
from ..quantize.headroom import INT16_HEADROOM, MAX_HEADROOM
from ._common import (
    DEFAULT_CALIB_METHOD,
    DEFAULT_VARIANT,
    CalibMethodOpt,
    CalibOpt,
    CalibSizeOpt,
    ComputeUnits,
    Format,
    ImgSizeOpt,
    IosTarget,
    IoType,
    JsonOpt,
    Layout,
    ModelOpt,
    PeerName,
    SensitivityFormat,
    TestModelOpt,
    ValOpt,
    W8a8Scheme,
    WeightsOpt,
    WorkProgress,
    choose_model,
    emit_json,
    log,
    out,
    print_table,
)

__all__ = ["export_cmd", "quant_report_cmd", "validate_cmd"]

Arch = Enum("Arch", {a: a for a in ARCHES}, type=str)  # type: ignore[misc]
"""Where ``validate`` runs the artifact: this machine, or aarch64 kernels under qemu-user."""
EmulatedCpu = Enum("EmulatedCpu", {c: c for c in CPU_PARTS}, type=str)  # type: ignore[misc]
"""The qemu CPU models ``validate --arch aarch64`` can emulate."""

DEFAULT_FORMAT = Format("onnx")
DEFAULT_SENSITIVITY_FORMAT = SensitivityFormat("onnx")

FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Target format.")]
Int8Opt = Annotated[bool, typer.Option("--int8", help="INT8 post-training quantization "
                                       "(CoreML: 8-bit weights).")]
Fp16Opt = Annotated[bool, typer.Option("--fp16", help="fp16 weights (default for CoreML).")]
Fp32Opt = Annotated[bool, typer.Option("--fp32", help="fp32 (default except for CoreML).")]
W8a8Opt = Annotated[bool, typer.Option("--w8a8", help="CoreML: int8 weights and activations, "
                                       "calibrated in PyTorch.")]
BatchOpt = Annotated[int, typer.Option("--batch", min=1, help="Static batch size.")]
DynamicBatchOpt = Annotated[bool, typer.Option("--dynamic-batch")]
ImageInputOpt = Annotated[bool | None, typer.Option(
    "--image-input/--tensor-input", help="RGB 0..255 image input with the normalization "
    "inside the model (default for CoreML and TFLite), or the normalized float tensor "
    "(default otherwise).", show_default=False)]
ClassifierOpt = Annotated[bool | None, typer.Option(
    "--classifier/--logits", help="CoreML and TFLite: classifier with softmax probabilities "
    "(and class labels; default for 1000-class models with float outputs), or the raw "
    "logits.",
    show_default=False)]
IosOpt = Annotated[IosTarget | None, typer.Option(
    "--ios", help="CoreML minimum deployment target (default 17).")]
W8a8SchemeOpt = Annotated[W8a8Scheme | None, typer.Option(
    "--w8a8-scheme", help="CoreML --w8a8: symmetric int8 (default; Apple's scheme for the "
    "Neural Engine) or affine (zero points: higher fidelity, Neural Engine speed unmeasured).")]
OpsetOpt = Annotated[int | None, typer.Option("--opset", help="ONNX opset (default 18).")]
OrtOpt = Annotated[bool, typer.Option(
    "--ort", help="ONNX: also write the ONNX Runtime Mobile .ort file and its "
    "required_operators.config.")]
Int8Int16Opt = Annotated[list[str] | None, typer.Option(
    "--int8-int16", help="INT8: op group (or node name) whose activations are int16 "
    "instead of 8-bit (w8a16; repeatable; 'all' for every activation). ONNX takes groups, "
    "or 'auto': add groups, cheap ones first, until --min-cosine is met (full integer, where "
    "--int8-exclude auto keeps them in float); TFLite takes 'all' (LiteRT's 16x8, through "
    "ai-edge-quantizer). Higher fidelity, for "
    "accelerators with int16 kernels: on a CPU, ONNX Runtime runs those ops in float and "
    "LiteRT in its reference kernels, slower than 8-bit.", show_default=False)]
Int16HeadroomOpt = Annotated[float | None, typer.Option(
    "--int16-headroom", help="With --int8-int16: each int16 activation range spans this many "
    f"times the range the calibration photos reached (default {INT16_HEADROOM:g}; 1 to "
    f"{MAX_HEADROOM:g}), so a photo that reaches up to that multiple of them is not clipped. "
    "1 for a calibration set as varied as what the model will see.", show_default=False)]
EqualizeOpt = Annotated[bool, typer.Option(
    "--equalize/--no-equalize", help="8-bit INT8 / W8A8: quantize an exactly channel-equalized "
    "copy of the fused model (residual stream, then conv pairs; float logits unchanged). "
    "--no-equalize quantizes the fused model as is. --int8-int16 all (int16 everywhere, "
    "TFLite 16x8 included) is never equalized.")]
GptqOpt = Annotated[bool | None, typer.Option(
    "--gptq/--no-gptq", help="INT8 (ONNX, TFLite, ExecuTorch): round the weights onto the "
    "int8 grid the backends use with GPTQ (each rounding chosen for the layer's output on "
    "the calibration photos; the backend then keeps them as they are). Default: on where "
    "activations are int16 (--int8-int16), off for 8-bit activations (there it moved the "
    "worst photo's cosine both ways). Not Core ML W8A8 (another grid).", show_default=False)]
LayoutOpt = Annotated[Layout | None, typer.Option(
    "--layout", help="Input layout (default: nhwc for TFLite, nchw for ONNX).")]
IoOpt = Annotated[IoType | None, typer.Option(
    "--io", help="TFLite INT8 output (and tensor input) type: float32 (default), or the "
    "raw quantized forms uint8 / int8 (their quantization parameters are in the sidecar).")]
MinCosineOpt = Annotated[float | None, typer.Option(
    "--min-cosine", help="INT8/fp16 gate: mean logit cosine vs PyTorch, in [0, 1] (default "
    "0.98 for INT8, 0.999 for fp16; 0 turns the gate off).")]
MinPhotoCosineOpt = Annotated[float | None, typer.Option(
    "--min-photo-cosine", help="INT8/fp16: a second gate, the logit cosine every validation "
    "photo must reach (the worst photo), in [0, 1] (default: none); --int8-exclude auto and "
    "--int8-int16 auto then search until both gates are met.", show_default=False)]
Int8ExcludeOpt = Annotated[list[str] | None, typer.Option(
    "--int8-exclude", help="Op group or node kept in float (repeatable), or 'auto'.")]
OutputDirOpt = Annotated[Path | None, typer.Option("--output-dir", "-o", help="Default: export/.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite existing artifacts.")]


def _precision(**flags: bool) -> str | None:
    """The one precision flag given (``--int8`` -> ``int8``), ``None`` for none."""
    chosen = [name for name, on in flags.items() if on]
    if len(chosen) > 1:
        raise UnsupportedOptionError(f"--{' and --'.join(chosen)} are exclusive")
    return chosen[0] if chosen else None


PeerOpt = Annotated[PeerName | None, typer.Option(
    "--peer", help="Export a peer network instead of LSNet (random weights: for latency "
    "comparisons on a phone, e.g. 'bench android'), with the same options and validation.",
    show_default=False)]


def export_cmd(
    ctx: typer.Context,
    model: ModelOpt = DEFAULT_VARIANT,
    peer: PeerOpt = None,
    weights: WeightsOpt = None,
    fmt: FormatOpt = DEFAULT_FORMAT,
    int8: Int8Opt = False,
    fp16: Fp16Opt = False,
    fp32: Fp32Opt = False,
    w8a8: W8a8Opt = False,
    calib: CalibOpt = None,
    calib_size: CalibSizeOpt = None,
    calib_method: CalibMethodOpt = DEFAULT_CALIB_METHOD,
    val: ValOpt = None,
    img_size: ImgSizeOpt = 224,
    batch: BatchOpt = 1,
    dynamic_batch: DynamicBatchOpt = False,
    image_input: ImageInputOpt = None,
    classifier: ClassifierOpt = None,
    ios: IosOpt = None,
    w8a8_scheme: W8a8SchemeOpt = None,
    opset: OpsetOpt = None,
    ort: OrtOpt = False,
    int8_int16: Int8Int16Opt = None,
    int16_headroom: Int16HeadroomOpt = None,
    equalize: EqualizeOpt = True,
    gptq: GptqOpt = None,
    layout: LayoutOpt = None,
    io: IoOpt = None,
    min_cosine: MinCosineOpt = None,
    min_photo_cosine: MinPhotoCosineOpt = None,
    int8_exclude: Int8ExcludeOpt = None,
    output_dir: OutputDirOpt = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
    test_model: TestModelOpt = None,
) -> None:
    """Export (reparameterized) LSNet and validate every artifact against PyTorch."""
    variant = choose_model(model, test_model)
    if peer is not None:
        source = ctx.get_parameter_source("model")  # typer's click: compare by name
        given = getattr(source, "name", None) == "COMMANDLINE"
        if given or test_model is not None:
            raise UnsupportedOptionError("--peer exports a peer network instead of LSNet: "
                                         "give --peer or --model, not both")
        variant = peer.value
    request = ExportRequest.build(
        variant, fmt.value, weights=weights or OFFICIAL,
        precision=_precision(int8=int8, fp16=fp16, fp32=fp32, w8a8=w8a8), img_size=img_size,
        batch=batch, dynamic_batch=dynamic_batch, image_input=image_input, opset=opset,
        calib=calib, calib_size=calib_size, calib_method=calib_method.value, val=val,
        min_cosine=min_cosine, min_photo_cosine=min_photo_cosine,
        int8_exclude=int8_exclude or (),
        layout=layout.value if layout else None, io=io.value if io else None,
        ios=int(ios.value) if ios else None, classifier=classifier, ort=ort or None,
        w8a8_scheme=w8a8_scheme.value if w8a8_scheme else None,
        int8_int16=tuple(int8_int16) if int8_int16 else None, int16_headroom=int16_headroom,
        equalize=equalize, gptq=gptq, output_dir=output_dir, force=force)
    failed: ValidationFailedError | None = None
    with WorkProgress() as say:
        try:
            artifacts = run_export(request, progress=say)
        except ValidationFailedError as e:
            failed, artifacts = e, list(e.artifacts)  # type: ignore[arg-type]
    log.info("%s", say.summary())
    if as_json:
        emit_json({"model": variant, "artifacts": [_artifact_json(a) for a in artifacts]})
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


def validate_cmd(
    artifact: Annotated[Path, typer.Argument(help="An artifact exported by lsnet-deploy.")],
    weights: WeightsOpt = None,
    images: Annotated[Path | None, typer.Option("--images", help="Image folder (default: the "
                                                "held-out calibration photos).")] = None,
    min_cosine: Annotated[float | None, typer.Option(
        "--min-cosine", help="Gate of a reduced precision, in [0, 1] (default: the one the "
        "artifact was exported with).")] = None,
    min_photo_cosine: Annotated[float | None, typer.Option(
        "--min-photo-cosine", help="Gate on every photo's cosine, in [0, 1] (default: the one "
        "the artifact was exported with, if any).", show_default=False)] = None,
    compute_units: Annotated[ComputeUnits | None, typer.Option(
        "--compute-units", help="CoreML on macOS: the compute units to run on (default ALL).")
    ] = None,
    arch: Annotated[Arch, typer.Option(
        "--arch", help="host: this machine's runtime; aarch64: also the phone kernels (arm64 "
        "LiteRT / ONNX Runtime under qemu-user; set up once with lsnet-deploy setup-aarch64), "
        "compared with PyTorch and with the host run.")] = Arch("host"),
    max_images: Annotated[int | None, typer.Option(
        "--max-images", min=1, help="Validate on the first N images only (default: all; "
        f"{DEFAULT_EMULATED_IMAGES} with --arch aarch64, emulation is slow).",
        show_default=False)] = None,
    cpu: Annotated[EmulatedCpu | None, typer.Option(
        "--cpu", help=f"--arch aarch64: the emulated core (default {DEFAULT_CPU}).",
        show_default=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-run the artifact-vs-PyTorch comparison of an exported artifact, after checking its
    sidecar against it (CoreML packages: in Core ML on macOS, in the reference executor
    elsewhere; --arch aarch64: also on the aarch64 kernels of LiteRT / ONNX Runtime)."""
    with WorkProgress() as say:
        say(f"validating {artifact.name}")
        result = validate(artifact, weights=weights if weights else ..., images=images,
                          min_cosine=min_cosine, min_photo_cosine=min_photo_cosine,
                          compute_units=compute_units.value if compute_units else None,
                          arch=arch.value, max_images=max_images,
                          cpu=cpu.value if cpu else None, progress=say)
    log.info("%s", say.summary())
    if as_json:
        emit_json(result)
    else:
        out.print(f"{escape(str(artifact))}: {escape(result['validation']['summary'])}")
    if not result["passed"]:
        raise ValidationFailedError(f"{artifact.name}: {result['validation']['summary']}")


def quant_report_cmd(
    model: ModelOpt = DEFAULT_VARIANT,
    weights: WeightsOpt = None,
    img_size: ImgSizeOpt = 224,
    calib: CalibOpt = None,
    calib_size: CalibSizeOpt = None,
    calib_method: CalibMethodOpt = DEFAULT_CALIB_METHOD,
    val: ValOpt = None,
    fmt: Annotated[SensitivityFormat, typer.Option(
        "--format", "-f", help="onnx (ONNX Runtime QDQ) or tflite (PT2E, measured on the "
        "fake-quantized model).")] = DEFAULT_SENSITIVITY_FORMAT,
    equalize: EqualizeOpt = True,
    compare_equalize: Annotated[bool, typer.Option(
        "--compare-equalize", help="Also measure each group without the channel equalization "
        "(a second fp32 export; one more quantization per group): what it does per group.")
    ] = False,
    compare_gptq: Annotated[bool, typer.Option(
        "--compare-gptq", help="Also measure each group with the weights rounded by GPTQ (as "
        "export --gptq; a third fp32 export, one more quantization per group): what it does "
        "per group.")] = False,
    as_json: JsonOpt = False,
    test_model: TestModelOpt = None,
) -> None:
    """INT8 sensitivity per op group: quantize one group at a time, and all but one group,
    and compare the logits with PyTorch."""
    variant = choose_model(model, test_model)
    with WorkProgress() as say:
        rep = quant_report(variant, weights=weights or OFFICIAL, img_size=img_size,
                           calib=calib, calib_size=calib_size, calib_method=calib_method.value,
                           val=val, progress=say, format=fmt.value, equalize=equalize,
                           compare_equalize=compare_equalize, compare_gptq=compare_gptq)
    log.info("%s", say.summary())
    if as_json:
        emit_json(rep)
        return
    _print_quant_report(variant, rep)


def _cosine(value: float | None) -> str:
    """A table cell: the cosine, or ``-`` where the comparison does not apply."""
    return "-" if value is None else f"{value:.5f}"


def _print_quant_report(variant: str, rep: dict[str, Any]) -> None:
    out.print(f"[bold]{variant}[/bold] {rep['format']} INT8 sensitivity "
              f"({rep['calibration_method']}, {escape(rep['calibration'])}; validated on "
              f"{rep['n_validation_images']} images)")
    equalized = "channel-equalized" if rep.get("preparation") else "not equalized"
    out.print(f"fp32 cosine {rep['fp32_cosine']:.5f}; full INT8 cosine "
              f"{rep['full_int8_cosine']:.5f} ({equalized}), top-1 agreement "
              f"{rep['full_int8_top1']:.0%}")
    extra = [(key, label) for key, label in (("unequalized", "not equalized"),
                                              ("gptq", "weights rounded by GPTQ"))
             if f"full_int8_cosine_{key}" in rep]
    for key, label in extra:
        out.print(f"{label}: full INT8 cosine {rep[f'full_int8_cosine_{key}']:.5f}")
    t = Table(title="mean logit cosine vs PyTorch")
    for col in ("group", "nodes", "only this group INT8", "all but this group INT8",
                *(f"only this group, {label}" for _, label in extra), "description"):
        t.add_column(col)
    for g in sorted(rep["groups"], key=lambda r: r["only_cosine"]):
        t.add_row(g["group"], str(g["nodes"]), f"{g['only_cosine']:.5f}",
                  f"{g['without_cosine']:.5f}",
                  *(_cosine(g[f"only_cosine_{key}"]) for key, _ in extra),
                  g["description"])
    print_table(t)
    out.print("keep groups in float with: lsnet-deploy export --int8 --int8-exclude GROUP "
              f"(repeatable) --format {rep['format']}, or --int8-exclude auto")
