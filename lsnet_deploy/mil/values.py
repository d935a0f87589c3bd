"""MIL types and values: a ``ValueType`` protobuf as a :class:`TensorType`, a ``Value``
protobuf (immediate or blob-file) as a tensor, string or list.

Runtime representation (what every kernel sees): a ``torch.Tensor``. Floating-point values of
an fp16 tensor are held as float32 tensors whose values are exactly representable in fp16
(the executor rounds every fp16 result), so kernels compute in float32 and the program's fp16
storage is honoured between ops. Integer and bool tensors keep their own dtype. Strings are
Python ``str`` (scalars) or ``list[str]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .errors import MilProgramError
from .package import BlobStore

__all__ = ["DTYPES", "FLOAT_DTYPES", "TensorType", "decode_value", "tensor_type", "to_runtime"]

DTYPES: dict[str, tuple[str, torch.dtype]] = {
    "FLOAT16": ("float16", torch.float32), "FLOAT32": ("float32", torch.float32),
    "FLOAT64": ("float64", torch.float64),
    "INT8": ("int8", torch.int8), "UINT8": ("uint8", torch.uint8),
    "INT16": ("int16", torch.int16), "UINT16": ("uint16", torch.int32),
    "INT32": ("int32", torch.int32), "UINT32": ("uint32", torch.int64),
    "INT64": ("int64", torch.int64), "BOOL": ("bool", torch.bool),
}
"""MIL data type -> (numpy dtype of its stored values, torch dtype of its runtime values)."""
FLOAT_DTYPES = ("FLOAT16", "FLOAT32", "FLOAT64")


@dataclass(frozen=True)
class TensorType:
    """A MIL tensor type: data type name (``"FLOAT16"``, ``"INT32"``, ``"STRING"``, ...) and
    shape (``None`` for a dimension that is not a compile-time constant)."""

    dtype: str
    shape: tuple[int | None, ...]

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES

    @property
    def static_shape(self) -> tuple[int, ...] | None:
        return None if any(d is None for d in self.shape) else self.shape  # type: ignore[return-value]

    def describe(self) -> str:
        """``fp16[1, 4, 64, 64]`` (MIL's short type names)."""
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        short = {"FLOAT16": "fp16", "FLOAT32": "fp32", "FLOAT64": "fp64"}
        return f"{short.get(self.dtype, self.dtype.lower())}[{dims}]"


def tensor_type(value_type: Any, where: str) -> TensorType | None:
    """The :class:`TensorType` of a ``ValueType`` protobuf (``None`` for list, dictionary and
    other non-tensor types)."""
    from coremltools.proto import MIL_pb2

    if value_type.WhichOneof("type") != "tensorType":
        return None
    tt = value_type.tensorType
    dims = tuple(int(d.constant.size) if d.WhichOneof("dimension") == "constant" else None
                 for d in tt.dimensions)
    if len(dims) != int(tt.rank) and not (tt.rank == 0 and not dims):
        raise MilProgramError(f"{where}: rank {tt.rank} but {len(dims)} dimensions")
    return TensorType(str(MIL_pb2.DataType.Name(tt.dataType)), dims)


def decode_value(value: Any, blobs: BlobStore, where: str) -> Any:
    """A ``Value`` protobuf as a runtime value: a tensor (see the module docstring), a
    ``str``, or a list of decoded values."""
    kind = value.type.WhichOneof("type")
    if kind == "listType":
        return [decode_value(v, blobs, where) for v in value.immediateValue.list.values]
    if kind != "tensorType":
        raise MilProgramError(f"{where}: constant of type {kind} is not supported")
    ttype = tensor_type(value.type, where)
    assert ttype is not None
    shape = ttype.static_shape
    if shape is None:
        raise MilProgramError(f"{where}: constant with a symbolic shape")
    if ttype.dtype == "STRING":
        strings = list(value.immediateValue.tensor.strings.values)
        return strings[0] if not shape and len(strings) == 1 else strings
    if ttype.dtype not in DTYPES:
        raise MilProgramError(f"{where}: constants of type {ttype.dtype} are not supported")
    np_dtype = DTYPES[ttype.dtype][0]
    if value.WhichOneof("value") == "blobFileValue":
        blob = value.blobFileValue
        array = blobs.read(blob.fileName, int(blob.offset), np_dtype, shape)
    else:
        array = _immediate(value.immediateValue.tensor, np_dtype, shape, where)
    return to_runtime(array, ttype.dtype)


def _immediate(tensor: Any, np_dtype: str, shape: tuple[int, ...], where: str) -> np.ndarray:
    field_name = tensor.WhichOneof("value")
    if field_name is None:
        raw: Any = np.zeros(0, dtype=np_dtype)
    elif field_name == "bytes":
        blob = bytes(tensor.bytes.values)
        raw = np.frombuffer(blob, dtype=np.dtype(np_dtype).newbyteorder("<"))
    else:
        raw = np.asarray(list(getattr(tensor, field_name).values)).astype(np_dtype)
    count = int(np.prod(shape, dtype=np.int64))
    if raw.size != count:
        raise MilProgramError(f"{where}: {raw.size} values for a constant of shape {shape}")
    return raw.reshape(shape)


def to_runtime(array: np.ndarray, mil_dtype: str) -> torch.Tensor:
    """A numpy array of MIL type ``mil_dtype`` as a runtime tensor (fp16 held as float32)."""
    target = DTYPES[mil_dtype][1]
    if mil_dtype == "FLOAT16":
        array = np.asarray(array, dtype=np.float16)
    return torch.from_numpy(np.array(array, copy=True)).to(target)
