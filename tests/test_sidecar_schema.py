"""The sidecar of every exporter and precision against docs/sidecar.schema.json, and what the
schema cannot say: one input dtype, the one the file really takes (read back from the file in
its own runtime or reader); the metadata embedded in the file equals the sidecar's (nested
values encoded once); the recorded preprocessing reproduces :class:`Preprocess`.

One export per (format, precision), of the tiny model at 96 px; only ONNX fp32 is in the fast
tier (the others take 20-60 s each). Each case is one test, so an export is never repeated
on another xdist worker. :func:`check_sidecar` also checks the artifacts of two tests of
other modules (TFLite int8 I/O, ExecuTorch INT8 with image input), which export those forms
anyway."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import fastjsonschema
import numpy as np
import pytest
import torch
from conftest import REPO, write_checkpoint
from PIL import Image

from lsnet_deploy.errors import UnsupportedOptionError
from lsnet_deploy.exporters import get_exporter
from lsnet_deploy.exporters.ranks import max_rank, rank_histogram
from lsnet_deploy.metadata import (
    METADATA_SCHEMA,
    build_metadata,
    from_native,
    read_sidecar,
    to_native,
)
from lsnet_deploy.paths import calibration_dir
from lsnet_deploy.pipeline import export, validate
from lsnet_deploy.pipeline.plan import plan
from lsnet_deploy.pipeline.request import ExportRequest
from lsnet_deploy.preprocess import Preprocess, list_images, load_image
from lsnet_deploy.spec import IOSpec, preprocess_from_recipe, preprocessing_recipe

TINY = "test_lsnet"
SIZE = 96
SCHEMA = REPO / "docs" / "sidecar.schema.json"
QUICK = {"calib_size": 8, "min_cosine": 0.0}  # structure is tested here, not fidelity

# (id, format, export options, the input dtype the file must take); four more forms are checked
# with check_sidecar on the artifacts of the tests that export them anyway (CI time): TFLite
# INT8 with int8 I/O (test_export_tflite.py::test_int8_is_fully_integer), TFLite INT8 in its app
# form, uint8 image in and probabilities out (test_export_tflite.py::test_int8_image_input),
# ExecuTorch fp32 (test_export_executorch.py::test_fp32_export_validates_and_writes_a_sidecar)
# and ExecuTorch INT8 with image input (test_export_executorch.py::test_int8_with_image_input)
CASES = [
    ("onnx-fp32", "onnx", {}, "float32"),
    ("onnx-int8", "onnx", {"precision": "int8", "image_input": True, **QUICK}, "uint8"),
    ("tflite-fp32", "tflite", {}, "uint8"),
    ("tflite-fp16", "tflite", {"precision": "fp16", "classifier": True}, "uint8"),
    ("coreml-fp16", "coreml", {"classifier": True}, "uint8"),
    ("coreml-fp32", "coreml", {"precision": "fp32", "image_input": False}, "float32"),
    ("coreml-int8", "coreml", {"precision": "int8", "image_input": False}, "float16"),
    ("coreml-w8a8", "coreml", {"precision": "w8a8", "calib_size": 4, "min_cosine": 0.0},
     "uint8"),
    ("executorch-int8", "executorch", {"precision": "int8", **QUICK}, "float32"),
]
FAST = {"onnx-fp32"}


def _params() -> list[Any]:
    return [pytest.param(fmt, kw, dtype, id=name,
                         marks=() if name in FAST else pytest.mark.slow)
            for name, fmt, kw, dtype in CASES]


@pytest.fixture(scope="module")
def check_schema() -> Callable[[Any], Any]:
    return _schema()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, dict[str, Any]], Path]:
    """Export (once per module) the tiny model to a format with options; returns the path."""
    ckpt = write_checkpoint(tmp_path_factory.mktemp("ckpt"), TINY, SIZE, seed=3)
    out = tmp_path_factory.mktemp("sidecar out")  # a space in the path
    done: dict[str, Path] = {}

    def get(fmt: str, kw: dict[str, Any]) -> Path:
        key = json.dumps([fmt, kw], sort_keys=True)
        if key not in done:
            [art] = export(TINY, fmt, weights=ckpt, img_size=SIZE, output_dir=out, **kw)
            done[key] = art.path
        return done[key]

    return get


# --- the artifact's real input and outputs, read back from the file --------------------------

_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16",
              "tensor(uint8)": "uint8", "tensor(int8)": "int8"}
_ET_TYPES = {0: "uint8", 1: "int8", 5: "float16", 6: "float32"}  # ExecuTorch ScalarType


def _dims(shape: list[Any]) -> list[Any]:
    return [d if isinstance(d, int) else "batch" for d in shape]


def _real_io(fmt: str, path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(inputs, outputs)``: name (where the runtime tells), shape, dtype and quantization,
    read from the file by its own runtime or reader, not by the exporter."""
    if fmt == "onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def ort_entry(v: Any) -> dict[str, Any]:
            return {"name": v.name, "shape": _dims(v.shape), "dtype": _ORT_TYPES[v.type],
                    "quantization": None}

        return ([ort_entry(v) for v in sess.get_inputs()],
                [ort_entry(v) for v in sess.get_outputs()])
    if fmt == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=str(path), num_threads=1)

        def tfl_entry(d: dict[str, Any]) -> dict[str, Any]:
            scale, zp = d["quantization"]
            return {"name": d["name"], "shape": [int(s) for s in d["shape"]],
                    "dtype": np.dtype(d["dtype"]).name,
                    "quantization": [scale, zp] if scale else None}

        return ([tfl_entry(d) for d in it.get_input_details()],
                [tfl_entry(d) for d in it.get_output_details()])
    if fmt == "coreml":
        import coremltools as ct

        desc = ct.models.MLModel(str(path), skip_model_load=True).get_spec().description
        arrays = ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType

        def cml_entry(f: Any) -> dict[str, Any]:
            kind = f.type.WhichOneof("Type")
            if kind == "imageType":
                assert ct.proto.FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(
                    f.type.imageType.colorSpace) == "RGB"
                t = f.type.imageType
                return {"name": f.name, "shape": [1, 3, t.height, t.width], "dtype": "uint8",
                        "quantization": None}
            if kind == "multiArrayType":
                t = f.type.multiArrayType
                return {"name": f.name, "shape": list(t.shape),
                        "dtype": arrays.Name(t.dataType).lower(), "quantization": None}
            dtype = {"stringType": "string", "dictionaryType": "dictionary"}[kind]
            return {"name": f.name, "shape": [], "dtype": dtype, "quantization": None}

        return [cml_entry(f) for f in desc.input], [cml_entry(f) for f in desc.output]
    assert fmt == "executorch"
    from executorch.runtime import Runtime

    meta = Runtime.get().load_program(str(path)).metadata("forward")

    def et_entry(info: Any) -> dict[str, Any]:
        return {"shape": [int(s) for s in info.sizes()], "dtype": _ET_TYPES[int(info.dtype())],
                "quantization": None}

    return ([et_entry(meta.input_tensor_meta(i)) for i in range(meta.num_inputs())],
            [et_entry(meta.output_tensor_meta(i)) for i in range(meta.num_outputs())])


