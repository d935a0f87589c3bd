"""Reading a saved Core ML package: the ``.mlpackage`` folder (its ``Manifest.json``, the model
spec protobuf and the weight files beside it) and the MIL blob storage format of those weights.

An ``.mlpackage`` holds ``Manifest.json``, whose ``rootModelIdentifier`` names the item with the
model spec (``Data/com.apple.CoreML/model.mlmodel``, a serialized ``CoreML.Specification.Model``);
an ML Program's large constants are ``blobFileValue`` references
(``@model_path/weights/weight.bin`` + byte offset) into the ``weights`` folder next to it.

Blob storage (MILBlob ``StorageFormat.hpp``, version 2), little-endian, 64-byte aligned:

* file header (64 bytes): ``uint32 count``, ``uint32 version`` (2), reserved;
* per blob, at the offset the program names, a 64-byte metadata record: ``uint32 sentinel``
  (``0xDEADBEEF``), ``uint32 data type``, ``uint64 size in bytes``, ``uint64 data offset``,
  reserved; the data itself sits at the data offset.

Every reference is checked: the sentinel, the stored type against the type the program
declares, the byte size against the declared shape, and the bounds of the file.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..deps import require
from .errors import MilProgramError

__all__ = ["BLOB_DTYPES", "BlobStore", "Package", "read_package"]

BLOB_SENTINEL = 0xDEADBEEF
BLOB_DTYPES: dict[int, str] = {
    1: "float16", 2: "float32", 3: "uint8", 4: "int8", 6: "int16", 7: "uint16",
    14: "int32", 15: "uint32",
}
"""MILBlob data-type codes this reader supports -> numpy dtype (sub-byte and fp8 types are
not: the message names them)."""
_BLOB_NAMES = {5: "bfloat16", 8: "int4", 9: "uint1", 10: "uint2", 11: "uint4", 12: "uint3",
               13: "uint6", 16: "float8e4m3fn", 17: "float8e5m2"}
_MODEL_PATH = "@model_path/weights/"


@dataclass
class BlobStore:
    """The weight files of one package (``weights_dir``), read on first use."""

    weights_dir: Path | None
    _files: dict[str, bytes] = field(default_factory=dict)

    def read(self, file_name: str, offset: int, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
        """The array ``shape`` of numpy ``dtype`` stored at ``offset`` of ``file_name``."""
        data = self._file(file_name)
        where = f"{file_name} at offset {offset}"
        if offset < 64 or offset + 64 > len(data):
            raise MilProgramError(f"weight blob {where}: offset outside the file "
                                  f"({len(data)} bytes)")
        sentinel, code, size, start = struct.unpack_from("<IIQQ", data, offset)
        if sentinel != BLOB_SENTINEL:
            raise MilProgramError(f"weight blob {where}: bad metadata sentinel "
                                  f"0x{sentinel:08X} (the weight file is corrupted)")
        stored = BLOB_DTYPES.get(code)
        if stored is None:
            raise MilProgramError(f"weight blob {where}: data type "
                                  f"{_BLOB_NAMES.get(code, code)} is not supported")
        if stored != dtype:
            raise MilProgramError(f"weight blob {where}: stores {stored}, the program "
                                  f"declares {dtype}")
        count = int(np.prod(shape, dtype=np.int64))
        if size != count * np.dtype(dtype).itemsize or start + size > len(data):
            raise MilProgramError(f"weight blob {where}: {size} bytes at {start} do not hold "
                                  f"{shape} {dtype} within the file")
        return np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"), count=count,
                             offset=start).reshape(shape)

    def _file(self, file_name: str) -> bytes:
        if file_name not in self._files:
            if not file_name.startswith(_MODEL_PATH) or "/" in file_name[len(_MODEL_PATH):]:
                raise MilProgramError(f"weight file reference {file_name!r} is not of the form "
                                      f"{_MODEL_PATH}NAME")
            if self.weights_dir is None:
                raise MilProgramError(f"the program references {file_name} but the model has "
                                      "no weights folder")
            path = self.weights_dir / file_name[len(_MODEL_PATH):]
            if not path.is_file():
                raise MilProgramError(f"weight file {path} is missing")
            data = path.read_bytes()
            if len(data) < 64 or struct.unpack_from("<I", data, 4)[0] != 2:
                raise MilProgramError(f"weight file {path} is not MIL blob storage version 2")
            self._files[file_name] = data
        return self._files[file_name]


@dataclass(frozen=True)
class Package:
    """A Core ML model read from disk: its spec protobuf and its weights."""

    path: Path
    spec: Any
    """``coremltools.proto.Model_pb2.Model``."""
    blobs: BlobStore


def read_package(path: str | Path) -> Package:
    """Read an ``.mlpackage`` folder (or a bare ``.mlmodel`` spec file, which has no weight
    files) without loading it into a runtime."""
    [model_pb2] = require("coreml", "coremltools.proto.Model_pb2",
                          what="the Core ML reference executor")
    path = Path(path)
    if path.is_dir():
        spec_file, weights = _manifest_items(path)
    elif path.is_file():
        spec_file, weights = path, None
    else:
        raise MilProgramError(f"{path}: no such Core ML model")
    spec = model_pb2.Model()
    try:
        spec.ParseFromString(spec_file.read_bytes())
    except Exception as e:  # protobuf's DecodeError
        raise MilProgramError(f"{spec_file}: not a Core ML model spec ({e})") from e
    return Package(path, spec, BlobStore(weights))


def _manifest_items(folder: Path) -> tuple[Path, Path | None]:
    """The model spec file and the weights folder that ``Manifest.json`` names."""
    manifest = folder / "Manifest.json"
    try:
        info = json.loads(manifest.read_text())
        items = info["itemInfoEntries"]
        root = items[info["rootModelIdentifier"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise MilProgramError(f"{folder}: unreadable package manifest ({e})") from e
    data = folder / "Data"
    spec_file = data / root["path"]
    weights = None
    for item in items.values():
        if item.get("name") == "weights" and item.get("author") == root.get("author"):
            weights = data / item["path"]
    if weights is None and (spec_file.parent / "weights").is_dir():
        weights = spec_file.parent / "weights"
    if not spec_file.is_file():
        raise MilProgramError(f"{folder}: the manifest's model spec {spec_file} is missing")
    return spec_file, weights
