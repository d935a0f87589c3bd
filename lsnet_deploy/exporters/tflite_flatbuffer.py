"""Reading and editing ``.tflite`` flatbuffers without TensorFlow (``ai_edge_litert``'s schema).

* :func:`op_histogram`: operator name -> count over all subgraphs; custom ops appear as
  ``CUSTOM:<name>`` and TensorFlow (Flex / SELECT_TF_OPS) ops as ``FLEX:<name>``;
* :func:`non_builtin_ops`: the custom / Flex ops of a model (the stock runtime has none);
* :func:`embed_metadata` / :func:`read_metadata`: a JSON object stored as the model metadata
  entry ``lsnet_deploy`` (TFLite's ``Model.metadata``; any TFLite runtime ignores it); its
  values are plain JSON (``"img_size": [224, 224]``; files of lsnet-deploy before metadata
  schema 2 stored JSON-encoded strings there, ``"img_size": "[224, 224]"``);
* :func:`fold_transpose_pairs`: remove TRANSPOSE pairs that cancel (the converter leaves
  some in quantized graphs, where Q/DQ ops separated them while it folded transposes);
* :func:`constant_precision`: a model's precision judged by its weights;
* :func:`set_io_types`: give an int8 model float32 or uint8 inputs/outputs by adding a
  QUANTIZE (input side) and a DEQUANTIZE or QUANTIZE (output side) at the graph boundary, the
  way TensorFlow's ``modify_model_interface`` does for converter-made models;
* :func:`append_softmax`: the classifier head, a float SOFTMAX after the float32 logits;
* :func:`associated_files` / :func:`set_associated_files`: the files packed after the
  flatbuffer as a zip archive (TFLite Metadata's associated files, e.g. the labels). Every
  edit here keeps them: the model is re-serialized and the archive appended again.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ExportError

__all__ = [
    "METADATA_NAME",
    "append_softmax",
    "associated_files",
    "constant_precision",
    "embed_metadata",
    "fold_transpose_pairs",
    "io_details",
    "non_builtin_ops",
    "op_histogram",
    "op_name",
    "output_producer",
    "read_metadata",
    "rename_io",
    "set_associated_files",
    "set_io_types",
]

METADATA_NAME = "lsnet_deploy"

_TYPE_NAMES = {"float32": "FLOAT32", "int8": "INT8", "uint8": "UINT8"}


def _schema() -> Any:
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def _code(op_code: Any) -> int:
    # codes >= 127 live only in builtin_code; older files only fill the deprecated field
    return max(int(op_code.builtinCode), int(op_code.deprecatedBuiltinCode))


def op_name(op_code: Any) -> str:
    """The builtin name of an operator code (``CONV_2D``; ``CUSTOM:name`` / ``FLEX:name``)."""
    s = _schema()
    code = _code(op_code)
    if code == s.BuiltinOperator.CUSTOM:
        custom = op_code.customCode
        name = custom.decode() if isinstance(custom, bytes) else str(custom)
        return ("FLEX:" if name.startswith("Flex") else "CUSTOM:") + name
    names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    return names.get(code, f"UNKNOWN_{code}")


def _read(path: Path) -> Any:
    from ai_edge_litert.tools import flatbuffer_utils

    return flatbuffer_utils.read_model(str(path))


def _write(model: Any, path: Path, files: dict[str, bytes] | None = None) -> None:
    """Serialize ``model`` to ``path``, followed by the associated files ``files`` (default:
    those packed in ``path`` now, so an edit never drops them)."""
    from ai_edge_litert.tools import flatbuffer_utils

    if any(getattr(b, "offset", 0) > 1 for b in model.buffers or []):
        raise ExportError(f"{path}: models with external buffer offsets cannot be edited")
    if files is None:
        files = associated_files(path) if path.exists() else {}
    buffers = model.buffers
    model.buffers = [_AlignedBuffer(b) for b in buffers or []]
    try:
        flatbuffer_utils.write_model(model, str(path))
    finally:
        model.buffers = buffers
    if files:
        # zipfile's append mode on a file that is not an archive writes one after its end;
        # stored (not deflated): readers hand out views of the files inside the model buffer
        with open(path, "r+b") as f, zipfile.ZipFile(f, "a", zipfile.ZIP_STORED) as zf:
            for name, data in files.items():
                zf.writestr(name, data)


BUFFER_ALIGNMENT = 16
"""Where every constant's data starts in the file (the schema's ``force_align: 16``, what
LiteRT's converter writes): the runtime maps them in place only when each is aligned to its
element size, and copies the others to the heap with a warning (int64 biases of 16x8 files)."""


class _AlignedBuffer:
    """Packs a ``BufferT`` like the generated code, with its data vector aligned to
    :data:`BUFFER_ALIGNMENT` (the generated Python packer aligns it to 4 only)."""

    def __init__(self, buffer: Any) -> None:
        self.buffer = buffer

    def Pack(self, builder: Any) -> int:  # noqa: N802 (the flatbuffers object API's name)
        s = _schema()
        data = None
        if self.buffer.data is not None:
            data_in = self.buffer.data
            payload = (np.ascontiguousarray(data_in).view(np.uint8).tobytes()
                       if isinstance(data_in, np.ndarray) else bytes(bytearray(data_in)))
            builder.StartVector(1, len(payload), BUFFER_ALIGNMENT)
            builder.head -= len(payload)
            builder.Bytes[builder.head : builder.head + len(payload)] = payload
            builder.vectorNumElems = len(payload)
            data = builder.EndVector()
        s.BufferStart(builder)
        if data is not None:
            s.BufferAddData(builder, data)
        s.BufferAddOffset(builder, self.buffer.offset)
        s.BufferAddSize(builder, self.buffer.size)
        return int(s.BufferEnd(builder))


def associated_files(path: Path) -> dict[str, bytes]:
    """The files packed after the flatbuffer of ``path`` (name -> content; ``{}`` if none)."""
    data = io.BytesIO(Path(path).read_bytes())
    try:
        with zipfile.ZipFile(data) as zf:
            return {name: zf.read(name) for name in zf.namelist()}
    except zipfile.BadZipFile:
        return {}


def set_associated_files(path: Path, files: dict[str, bytes]) -> None:
    """Pack exactly ``files`` after the flatbuffer of ``path`` (replacing any packed before)."""
    _write(_read(path), path, dict(files))


def op_histogram(path: Path) -> dict[str, int]:
    """Operator name -> count over all subgraphs, most frequent first."""
    model = _read(path)
    names = [op_name(c) for c in model.operatorCodes or []]
    counts: Counter[str] = Counter()
    for graph in model.subgraphs or []:
        for op in graph.operators or []:
            counts[names[op.opcodeIndex]] += 1
    return dict(counts.most_common())


def non_builtin_ops(histogram: dict[str, int]) -> list[str]:
    """The custom and Flex ops of an :func:`op_histogram`."""
    return [name for name in histogram if name.startswith(("CUSTOM:", "FLEX:"))]


def embed_metadata(path: Path, metadata: dict[str, Any]) -> None:
    """Store ``metadata`` (JSON) as the model metadata entry :data:`METADATA_NAME`, replacing
    an earlier one."""
    s = _schema()
    model = _read(path)
    model.metadata = [m for m in model.metadata or [] if _name(m.name) != METADATA_NAME]
    buf = s.BufferT()
    buf.data = list(json.dumps(metadata, sort_keys=True).encode())
    model.buffers.append(buf)
    entry = s.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    _write(model, path)


def _name(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_metadata(path: Path) -> dict[str, Any]:
    """The JSON object stored by :func:`embed_metadata`, as stored (``{}`` if there is none)."""
    model = _read(path)
    for entry in model.metadata or []:
        if _name(entry.name) == METADATA_NAME:
            data = model.buffers[entry.buffer].data
            return dict(json.loads(bytes(bytearray(data)).decode()))
    return {}


def io_details(path: Path) -> dict[str, Any]:
    """Input/output tensors of the main subgraph: name, shape, type and (scale, zero point)."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = _read(path)
    graph = model.subgraphs[0]

    def describe(index: int) -> dict[str, Any]:
        t = graph.tensors[index]
        q = t.quantization
        quant = None
        if q is not None and q.scale is not None and len(q.scale) == 1:
            quant = [float(q.scale[0]), int(q.zeroPoint[0])]
        return {"name": _name(t.name), "shape": [int(d) for d in t.shape],
                "dtype": flatbuffer_utils.type_to_name(t.type).lower(), "quantization": quant}

    return {"inputs": [describe(i) for i in graph.inputs],
            "outputs": [describe(i) for i in graph.outputs]}