def _same_entries(recorded: list[dict[str, Any]], real: list[dict[str, Any]]) -> None:
    assert len(recorded) == len(real)
    for rec, got in zip(recorded, real, strict=True):
        for key, value in got.items():
            if key == "quantization" and value is not None:
                assert rec[key] is not None
                assert rec[key][0] == pytest.approx(value[0], rel=1e-6)
                assert rec[key][1] == value[1]
            else:
                assert rec[key] == value, (key, rec, got)


# --- every format and precision ---------------------------------------------------------------


@pytest.mark.parametrize("fmt,kw,input_dtype", _params())
def test_the_sidecar_of_every_format_and_precision(
        fmt: str, kw: dict[str, Any], input_dtype: str, exported: Callable[..., Path]) -> None:
    path = exported(fmt, kw)
    check_sidecar(path, fmt, kw, input_dtype, SIZE)
    if fmt == "executorch":  # rank <= 4 in the .pte itself (a rank-5 INT8 program did not load)
        ranks = rank_histogram(path)
        assert max_rank(path) <= 4 and ranks is not None and ranks.get("4", 0) > 20, ranks


@cache
def _schema() -> Callable[[Any], Any]:
    return fastjsonschema.compile(json.loads(SCHEMA.read_text(encoding="utf-8")))


