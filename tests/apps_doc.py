"""docs/apps.md's table of what the exporter writes, read as data, and checks of real
artifacts against it (used by test_apps_doc.py and by the slow tests that export LSNet-T)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parent.parent / "docs" / "apps.md"
_TENSOR = re.compile(r"`(\w+)` (\w+)(?: (\w+))?(?: \[([\d, ]+)\])?")


@dataclass(frozen=True)
class Tensor:
    name: str
    kind: str
    """``uint8`` / ``int8`` / ``float32`` tensors, ``image`` (CoreML ImageType: ``shape`` is
    ``[H, W]``), ``string`` / ``dictionary`` (CoreML classifier outputs)."""
    shape: tuple[int, ...] | None


@dataclass(frozen=True)
class Row:
    flags: tuple[str, ...]
    files: tuple[str, ...]
    input: Tensor
    outputs: tuple[Tensor, ...]

    def request_kwargs(self) -> dict[str, Any]:
        """The Python API keywords of the row's CLI flags."""
        kw: dict[str, Any] = {}
        flags = list(self.flags)
        while flags:
            flag = flags.pop(0)
            if flag in ("--format", "--io"):
                kw[flag[2:]] = flags.pop(0)
            elif flag in ("--int8", "--fp16", "--fp32"):
                kw["precision"] = flag[2:]
            elif flag == "--tensor-input":
                kw["image_input"] = False
            elif flag == "--ort":
                kw["ort"] = True
            else:
                raise AssertionError(f"docs/apps.md: flag {flag} is not known to this test")
        return kw


def _tensors(cell: str) -> tuple[Tensor, ...]:
    out = []
    for m in _TENSOR.finditer(cell):
        name, kind, colour, shape = m.groups()
        dims = tuple(int(d) for d in shape.split(",")) if shape else None
        if kind == "image":
            assert colour == "RGB", cell
        out.append(Tensor(name, kind, dims))
    assert out, f"docs/apps.md: no tensor in {cell!r}"
    return tuple(out)


def rows() -> list[Row]:
    """The rows of the table after the ``<!-- names`` marker."""
    text = DOC.read_text()
    table = text[text.index("<!-- names"):].split("\n\n")[0].splitlines()[3:]
    out = []
    for line in table:
        command, files, inp, outs = (c.strip() for c in line.strip("|").split("|"))
        flags = tuple(command.strip("`").split())
        [tensor_in] = _tensors(inp)
        out.append(Row(flags, tuple(re.findall(r"`([^`]+)`", files)), tensor_in,
                       _tensors(outs)))
    return out


def row_for(file_name: str) -> Row:
    [row] = [r for r in rows() if file_name in r.files]
    return row


def code_blocks() -> list[tuple[str, str]]:
    """``(language, code)`` of every fenced block."""
    return re.findall(r"```(\w+)\n(.*?)```", DOC.read_text(), re.DOTALL)


def check_tflite(path: Path) -> None:
    """Input and output tensors of a ``.tflite`` as the table says."""
    from ai_edge_litert.interpreter import Interpreter

    row = row_for(path.name)
    it = Interpreter(model_path=str(path))
    [inp], outs = it.get_input_details(), it.get_output_details()
    got = [(d["name"], str(d["dtype"].__name__), tuple(int(s) for s in d["shape"]))
           for d in [inp, *outs]]
    want = [(t.name, t.kind, t.shape) for t in (row.input, *row.outputs)]
    assert got == want, (path.name, got, want)


def check_onnx(path: Path) -> None:
    """Input and output tensors of an ``.onnx`` or ``.ort`` as the table says."""
    import onnxruntime as ort

    row = row_for(path.name)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    types = {"tensor(float)": "float32", "tensor(uint8)": "uint8"}
    got = [(a.name, types[a.type], tuple(a.shape)) for a in
           [*sess.get_inputs(), *sess.get_outputs()]]
    want = [(t.name, t.kind, t.shape) for t in (row.input, *row.outputs)]
    assert got == want, (path.name, got, want)


def check_coreml(path: Path) -> None:
    """The package's input image and classifier outputs as the table says."""
    import coremltools as ct

    row = row_for(path.name)
    desc = ct.utils.load_spec(str(path)).description
    [inp] = desc.input
    assert inp.name == row.input.name and row.input.kind == "image"
    assert inp.type.WhichOneof("Type") == "imageType"
    image = inp.type.imageType
    assert (image.height, image.width) == row.input.shape
    assert ct.proto.FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(image.colorSpace) == "RGB"
    kinds = {"stringType": "string", "dictionaryType": "dictionary"}
    got = [(o.name, kinds.get(o.type.WhichOneof("Type"), "?")) for o in desc.output]
    assert sorted(got) == sorted((t.name, t.kind) for t in row.outputs), got