def _opcode_index(model: Any, code: int) -> int:
    s = _schema()
    for i, c in enumerate(model.operatorCodes):
        if _code(c) == code:
            return i
    oc = s.OperatorCodeT()
    oc.builtinCode = code
    oc.deprecatedBuiltinCode = min(code, s.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
    oc.version = 1
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


def _boundary_tensor(graph: Any, like: int, type_name: str, zp_shift: int,
                     rename_to: str | None = None) -> int:
    """A new activation tensor shaped like tensor ``like`` and taking its name: float32 (no
    quantization) or uint8 (same scale, zero point shifted by ``zp_shift``); ``like`` is renamed
    ``rename_to`` (default: its name + ``_int8`` or ``_int16``)."""
    import copy

    s = _schema()
    src = graph.tensors[like]
    t = s.TensorT()
    t.shape = copy.copy(src.shape)
    t.shapeSignature = copy.copy(src.shapeSignature)
    t.name = _name(src.name)
    t.buffer = 0  # the empty sentinel buffer: an activation
    t.type = getattr(s.TensorType, _TYPE_NAMES[type_name])
    if type_name != "float32":
        q = s.QuantizationParametersT()
        q.scale = list(src.quantization.scale)
        q.zeroPoint = [int(z) + zp_shift for z in src.quantization.zeroPoint]
        t.quantization = q
    interior = "_int16" if src.type == s.TensorType.INT16 else "_int8"
    src.name = rename_to if rename_to is not None else _name(src.name) + interior
    graph.tensors.append(t)
    return len(graph.tensors) - 1


def set_io_types(path: Path, input_type: str, output_type: str) -> None:
    """Re-type the boundary of an int8-I/O model: ``float32`` adds QUANTIZE (in) and
    DEQUANTIZE (out), from int8 or int16 (16x8); ``uint8`` adds QUANTIZE ops that shift the
    zero point by 128; ``int8`` leaves that side as it is (e.g. the uint8 pixel input of an
    image-input model). A boundary tensor that already has the asked type stays as it is (a
    mixed-precision model whose first or last op group is kept in float has float32 there).

    The interior keeps its int8 tensors; the signature is updated to the new tensors.
    """
    s = _schema()
    model = _read(path)
    graph = model.subgraphs[0]
    int8 = s.TensorType.INT8
    types = {"float32": s.TensorType.FLOAT32, "uint8": s.TensorType.UINT8}

    def retype(i: int, wanted: str) -> bool:
        t = graph.tensors[i]
        if wanted == "int8" or t.type == types[wanted]:
            return False
        integer = (int8, s.TensorType.INT16) if wanted == "float32" else (int8,)
        if t.type not in integer or t.quantization is None or not t.quantization.scale:
            raise ExportError(f"{path}: boundary tensor {_name(t.name)!r} is neither int8 nor "
                              f"{wanted}: it cannot be given the {wanted} type")
        return True

    retyped_in = {i for i in graph.inputs if retype(i, input_type)}
    retyped_out = {i for i in graph.outputs if retype(i, output_type)}
    quant = _opcode_index(model, s.BuiltinOperator.QUANTIZE)
    dequant = _opcode_index(model, s.BuiltinOperator.DEQUANTIZE)
    remap: dict[int, int] = {}
    new_inputs, head_ops = [], []
    for old in graph.inputs:
        if old not in retyped_in:
            new_inputs.append(old)
            continue
        new = _boundary_tensor(graph, old, input_type, 128 if input_type == "uint8" else 0)
        op = s.OperatorT()
        op.opcodeIndex = quant
        op.inputs, op.outputs = [new], [old]
        op.builtinOptionsType = s.BuiltinOptions.QuantizeOptions
        op.builtinOptions = s.QuantizeOptionsT()
        head_ops.append(op)
        new_inputs.append(new)
        remap[old] = new
    new_outputs, tail_ops = [], []
    for old in graph.outputs:
        if old not in retyped_out:
            new_outputs.append(old)
            continue
        new = _boundary_tensor(graph, old, output_type,
                               128 if output_type == "uint8" else 0)
        op = s.OperatorT()
        op.inputs, op.outputs = [old], [new]
        if output_type == "float32":
            op.opcodeIndex = dequant
            op.builtinOptionsType = s.BuiltinOptions.DequantizeOptions
            op.builtinOptions = s.DequantizeOptionsT()
        else:
            op.opcodeIndex = quant
            op.builtinOptionsType = s.BuiltinOptions.QuantizeOptions
            op.builtinOptions = s.QuantizeOptionsT()
        tail_ops.append(op)
        new_outputs.append(new)
        remap[old] = new
    graph.operators = head_ops + list(graph.operators) + tail_ops
    graph.inputs, graph.outputs = new_inputs, new_outputs
    _remap_signatures(model, remap)
    _write(model, path)


def _remap_signatures(model: Any, remap: dict[int, int]) -> None:
    for sig in model.signatureDefs or []:
        for tmap in (*(sig.inputs or []), *(sig.outputs or [])):
            tmap.tensorIndex = remap.get(tmap.tensorIndex, tmap.tensorIndex)


def append_softmax(path: Path, logits_name: str = "logits") -> None:
    """The classifier head: a SOFTMAX (beta 1) after the float32 output ``(B, classes)`` of
    the main subgraph, whose result becomes the output (the probabilities). The logits stay
    inside the graph as tensor ``logits_name``. An int8 model gets float32 outputs first
    (:func:`set_io_types`): the softmax then runs in float on the dequantized int8 logits."""
    s = _schema()
    model = _read(path)
    graph = model.subgraphs[0]
    if len(graph.outputs) != 1:
        raise ExportError(f"{path}: a classifier head needs one output, found "
                          f"{len(graph.outputs)}")
    old = int(graph.outputs[0])
    if graph.tensors[old].type != s.TensorType.FLOAT32 or len(graph.tensors[old].shape) != 2:
        raise ExportError(f"{path}: the classifier head needs float32 (batch, classes) logits")
    new = _boundary_tensor(graph, old, "float32", 0, rename_to=logits_name)
    op = s.OperatorT()
    op.opcodeIndex = _opcode_index(model, s.BuiltinOperator.SOFTMAX)
    op.inputs, op.outputs = [old], [new]
    op.builtinOptionsType = s.BuiltinOptions.SoftmaxOptions
    op.builtinOptions = s.SoftmaxOptionsT()
    op.builtinOptions.beta = 1.0
    graph.operators = [*graph.operators, op]
    graph.outputs = [new]
    _remap_signatures(model, {old: new})
    _write(model, path)


def output_producer(path: Path) -> str:
    """The name of the operator that writes the first output of the main subgraph
    (``SOFTMAX`` for a classifier head; ``""`` when an input is passed through)."""
    model = _read(path)
    graph = model.subgraphs[0]
    out = int(graph.outputs[0])
    for op in reversed(graph.operators or []):
        if out in [int(o) for o in op.outputs]:
            return op_name(model.operatorCodes[op.opcodeIndex])
    return ""


def rename_io(path: Path, input_names: list[str], output_names: list[str]) -> None:
    """Name the boundary tensors and signature entries after the IO spec (``image``,
    ``logits``) instead of the converter's ``serving_default_args_0`` / ``output_0``."""
    model = _read(path)
    graph = model.subgraphs[0]
    renames: dict[int, str] = {}
    for idx, name in zip(graph.inputs, input_names, strict=False):
        renames[int(idx)] = name
    for idx, name in zip(graph.outputs, output_names, strict=False):
        renames[int(idx)] = name
    for idx, name in renames.items():
        graph.tensors[idx].name = name
    for sig in model.signatureDefs or []:
        for tmap in (*(sig.inputs or []), *(sig.outputs or [])):
            if int(tmap.tensorIndex) in renames:
                tmap.name = renames[int(tmap.tensorIndex)]
    _write(model, path)


def _perm(model: Any, graph: Any, tensor_index: int) -> list[int] | None:
    """The constant permutation a TRANSPOSE reads (``None`` if it is not a constant)."""
    buf = model.buffers[graph.tensors[tensor_index].buffer]
    if buf.data is None or len(buf.data) == 0:
        return None
    return [int(v) for v in np.frombuffer(bytes(bytearray(buf.data)), dtype=np.int32)]


def _same_quantization(a: Any, b: Any) -> bool:
    qa, qb = a.quantization, b.quantization
    sa = list(qa.scale) if qa is not None and qa.scale is not None else []
    sb = list(qb.scale) if qb is not None and qb.scale is not None else []
    za = list(qa.zeroPoint) if qa is not None and qa.zeroPoint is not None else []
    zb = list(qb.zeroPoint) if qb is not None and qb.zeroPoint is not None else []
    return bool(a.type == b.type and sa == sb and za == zb)


def fold_transpose_pairs(path: Path) -> int:
    """Remove ``TRANSPOSE(TRANSPOSE(x))`` chains whose permutations compose to the identity:
    consumers of the second read ``x`` directly; the first goes when nothing else reads it.
    Returns the number of TRANSPOSE ops removed."""
    s = _schema()
    model = _read(path)
    transpose = {i for i, c in enumerate(model.operatorCodes or [])
                 if _code(c) == s.BuiltinOperator.TRANSPOSE}
    removed = 0
    for graph in model.subgraphs or []:
        ops = list(graph.operators or [])
        producer = {int(o): op for op in ops for o in op.outputs}
        keep_outputs = {int(i) for i in graph.outputs}
        replace: dict[int, int] = {}
        dropped: set[int] = set()
        for op in ops:
            if op.opcodeIndex not in transpose:
                continue
            first = producer.get(int(op.inputs[0]))
            if first is None or first.opcodeIndex not in transpose:
                continue
            p1, p2 = _perm(model, graph, int(first.inputs[1])), _perm(model, graph, int(op.inputs[1]))
            if p1 is None or p2 is None or len(p1) != len(p2):
                continue
            if [p1[i] for i in p2] != list(range(len(p1))):
                continue
            src, dst = int(first.inputs[0]), int(op.outputs[0])
            if dst in keep_outputs or not _same_quantization(graph.tensors[src],
                                                              graph.tensors[dst]):
                continue
            replace[dst] = src
            dropped.add(id(op))
        if not dropped:
            continue
        for op in ops:
            op.inputs = [replace.get(int(i), int(i)) for i in op.inputs]
        ops = [op for op in ops if id(op) not in dropped]
        # first transposes nobody reads any more
        read = {int(i) for op in ops for i in op.inputs} | keep_outputs
        unused = [op for op in ops if op.opcodeIndex in transpose and int(op.outputs[0]) not in read]
        ops = [op for op in ops if op not in unused]
        removed += len(dropped) + len(unused)
        graph.operators = ops
    if removed:
        _write(model, path)
    return removed


def constant_precision(path: Path) -> str:
    """A model's precision judged by its constant tensors (the weights): int8/uint8 ->
    ``int8``, float16 -> ``fp16``, else ``fp32`` (a float model may well take a uint8 image,
    so input types say nothing)."""
    model = _read(path)
    # TensorType enum of the TFLite schema: FLOAT32 0, FLOAT16 1, UINT8 3, INT8 9
    buffers = model.buffers or []

    def constant(t: Any) -> bool:
        data = buffers[t.buffer].data if 0 < t.buffer < len(buffers) else None
        return data is not None and len(data) > 0

    types = {t.type for g in model.subgraphs for t in g.tensors if constant(t)}
    if 9 in types or 3 in types:
        return "int8"
    if 1 in types:
        return "fp16"
    return "fp32"
