"""Standard TFLite Metadata: what MediaPipe Tasks (``ImageClassifier``) and the LiteRT Support
Library read from a ``.tflite``, next to lsnet-deploy's own JSON entry.

* :func:`standard_metadata`: the facts, from the artifact's lsnet-deploy metadata (pure): model
  name, description, version, author, licence; the input image (RGB, its size), its
  normalization and value range; the output (probabilities or logits) and its labels;
* :func:`write_standard_metadata`: packs them with the metadata schema's generated Python
  classes into a flatbuffer with the ``M001`` identifier, stores it as the model metadata
  entry ``TFLITE_METADATA`` (replacing an earlier one) and packs the labels file after the
  model as a stored (uncompressed) zip entry, as MediaPipe's ``MetadataPopulator`` does;
* :func:`read_standard_metadata`: the same, read back as plain data.

The schema classes come from the ``mediapipe`` wheel
(``mediapipe.tasks.metadata.metadata_schema_py_generated``, pure Python over ``flatbuffers``):
its ``metadata_writers`` need a native module that the 1.2.2 wheel lacks, and tflite-support
pins protobuf < 4 (docs/decisions.md, "App-ready TFLite"). ``minParserVersion`` is the one the
native populator would compute: only members of schema 1.0.0 are written, so ``1.0.0``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .._version import __version__
from ..deps import require
from ..errors import ExportError
from .tflite_flatbuffer import _read, _write, associated_files

__all__ = [
    "AUTHOR",
    "LABELS_FILE",
    "LICENSE",
    "STANDARD_METADATA_NAME",
    "StandardMetadata",
    "class_labels",
    "read_standard_metadata",
    "standard_metadata",
    "write_standard_metadata",
]

STANDARD_METADATA_NAME = "TFLITE_METADATA"
"""The model metadata entry TFLite Metadata readers look for."""
LABELS_FILE = "labels.txt"
"""The associated ``TENSOR_AXIS_LABELS`` file: one class name per line, in class order."""
AUTHOR = "lsnet-deploy (LSNet by Ao Wang, Hui Chen, Zijia Lin, Jungong Han, Guiguang Ding)"
LICENSE = "MIT (LSNet code and official weights)"
MIN_PARSER_VERSION = "1.0.0"
_IDENTIFIER = b"M001"


@dataclass(frozen=True)
class StandardMetadata:
    """What the ``TFLITE_METADATA`` entry says (one input image, one classification output).

    ``mean`` / ``std`` are TFLite Metadata's ``NormalizationOptions``: the input tensor holds
    ``(pixel - mean) / std`` for pixels 0..255 (``(0,)`` / ``(1,)``: the pixels themselves, the
    normalization being inside the graph); ``value_min`` / ``value_max`` are its ``Stats``.
    """

    name: str
    description: str
    version: str
    author: str
    license: str
    input_name: str
    input_description: str
    image: bool
    """The input is an NHWC RGB image (``ImageProperties``); else a feature tensor."""
    height: int
    width: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    value_min: tuple[float, ...]
    value_max: tuple[float, ...]
    output_name: str
    output_description: str
    probabilities: bool
    labels: tuple[str, ...]
    labels_file: str = LABELS_FILE

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["labels"] = len(self.labels)
        return d


def class_labels(num_classes: int) -> tuple[str, ...]:
    """The ImageNet-1K names for 1000 classes, ``class_<i>`` otherwise."""
    if num_classes == 1000:
        from ..labels import imagenet_classes

        return imagenet_classes()
    return tuple(f"class_{i}" for i in range(num_classes))


def _display_name(variant: str) -> str:
    """``lsnet_t`` -> ``LSNet-T``, ``lsnet_s_distill`` -> ``LSNet-S (distilled)``."""
    parts = variant.split("_")
    if parts[0] != "lsnet" or len(parts) < 2:
        return variant
    name = f"LSNet-{parts[1].upper()}"
    return name + (" (distilled)" if parts[2:] == ["distill"] else "")


def standard_metadata(meta: dict[str, Any], classifier: bool) -> StandardMetadata:
    """The standard metadata of an artifact from its lsnet-deploy ``meta`` (as
    :func:`~lsnet_deploy.metadata.build_metadata` writes it, values decoded)."""
    h, w = (int(v) for v in meta["img_size"])
    n = int(meta.get("num_classes", 1000))
    image = meta.get("value_range") == "0..255"
    dtype = str(meta.get("input_dtype", "float32"))
    mean, std = tuple(meta["mean"]), tuple(meta["std"])
    if image:
        norm_mean, norm_std = (0.0,), (1.0,)
        what = (f"RGB image {h}x{w}, {dtype} pixel values 0..255; the ImageNet normalization "
                "(x / 255 - mean) / std is inside the model")
    else:
        norm_mean = tuple(255.0 * m for m in mean)
        norm_std = tuple(255.0 * s for s in std)
        what = (f"RGB image {h}x{w} normalized with the ImageNet mean {list(mean)} and std "
                f"{list(std)}: (x / 255 - mean) / std, {meta.get('layout', 'NHWC')}")
    classes = "ImageNet-1K classes" if n == 1000 else "classes"
    output = (f"probabilities of the {n} {classes} (softmax inside the model)" if classifier
              else f"logits (raw scores) of the {n} {classes}; softmax gives probabilities")
    name = _display_name(str(meta.get("variant", "lsnet")))
    precision = str(meta.get("precision", "fp32"))
    return StandardMetadata(
        name=name,
        description=(f"{name} image classifier (LSNet: See Large, Focus Small, CVPR 2025), "
                     f"{precision}, exported by lsnet-deploy. Input: {what}. Output: "
                     f"{output}."),
        version=__version__, author=AUTHOR, license=LICENSE,
        input_name=str(meta.get("input_name", "image")), input_description=what,
        image=meta.get("layout", "NHWC") == "NHWC", height=h, width=w,
        mean=norm_mean, std=norm_std,
        value_min=tuple((0.0 - m) / s for m, s in zip(norm_mean, norm_std, strict=True)),
        value_max=tuple((255.0 - m) / s for m, s in zip(norm_mean, norm_std, strict=True)),
        output_name=str(meta.get("output_names", ["logits"])[0]),
        output_description=output[0].upper() + output[1:],
        probabilities=classifier, labels=class_labels(n),
    )


def _fb() -> Any:
    """The metadata schema's generated classes (``mediapipe.tasks.metadata``)."""
    [module] = require("tflite", "mediapipe.tasks.metadata.metadata_schema_py_generated",
                       what="TFLite Metadata (the schema classes ship with mediapipe)")
    return module