def check_sidecar(path: Path, fmt: str, kw: dict[str, Any], input_dtype: str,
                  size: int) -> None:
    """The sidecar of ``path`` (exported to ``fmt`` with options ``kw`` at ``size`` px) is
    schema-valid and true to the file: ``input_dtype`` is the dtype the file takes."""
    side = read_sidecar(path)
    assert side is not None
    # 1. the schema, and the agreements it cannot state
    _schema()(side)
    meta = side["metadata"]
    assert side["status"] == "passed" and side["artifact"] == path.name
    assert (side["format"], side["precision"]) == (meta["format"], meta["precision"]) == (
        fmt, kw.get("precision", get_exporter(fmt).capabilities.precisions[0]))
    assert meta["lsnet_deploy.schema"] == METADATA_SCHEMA
    # 2. one input dtype: the one the file takes (and every other input/output fact)
    inputs, outputs = _real_io(fmt, path)
    assert meta["input_dtype"] == meta["inputs"][0]["dtype"] == inputs[0]["dtype"] == input_dtype
    assert meta["input_shape"] == meta["inputs"][0]["shape"]
    assert meta["input_name"] == meta["inputs"][0]["name"]
    assert meta["output_names"] == [o["name"] for o in meta["outputs"]]
    _same_entries(meta["inputs"], inputs)
    _same_entries(meta["outputs"], outputs)
    if "inputs" in side["export"]:  # TFLite's io_details: the same facts
        assert (side["export"]["inputs"], side["export"]["outputs"]) == (
            meta["inputs"], meta["outputs"])
    image = meta["value_range"] == "0..255"
    assert (meta["input_dtype"] == "uint8") == image or meta.get("io_type") == "uint8"
    quantized = meta["inputs"][0]["quantization"] is not None
    assert quantized == (meta["input_dtype"] in ("int8", "uint8") and not image)
    classifier = kw.get("classifier", False)
    assert meta["output_kind"] == ("probabilities" if classifier else "logits")
    # 3. the metadata embedded in the file is the sidecar's
    exp = get_exporter(fmt)
    native = from_native(exp.read_metadata(path))
    assert {k: native.get(k) for k in meta} == meta
    if fmt == "tflite":  # one JSON document, nested values encoded once
        from lsnet_deploy.exporters.tflite_flatbuffer import read_metadata

        assert read_metadata(path) == meta
    # 4. the recorded preprocessing is the one exports calibrate and validate with
    recipe = meta["preprocessing"]
    assert preprocess_from_recipe(recipe) == Preprocess.for_size(size)
    assert recipe["crop_size"] == meta["img_size"] and recipe["resize_size"] == [
        math.floor(size / 0.9)] * 2
    for key in ("colour_order", "mean", "std", "value_range", "layout"):
        assert recipe[key] == meta[key], key
    # 5. an input dtype the export did not ask for still re-validates from the sidecar
    if input_dtype in ("int8", "float16"):
        assert validate(path)["passed"]


# --- the schema itself, on metadata built without exporting ----------------------------------


def _planned_sidecar(fmt: str, **kw: Any) -> dict[str, Any]:
    """A sidecar as publishing writes it, for a planned export (metadata from the IO spec)."""
    [job] = plan(ExportRequest.build(TINY, fmt, weights="random", img_size=SIZE,
                                     output_dir=Path("/nonexistent/out"), **kw))
    meta = build_metadata(variant=job.variant, spec=job.spec, precision=job.options.precision,
                          fmt=job.format, weights={"kind": "random"},
                          dynamic_batch=job.options.dynamic_batch)
    if fmt == "tflite":
        meta.update({"classifier": False, "standard_metadata": "TFLITE_METADATA",
                     "labels_file": "labels.txt"})
        if job.options.precision == "int8":
            meta["io_type"] = "float32"
    return {"artifact": job.dest.name, "format": fmt, "precision": job.options.precision,
            "status": "passed", "size_bytes": 1, "sha256": "0" * 64, "metadata": meta,
            "export": {}, "reparameterization": {}, "validation": {"passed": True,
                                                                   "summary": "PASS"}}


@pytest.mark.parametrize("fmt,kw", [
    ("onnx", {}), ("onnx", {"dynamic_batch": True, "image_input": True}),
    ("tflite", {}), ("tflite", {"precision": "int8"}), ("coreml", {}),
    ("coreml", {"precision": "w8a8"}), ("executorch", {"precision": "int8"}),
])
def test_planned_metadata_matches_the_schema(fmt: str, kw: dict[str, Any],
                                             check_schema: Callable[[Any], Any]) -> None:
    side = _planned_sidecar(fmt, **kw)
    check_schema(side)
    # what the publishing code adds for classifier-capable artifacts
    labels = side["artifact"] + ".labels.txt"
    check_schema({**side, "labels_file": labels, "companions": [labels]})


