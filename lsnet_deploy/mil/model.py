"""A saved Core ML model run by the reference executor, with Core ML's prediction interface:
``ReferenceModel(path).predict({name: feed})`` takes and returns what
``coremltools.models.MLModel.predict`` does for the features of the model description.

Inputs: an ``imageType`` feature takes a ``PIL.Image`` of the declared width and height; its
pixels (0..255) become the program's ``(1, 3, H, W)`` input in the declared colour space
(``RGB``, or ``BGR``: channels reversed), exactly as Core ML hands a pixel buffer to an ML
Program; the ImageType's scale and per-channel bias are ops of the program itself (coremltools
writes them as its first ``mul`` / ``add``), so they run as ops. A ``multiArrayType`` feature
takes an array of the declared shape. Outputs: arrays for ``multiArrayType`` features (in the
declared data type), the label for a ``stringType`` / ``int64Type`` feature and the
label -> probability dictionary for a ``dictionaryType`` feature (a classifier's
``classLabel`` / ``classLabel_probs``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import MilProgramError
from .executor import Executor
from .package import read_package
from .program import load_program

__all__ = ["EXECUTOR_NAME", "EXECUTOR_VERSION", "ReferenceModel"]

EXECUTOR_NAME = "lsnet-deploy MIL reference executor"
EXECUTOR_VERSION = "1.0"
"""Bumped whenever an op's semantics change (recorded with every validation it runs)."""

_ARRAY_TYPES = {"FLOAT32": np.float32, "FLOAT16": np.float16, "DOUBLE": np.float64,
                "INT32": np.int32, "INT8": np.int8}


class ReferenceModel:
    """An ``.mlpackage`` (see the module docstring). Loading checks the whole program: every
    op known, every constant and weight blob readable."""

    def __init__(self, path: str | Path) -> None:
        package = read_package(path)
        self.path = Path(path)
        self.spec = package.spec
        self.program = load_program(package.spec, package.blobs)
        self.executor = Executor(self.program)
        self._check_interface()

    def get_spec(self) -> Any:
        return self.spec

    def _check_interface(self) -> None:
        desc = self.spec.description
        names = {f.name for f in desc.input}
        if names != set(self.program.inputs):
            raise MilProgramError(f"{self.path.name}: the description's inputs {sorted(names)} "
                                  f"are not the program's {sorted(self.program.inputs)}")
        outputs = {f.name for f in desc.output}
        if not outputs <= set(self.program.outputs):
            raise MilProgramError(f"{self.path.name}: outputs {sorted(outputs)} of the "
                                  f"description are not all program outputs "
                                  f"{self.program.outputs}")

    def predict(self, data: dict[str, Any]) -> dict[str, Any]:
        """One prediction (see the module docstring)."""
        feeds = {}
        for feature in self.spec.description.input:
            if feature.name not in data:
                raise MilProgramError(f"missing input feature {feature.name!r}")
            feeds[feature.name] = _feed(feature, data[feature.name])
        results = self.executor.run(feeds)
        return {f.name: _result(f, results[f.name]) for f in self.spec.description.output}


def _feed(feature: Any, value: Any) -> np.ndarray:
    kind = feature.type.WhichOneof("Type")
    if kind == "imageType":
        return _image_feed(feature, value)
    if kind == "multiArrayType":
        array_type = feature.type.multiArrayType
        from coremltools.proto import FeatureTypes_pb2

        dtype = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(array_type.dataType)
        array = np.asarray(value).astype(_ARRAY_TYPES.get(dtype, np.float32))
        shape = [int(s) for s in array_type.shape]
        if list(array.shape) != shape:
            raise MilProgramError(f"input {feature.name!r}: shape {list(array.shape)}, the "
                                  f"model takes {shape}")
        return array
    raise MilProgramError(f"input {feature.name!r} of type {kind} is not supported")


def _image_feed(feature: Any, image: Any) -> np.ndarray:
    """An RGB ``PIL.Image`` -> ``(1, 3, H, W)`` float32 pixels in the declared colour order."""
    from coremltools.proto import FeatureTypes_pb2

    it = feature.type.imageType
    space = FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(it.colorSpace)
    if space not in ("RGB", "BGR"):
        raise MilProgramError(f"input {feature.name!r}: {space} images are not supported by "
                              "the reference executor")
    if not hasattr(image, "convert") or not hasattr(image, "size"):
        raise MilProgramError(f"input {feature.name!r} is an image: pass a PIL.Image")
    if tuple(image.size) != (int(it.width), int(it.height)):
        raise MilProgramError(f"input {feature.name!r}: a {image.size[0]}x{image.size[1]} "
                              f"image, the model takes {it.width}x{it.height}")
    pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    chw = pixels.transpose(2, 0, 1)
    if space == "BGR":
        chw = chw[::-1]
    return np.ascontiguousarray(chw[None]).astype(np.float32)


def _result(feature: Any, value: Any) -> Any:
    kind = feature.type.WhichOneof("Type")
    if kind == "multiArrayType":
        from coremltools.proto import FeatureTypes_pb2

        dtype = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(
            feature.type.multiArrayType.dataType)
        if not isinstance(value, torch.Tensor):
            raise MilProgramError(f"output {feature.name!r} is not an array")
        return value.numpy().astype(_ARRAY_TYPES.get(dtype, np.float32))
    if kind in ("stringType", "int64Type", "dictionaryType", "doubleType"):
        return value
    raise MilProgramError(f"output {feature.name!r} of type {kind} is not supported")
