"""What can be checked in a Core ML ML Program without running it (any OS): the MIL program's
op histogram, tensor ranks, weight dtypes and class labels (:func:`mil_summary`,
:func:`class_labels`), the inputs and outputs the package declares (:func:`package_io`), and
the structural checks of an exported package against its IO spec (:func:`structural_checks`,
:func:`structural_summary`).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from ..deps import require
from ..errors import ValidationFailedError
from ..metadata import io_metadata, tensor_entry
from ..spec import IOSpec

__all__ = ["IOS_SPEC_VERSION", "check_class_labels", "class_labels", "expected_class_labels",
           "mil_summary", "package_io", "probability_floor", "require_coremltools",
           "structural_checks", "structural_summary"]

IOS_SPEC_VERSION = {16: 7, 17: 8, 18: 9}
"""Minimum deployment target -> Core ML specification version of an ML Program."""


def require_coremltools() -> Any:
    """``coremltools``, or :class:`~lsnet_deploy.errors.MissingDependencyError`."""
    [ct] = require("coreml", "coremltools", what="CoreML export")
    return ct


def expected_class_labels(num_classes: int) -> list[str]:
    """The labels lsnet-deploy writes: the ImageNet names for 1000 classes, else ``class_i``."""
    if num_classes == 1000:
        from ..labels import imagenet_classes

        return list(imagenet_classes())
    return [f"class_{i}" for i in range(num_classes)]


def _blocks(spec: Any) -> list[Any]:
    out = []

    def walk(block: Any) -> None:
        out.append(block)
        for op in block.operations:
            for inner in op.blocks:
                walk(inner)

    for function in spec.mlProgram.functions.values():
        for block in function.block_specializations.values():
            walk(block)
    return out


def class_labels(spec: Any) -> list[str] | None:
    """The label list of the program's ``classify`` op, in class-index order (``None``: no
    classifier)."""
    consts: dict[str, list[str]] = {}
    for block in _blocks(spec):
        for op in block.operations:
            if op.type == "const" and "val" in op.attributes:
                consts[op.outputs[0].name] = _strings(op.attributes["val"])
            elif op.type == "classify" and "classes" in op.inputs:
                labels: list[str] = []
                for arg in op.inputs["classes"].arguments:
                    labels += consts.get(arg.name, []) if arg.name else _strings(arg.value)
                return labels
    return None


def _strings(value: Any) -> list[str]:
    imm = value.immediateValue
    if imm.HasField("list"):
        return [s for v in imm.list.values for s in v.immediateValue.tensor.strings.values]
    if imm.HasField("tensor"):
        return list(imm.tensor.strings.values)
    return []


def probability_floor(spec: Any) -> float:
    """The log-probability floor of a classifier: half the smallest positive value of the type
    its softmax is computed in (``2**-25`` for fp16, ``2**-150`` for fp32). A probability the
    package reports as 0 is below it; taking ``log(0)`` as ``log(floor)`` compares the
    classes whose probability underflowed (fp16: ``p < 3e-8``, common on confident images)
    at the best value the package can state, instead of an arbitrary ``-inf`` stand-in."""
    from coremltools.proto import MIL_pb2

    producer: dict[str, Any] = {}
    probabilities = None
    for block in _blocks(spec):
        for op in block.operations:
            for out in op.outputs:
                producer[out.name] = op
            if op.type == "classify" and "probabilities" in op.inputs:
                probabilities = op.inputs["probabilities"].arguments[0].name
    op = producer.get(probabilities or "")
    while op is not None and op.type == "cast" and "x" in op.inputs:
        op = producer.get(op.inputs["x"].arguments[0].name)
    fp16 = op is not None and op.outputs[0].type.tensorType.dataType == MIL_pb2.FLOAT16
    return 2.0**-25 if fp16 else 2.0**-150


def check_class_labels(spec: Any, name: str) -> None:
    """Raise :class:`ValidationFailedError` unless the classifier's labels are the expected
    ones (:func:`expected_class_labels`) in order: a permuted list names the wrong class for
    every image of the swapped classes while the probabilities stay right."""
    labels = class_labels(spec) or []
    expected = expected_class_labels(len(labels))
    if labels != expected:
        i = next((k for k, (a, b) in enumerate(zip(labels, expected, strict=True)) if a != b), 0)
        raise ValidationFailedError(
            f"{name}: the classifier's class labels are not the expected list: label {i} is "
            f"{labels[i]!r}, expected {expected[i]!r} (re-export the package)")


def mil_summary(spec: Any) -> dict[str, Any]:
    """Op histogram, highest tensor rank, weight dtypes and class-label count of an ML Program.

    Walks every function and block (nested blocks included). The weight dtype of a ``conv`` or
    ``linear`` op is the dtype of the constant feeding its ``weight`` input: ``FLOAT16`` /
    ``FLOAT32`` for a plain ``const``, the stored data type (``INT8``) when the weight comes out
    of a ``constexpr_*`` dequantization op.
    """
    from coremltools.proto import MIL_pb2

    ops: Counter[str] = Counter()
    weights: Counter[str] = Counter()
    max_rank = 0
    const_dtype: dict[str, str] = {}
    const_len: dict[str, int] = {}
    weight_inputs: list[str] = []
    label_inputs: list[str] = []
    inline_labels: list[int] = []

    def dtype_name(value_type: Any) -> str:
        return str(MIL_pb2.DataType.Name(value_type.tensorType.dataType))

    def walk(block: Any) -> None:
        nonlocal max_rank
        for op in block.operations:
            ops[op.type] += 1
            for out in op.outputs:
                if out.type.HasField("tensorType"):
                    max_rank = max(max_rank, int(out.type.tensorType.rank))
            if op.type == "const" and "val" in op.attributes:
                val = op.attributes["val"]
                if val.type.HasField("tensorType"):
                    const_dtype[op.outputs[0].name] = dtype_name(val.type)
                    dims = val.type.tensorType.dimensions
                    if len(dims) == 1:
                        const_len[op.outputs[0].name] = int(dims[0].constant.size)
            elif op.type.startswith("constexpr_"):
                for name in ("data", "quantized_data", "indices"):
                    if name in op.attributes:  # iOS 16: operands are attributes
                        const_dtype[op.outputs[0].name] = dtype_name(op.attributes[name].type)
                        break
                    if name in op.inputs:  # iOS 18: operands are inputs
                        [arg] = op.inputs[name].arguments
                        const_dtype[op.outputs[0].name] = (
                            const_dtype.get(arg.name, "computed") if arg.name
                            else dtype_name(arg.value.type))
                        break
            if op.type in ("conv", "linear") and "weight" in op.inputs:
                weight_inputs.extend(a.name for a in op.inputs["weight"].arguments)
            if op.type == "classify" and "classes" in op.inputs:
                for arg in op.inputs["classes"].arguments:
                    if arg.name:
                        label_inputs.append(arg.name)
                    elif arg.HasField("value"):  # the labels are stored inline, as a list
                        imm = arg.value.immediateValue
                        if imm.HasField("list"):
                            inline_labels.append(len(imm.list.values))
                        elif imm.HasField("tensor"):
                            inline_labels.append(len(imm.tensor.strings.values))
            for inner in op.blocks:
                walk(inner)

    for function in spec.mlProgram.functions.values():
        for block in function.block_specializations.values():
            walk(block)
    for name in weight_inputs:
        weights[const_dtype.get(name, "computed")] += 1
    labels = sum(const_len.get(name, 0) for name in label_inputs) + sum(inline_labels)
    return {"op_histogram": dict(ops.most_common()), "max_rank": max_rank,
            "weight_dtypes": dict(weights.most_common()), "class_labels": labels}


def structural_checks(path: Path, spec: IOSpec, precision: str, ios: int,
                      classifier: bool) -> dict[str, Any]:
    """What can be validated without running the model (any OS): reload, spec version,
    input/output descriptions, MIL op histogram, weight dtypes, rank <= 5, metadata.

    Returns ``{"checks": {name: bool}, "details": {...}, "passed": bool}``.
    """
    ct = require_coremltools()
    model = ct.models.MLModel(str(path), skip_model_load=True)
    mspec = model.get_spec()
    summary = mil_summary(mspec)
    desc = mspec.description
    inp = desc.input[0]
    h, w = spec.img_size
    if spec.value_range == "0..255":
        it = inp.type.imageType
        input_ok = (inp.type.WhichOneof("Type") == "imageType" and it.width == w
                    and it.height == h
                    and ct.proto.FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(
                        it.colorSpace) == "RGB")
    else:
        shape = list(inp.type.multiArrayType.shape)
        input_ok = inp.type.WhichOneof("Type") == "multiArrayType" and shape == [
            spec.batch or 1, 3, h, w]
    out_names = [o.name for o in desc.output]
    if classifier:
        output_ok = (desc.predictedFeatureName == "classLabel"
                     and {"classLabel", "classLabel_probs"} <= set(out_names)
                     and class_labels(mspec) == expected_class_labels(spec.num_classes))
    else:
        output_ok = out_names == list(spec.output_names)
    dtypes = summary["weight_dtypes"]
    expected = {"fp16": {"FLOAT16"}, "fp32": {"FLOAT32"}, "int8": {"INT8", "UINT8"},
                "w8a8": {"INT8", "UINT8"}}[precision]
    weights_ok = bool(dtypes) and set(dtypes) <= expected  # every conv / linear weight
    meta = dict(mspec.description.metadata.userDefined)
    checks = {
        "reloads": True,
        "spec_version": mspec.specificationVersion == IOS_SPEC_VERSION[ios],
        "ml_program": mspec.WhichOneof("Type") == "mlProgram",
        "input": bool(input_ok),
        "outputs": bool(output_ok),
        "weights": bool(weights_ok),
        "rank_le_5": summary["max_rank"] <= 5,
        "activations": (summary["op_histogram"].get("quantize", 0) > 0) == (precision == "w8a8"),
        "metadata": bool(desc.metadata.author and desc.metadata.license
                         and desc.metadata.versionString and desc.metadata.shortDescription),
    }
    details = {"spec_version": mspec.specificationVersion, "inputs": [inp.name],
               "outputs": out_names, **summary, "user_defined_metadata_keys": sorted(meta)}
    return {"checks": checks, "details": details, "passed": all(checks.values())}

_ARRAY_DTYPES = {"FLOAT32": "float32", "FLOAT16": "float16", "DOUBLE": "float64",
                 "INT32": "int32", "INT8": "int8"}

_FEATURE_DTYPES = {"stringType": "string", "dictionaryType": "dictionary"}


def package_io(description: Any, batch: int) -> dict[str, Any]:
    """The metadata's ``inputs`` / ``outputs`` as the package declares them: an ``imageType``
    is 8-bit RGB pixels ``[batch, 3, H, W]`` (``uint8``), a multi-array has its own data type
    (an fp16 program of iOS 16+ takes and returns ``float16`` arrays) and shape; the
    classifier's label is a ``string`` and its probabilities a ``dictionary`` (label ->
    probability), both of shape ``[]``."""
    from coremltools.proto import FeatureTypes_pb2

    array_types = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType

    def entry(feature: Any) -> dict[str, Any]:
        kind = feature.type.WhichOneof("Type")
        if kind == "imageType":
            image = feature.type.imageType
            return tensor_entry(feature.name, [batch, 3, int(image.height), int(image.width)],
                                "uint8")
        if kind == "multiArrayType":
            array = feature.type.multiArrayType
            name = array_types.Name(array.dataType)
            return tensor_entry(feature.name, [int(s) for s in array.shape],
                                _ARRAY_DTYPES.get(name, name.lower()))
        return tensor_entry(feature.name, [], _FEATURE_DTYPES.get(kind, str(kind)))

    return io_metadata([entry(f) for f in description.input],
                       [entry(f) for f in description.output])


def structural_summary(result: dict[str, Any], fake: dict[str, Any] | None) -> str:
    failed = [k for k, ok in result["checks"].items() if not ok]
    status = "PASS" if result["passed"] else "FAIL"
    return (f"{status} structural checks ({len(result['checks'])}: reload, spec "
            f"version {result['details']['spec_version']}, I/O, weights "
            f"{result['details']['weight_dtypes']}, max rank "
            f"{result['details']['max_rank']}, metadata)"
            + (f"; failed: {', '.join(failed)}" if failed else "")
            + (f"; W8A8 fake-quant mean cosine {fake['mean_cosine']:.5f} "
               f"({fake['gate']})" if fake else "")
            + "; structural record only (the numeric validation runs the package: Core ML "
            "on macOS, the reference executor elsewhere)")