def _input_tensor(fb: Any, m: StandardMetadata) -> Any:
    content = fb.ContentT()
    if m.image:
        content.contentPropertiesType = fb.ContentProperties.ImageProperties
        content.contentProperties = fb.ImagePropertiesT()
        content.contentProperties.colorSpace = fb.ColorSpaceType.RGB
        content.contentProperties.defaultSize = fb.ImageSizeT()
        content.contentProperties.defaultSize.width = m.width
        content.contentProperties.defaultSize.height = m.height
    else:
        content.contentPropertiesType = fb.ContentProperties.FeatureProperties
        content.contentProperties = fb.FeaturePropertiesT()
    norm = fb.ProcessUnitT()
    norm.optionsType = fb.ProcessUnitOptions.NormalizationOptions
    norm.options = fb.NormalizationOptionsT()
    norm.options.mean, norm.options.std = list(m.mean), list(m.std)
    tensor = fb.TensorMetadataT()
    tensor.name, tensor.description = m.input_name, m.input_description
    tensor.content, tensor.processUnits = content, [norm]
    tensor.stats = fb.StatsT()
    tensor.stats.min, tensor.stats.max = list(m.value_min), list(m.value_max)
    return tensor


def _output_tensor(fb: Any, m: StandardMetadata) -> Any:
    tensor = fb.TensorMetadataT()
    tensor.name, tensor.description = m.output_name, m.output_description
    tensor.content = fb.ContentT()
    tensor.content.contentPropertiesType = fb.ContentProperties.FeatureProperties
    tensor.content.contentProperties = fb.FeaturePropertiesT()
    if m.probabilities:
        tensor.stats = fb.StatsT()
        tensor.stats.min, tensor.stats.max = [0.0], [1.0]
    labels = fb.AssociatedFileT()
    labels.name = m.labels_file
    labels.description = "Class names, one per line in class-index order"
    labels.type = fb.AssociatedFileType.TENSOR_AXIS_LABELS
    tensor.associatedFiles = [labels]
    return tensor