def _mutations() -> list[Any]:
    """``(what, mutate, the field the refusal names)``."""
    def meta(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
        return lambda s: s["metadata"].__setitem__(key, value)

    def top(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
        return lambda s: s.__setitem__(key, value)

    def recipe(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
        return lambda s: s["metadata"]["preprocessing"].__setitem__(key, value)

    def first_input(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
        return lambda s: s["metadata"]["inputs"][0].__setitem__(key, value)

    cases = [
        ("unknown input dtype", meta("input_dtype", "int16"), "input_dtype"),
        ("nested value encoded as a string", meta("img_size", json.dumps([SIZE, SIZE])),
         "img_size"),
        ("no preprocessing", lambda s: s["metadata"].pop("preprocessing"), "preprocessing"),
        ("another interpolation", recipe("interpolation", "bilinear"), "interpolation"),
        ("a crop_pct over 1", recipe("crop_pct", 1.1), "crop_pct"),
        ("unknown layout", meta("layout", "CHW"), "layout"),
        ("NHWC on ONNX", meta("layout", "NHWC"), "layout"),
        ("unknown value range", meta("value_range", "0..1"), "value_range"),
        ("an undocumented field", meta("input_scale", 1.0), "input_scale"),
        ("a static batch named batch", meta("input_shape", ["batch", 3, SIZE, SIZE]),
         "input_shape"),
        ("a precision the format lacks", top("precision", "fp16"), "precision"),
        ("TFLite fields on ONNX", meta("io_type", "int8"), "metadata"),
        ("a path as labels file", top("labels_file", "a/b.labels.txt"), "labels_file"),
        ("an unknown top-level field", top("labels", ["a"]), "labels"),
        ("a bad quantization", first_input("quantization", [0.1]), "quantization"),
        ("an unknown tensor dtype", first_input("dtype", "bfloat16"), "dtype"),
    ]
    return [pytest.param(mutate, field, id=what) for what, mutate, field in cases]


@pytest.mark.parametrize("mutate,field", _mutations())
def test_the_schema_refuses(mutate: Callable[[dict[str, Any]], None], field: str,
                            check_schema: Callable[[Any], Any]) -> None:
    side = _planned_sidecar("onnx")
    check_schema(side)
    bad = copy.deepcopy(side)
    mutate(bad)
    with pytest.raises(fastjsonschema.JsonSchemaException, match=field):
        check_schema(bad)


# --- the preprocessing recipe -----------------------------------------------------------------


def _apply_recipe(img: Image.Image, r: dict[str, Any]) -> np.ndarray:
    """The recipe as docs/sidecar.md writes it, implemented from the text (what an app does):
    ``(H, W, 3)`` uint8 pixels for ``0..255``, else ``(3, H, W)`` / ``(H, W, 3)`` float32."""
    assert (r["colour_order"], r["interpolation"], r["antialias"], r["crop_mode"]) == (
        "RGB", "bicubic", True, "center")
    w, h = img.size
    sh, sw = r["resize_size"]
    if r["resize_mode"] == "shorter_side":
        size = (sh, int(sh * h / w)) if w <= h else (int(sh * w / h), sh)
    else:
        ratio = max(sh / h, sw / w)
        size = (max(sw, round(w * ratio)), max(sh, round(h * ratio)))
    img = img.convert("RGB").resize(size, Image.Resampling.BICUBIC)
    ch, cw = r["crop_size"]
    top, left = round((size[1] - ch) / 2), round((size[0] - cw) / 2)
    pixels = np.asarray(img.crop((left, top, left + cw, top + ch)), dtype=np.uint8)
    if r["value_range"] == "0..255":
        return pixels
    x = (pixels.astype(np.float32) * np.float32(r["pixel_scale"]) - np.float32(r["mean"])) \
        / np.float32(r["std"])
    return x.transpose(2, 0, 1) if r["layout"] == "NCHW" else x


def _photos() -> list[Image.Image]:
    """Real photos and odd shapes (tall, wide, small, odd sides)."""
    photos = [load_image(p) for p in list_images(calibration_dir())[:3]]
    rng = np.random.default_rng(0)
    for w, h in ((640, 97), (97, 640), (101, 103), (60, 40), (333, 500)):
        photos.append(Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)))
    return photos


@pytest.mark.parametrize("spec", [
    IOSpec(), IOSpec(img_size=(SIZE, SIZE), layout="NHWC"),
    IOSpec(img_size=(96, 128)), IOSpec(img_size=(160, 112), layout="NHWC"),
    IOSpec(dtype="uint8", value_range="0..255"),
], ids=["224", "96-nhwc", "96x128", "160x112-nhwc", "224-image"])
def test_the_recorded_recipe_reproduces_preprocess(spec: IOSpec) -> None:
    recipe = json.loads(json.dumps(preprocessing_recipe(spec)))  # as read from a sidecar
    pre = Preprocess(img_size=spec.img_size)
    assert preprocess_from_recipe(recipe) == pre
    h, w = spec.img_size
    assert recipe["resize_size"] == [math.floor(h / 0.9), math.floor(w / 0.9)]
    if spec.img_size == (224, 224):
        assert recipe["resize_size"] == [248, 248] and recipe["crop_pct"] == 0.9
    for img in _photos():
        got = _apply_recipe(img, recipe)
        if spec.value_range == "0..255":
            assert np.array_equal(got, pre.to_uint8(img))
            continue
        expected = pre(img).numpy()
        if spec.layout == "NHWC":
            expected = expected.transpose(1, 2, 0)
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= 1e-5


def test_a_recipe_preprocess_cannot_reproduce_is_refused() -> None:
    recipe = preprocessing_recipe(IOSpec())
    assert preprocess_from_recipe(recipe) == Preprocess()
    custom = Preprocess(crop_pct=0.875)
    assert preprocess_from_recipe(preprocessing_recipe(IOSpec(), custom)) == custom
    for key, value in (("interpolation", "bilinear"), ("resize_size", [256, 256]),
                       ("crop_mode", "none"), ("colour_order", "BGR"),
                       ("pixel_scale", 1.0), ("resize_mode", "cover"), ("antialias", False)):
        with pytest.raises(UnsupportedOptionError, match=key):
            preprocess_from_recipe({**recipe, key: value})
    with pytest.raises(UnsupportedOptionError, match="interpolation"):
        preprocess_from_recipe({k: v for k, v in recipe.items() if k != "interpolation"})
    with pytest.raises(UnsupportedOptionError, match="not a preprocessing recipe"):
        preprocess_from_recipe({"crop_size": 224})
    with pytest.raises(UnsupportedOptionError, match="does not fit"):
        preprocessing_recipe(IOSpec(img_size=(96, 96)), Preprocess())


# --- TFLite's entry: nested values encoded once, older files still read ----------------------


def _tiny_tflite(path: Path) -> Path:
    """The smallest flatbuffer the TFLite schema allows (no tensors, no ops)."""
    from ai_edge_litert import schema_py_generated as s
    from ai_edge_litert.tools import flatbuffer_utils

    model = s.ModelT()
    model.version = 3
    model.buffers = [s.BufferT()]
    graph = s.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators = [], [], [], []
    model.subgraphs, model.operatorCodes, model.metadata = [graph], [], []
    flatbuffer_utils.write_model(model, str(path))
    return path


def test_the_tflite_entry_encodes_nested_values_once(tmp_path: Path) -> None:
    from lsnet_deploy.exporters.tflite import TfliteExporter
    from lsnet_deploy.exporters.tflite_flatbuffer import embed_metadata, read_metadata

    meta = _planned_sidecar("tflite", precision="int8", image_input=False, io="int8")["metadata"]
    meta.pop("standard_metadata")  # the standard TFLite Metadata needs a real graph
    exp = TfliteExporter()
    new = _tiny_tflite(tmp_path / "new.tflite")
    exp.embed_metadata(new, to_native(meta))
    raw = read_metadata(new)
    assert raw == meta and raw["img_size"] == [SIZE, SIZE]
    assert isinstance(raw["preprocessing"], dict) and isinstance(raw["inputs"], list)
    assert set(exp.read_metadata(new)) == set(meta)  # native strings again
    # a file of an earlier version: the native strings stored as they were
    old = _tiny_tflite(tmp_path / "old.tflite")
    embed_metadata(old, to_native(meta))
    assert read_metadata(old)["img_size"] == json.dumps([SIZE, SIZE])
    assert exp.read_metadata(old) == to_native(meta)
    assert from_native(exp.read_metadata(old)) == from_native(exp.read_metadata(new)) == meta


def test_the_recipe_is_plain_json() -> None:
    """The recipe is plain JSON values (an app reads it without this package)."""
    recipe = preprocessing_recipe(IOSpec())
    assert json.loads(json.dumps(recipe)) == recipe
    assert not any(isinstance(v, (torch.Tensor, np.generic, tuple)) for v in recipe.values())
