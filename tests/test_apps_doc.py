"""docs/apps.md says what the exporter writes: every command of its table, planned (no
export), gives the file, input and output names of the table, and every file and tensor name
in its code snippets is one of the table's. The real LSNet-T artifacts are checked against
the same table in the slow tests (test_mediapipe.py, test_onnx_mobile.py,
test_export_coreml.py)."""

from __future__ import annotations

import re

import pytest
from apps_doc import code_blocks, row_for, rows

from lsnet_deploy.pipeline.plan import plan
from lsnet_deploy.pipeline.request import ExportRequest


def test_the_table_covers_every_platform() -> None:
    formats = {r.request_kwargs()["format"] for r in rows()}
    assert formats == {"tflite", "coreml", "onnx"}
    assert len(rows()) >= 6


@pytest.mark.parametrize("row", rows(), ids=lambda r: " ".join(r.flags))
def test_each_command_plans_the_files_and_names_of_the_table(row, tmp_path) -> None:  # type: ignore[no-untyped-def]
    request = ExportRequest.build("lsnet_t", weights="random", output_dir=tmp_path,
                                  **row.request_kwargs())
    [job] = plan(request)
    assert job.dest.name == row.files[0]
    if len(row.files) > 1:  # the .ort next to the .onnx
        assert row.files[1] == job.dest.with_suffix(".ort").name
    assert job.spec.input_name == row.input.name
    if row.input.kind == "image":  # CoreML's ImageType
        assert job.spec.value_range == "0..255" and job.spec.img_size == row.input.shape
    else:
        shape = tuple(1 if d is None else d for d in job.spec.input_shape)
        assert shape == row.input.shape
        if row.input.kind == "uint8":
            assert job.spec.dtype == "uint8" and job.spec.value_range == "0..255"
    if row.input.kind == "float32":
        assert job.spec.value_range == "normalized"
    if row.outputs[0].kind not in ("string",):
        assert job.spec.output_names == tuple(t.name for t in row.outputs)


def test_the_snippets_use_the_table_names() -> None:
    files = {f for r in rows() for f in r.files}
    stems = {f.rsplit(".", 1)[0] for f in files}
    tensors = {t.name for r in rows() for t in (r.input, *r.outputs)}
    seen_files, seen_tensors = set(), set()
    for _, code in code_blocks():
        for name in re.findall(r"lsnet_t_224_[\w-]+(?:\.\w+)?", code):
            assert name in files or name in stems, name
            seen_files.add(name)
        for name in re.findall(r'(?:mapOf\(|get\()"(\w+)"', code):
            assert name in tensors, name
            seen_tensors.add(name)
        # comments that describe a tensor: `"logits", INT8 [1, 1000]`
        for name, kind, shape in re.findall(r'// "(\w+)", (\w+) \[([\d, ]+)\]', code):
            matches = [t for r in rows() for t in (r.input, *r.outputs)
                       if t.name == name and t.kind == kind.lower()
                       and t.shape == tuple(int(d) for d in shape.split(","))]
            assert matches, (name, kind, shape)
            seen_tensors.add(name)
        for name, kind, shape in re.findall(r'// output "(\w+)", (\w+) \[([\d, ]+)\]', code):
            assert any(t.name == name and t.kind == kind for r in rows() for t in r.outputs)
    # the snippets really are about these artifacts
    assert {"lsnet_t_224_int8.tflite", "lsnet_t_224_int8_tensor_io-int8.tflite",
            "lsnet_t_224_fp16", "lsnet_t_224_fp32.ort"} <= seen_files
    assert {"image", "logits"} <= seen_tensors
    assert row_for("lsnet_t_224_fp16.mlpackage").outputs[0].name == "classLabel"