def metadata_buffer(m: StandardMetadata) -> bytes:
    """The ``ModelMetadata`` flatbuffer (identifier ``M001``) of ``m``."""
    import flatbuffers

    fb = _fb()
    subgraph = fb.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [_input_tensor(fb, m)]
    subgraph.outputTensorMetadata = [_output_tensor(fb, m)]
    model = fb.ModelMetadataT()
    model.name, model.description, model.version = m.name, m.description, m.version
    model.author, model.license = m.author, m.license
    model.subgraphMetadata = [subgraph]
    model.minParserVersion = MIN_PARSER_VERSION
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), _IDENTIFIER)
    return bytes(builder.Output())


def write_standard_metadata(path: Path, m: StandardMetadata) -> None:
    """Store ``m`` in ``path`` as the ``TFLITE_METADATA`` entry and pack its labels file
    (the other packed files and metadata entries stay)."""
    from ai_edge_litert import schema_py_generated as schema

    model = _read(path)
    buf = schema.BufferT()
    buf.data = list(metadata_buffer(m))
    model.buffers.append(buf)
    entries = [e for e in model.metadata or [] if _str(e.name) != STANDARD_METADATA_NAME]
    entry = schema.MetadataT()
    entry.name = STANDARD_METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = [*entries, entry]
    files = associated_files(path)
    files[m.labels_file] = ("\n".join(m.labels) + "\n").encode()
    _write(model, path, files)


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else ("" if value is None else str(value))


def _floats(stats: Any, field: str) -> list[float]:
    values = getattr(stats, field, None) if stats is not None else None
    return [float(v) for v in values] if values is not None else []


def _tensor_dict(t: Any, files: dict[str, bytes]) -> dict[str, Any]:
    fb = _fb()
    props = t.content.contentProperties if t.content is not None else None
    d: dict[str, Any] = {"name": _str(t.name), "description": _str(t.description),
                         "content": type(props).__name__.removesuffix("T") if props else None,
                         "min": _floats(t.stats, "min"), "max": _floats(t.stats, "max")}
    if isinstance(props, fb.ImagePropertiesT):
        names = {v: k for k, v in vars(fb.ColorSpaceType).items() if not k.startswith("_")}
        d["color_space"] = names.get(props.colorSpace, str(props.colorSpace))
        size = props.defaultSize
        d["image_size"] = [int(size.height), int(size.width)] if size is not None else None
    for unit in t.processUnits or []:
        if unit.optionsType == fb.ProcessUnitOptions.NormalizationOptions:
            d["mean"] = [float(v) for v in unit.options.mean]
            d["std"] = [float(v) for v in unit.options.std]
    for f in t.associatedFiles or []:
        if f.type == fb.AssociatedFileType.TENSOR_AXIS_LABELS:
            d["labels_file"] = _str(f.name)
            text = files.get(_str(f.name), b"").decode()
            d["labels"] = [line for line in text.splitlines() if line]
    return d


def read_standard_metadata(path: Path) -> dict[str, Any]:
    """The ``TFLITE_METADATA`` of ``path`` as plain data (``{}`` if there is none): model
    fields, ``inputs`` / ``outputs`` (name, content, normalization, stats, labels) and the
    names of the packed ``associated_files``."""
    model = _read(path)
    buf = next((bytes(bytearray(model.buffers[e.buffer].data)) for e in model.metadata or []
                if _str(e.name) == STANDARD_METADATA_NAME), None)
    if buf is None:
        return {}
    fb = _fb()
    if not fb.ModelMetadata.ModelMetadataBufferHasIdentifier(buf, 0):
        raise ExportError(f"{path}: {STANDARD_METADATA_NAME} is not a metadata flatbuffer "
                          f"(identifier {buf[4:8]!r}, expected {_IDENTIFIER!r})")
    meta = fb.ModelMetadataT.InitFromPackedBuf(buf, 0)
    files = associated_files(path)
    [subgraph] = meta.subgraphMetadata
    return {
        "name": _str(meta.name), "description": _str(meta.description),
        "version": _str(meta.version), "author": _str(meta.author),
        "license": _str(meta.license), "min_parser_version": _str(meta.minParserVersion),
        "inputs": [_tensor_dict(t, files) for t in subgraph.inputTensorMetadata or []],
        "outputs": [_tensor_dict(t, files) for t in subgraph.outputTensorMetadata or []],
        "associated_files": sorted(files),
    }
