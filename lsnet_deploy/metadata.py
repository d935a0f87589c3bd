"""Artifact metadata: one dict embedded natively in the artifact and written as a JSON sidecar.

Native metadata is string -> string (ONNX ``metadata_props``, CoreML
``user_defined_metadata``): lists and numbers are JSON-encoded (:func:`to_native`). A format
that stores one JSON document instead (TFLite's ``lsnet_deploy`` entry) stores the decoded
values (:func:`from_native`), so nothing is encoded twice. The sidecar ``<artifact>.json``
holds the same fields plus export details and the validation results; docs/sidecar.md
describes every field and docs/sidecar.schema.json is its JSON Schema.

What the artifact takes and returns is recorded from the file where the format can read it
(:func:`io_metadata`: the exporter's ``ExportResult.metadata``), from the IO spec otherwise
(:func:`spec_io`); the flat ``input_dtype`` is always that of ``inputs[0]``: one input dtype,
the real one.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from .errors import ArtifactError, first_line
from .preprocess import Preprocess
from .spec import IOSpec, preprocessing_recipe

__all__ = [
    "METADATA_SCHEMA",
    "SIDECAR_SUFFIX",
    "build_metadata",
    "from_native",
    "io_metadata",
    "read_sidecar",
    "sidecar_path",
    "spec_io",
    "tensor_entry",
    "to_native",
    "tool_versions",
    "write_json_atomic",
    "write_text_atomic",
]

SIDECAR_SUFFIX = ".json"
METADATA_SCHEMA = 2
"""Version of the metadata fields (``lsnet_deploy.schema``). 2: ``inputs`` / ``outputs`` for
every format, ``input_dtype`` the real one, ``output_kind``, ``preprocessing``."""


def tool_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of ``names`` (pip distribution names; missing ones omitted)."""
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def tensor_entry(name: str, shape: list[int | str], dtype: str,
                 quantization: list[float] | None = None) -> dict[str, Any]:
    """One entry of the metadata's ``inputs`` / ``outputs``: ``shape`` with ``"batch"`` for a
    dynamic batch, ``dtype`` as the file declares it (``float32``, ``float16``, ``uint8``,
    ``int8``; CoreML's classifier features ``string`` / ``dictionary``), ``quantization``
    ``[scale, zero_point]`` of an integer tensor that holds real values (else ``None``)."""
    return {"name": name, "shape": list(shape), "dtype": dtype, "quantization": quantization}


def io_metadata(inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """The metadata entries for what an artifact takes and returns (:func:`tensor_entry`
    dicts, as read from the file): ``inputs``, ``outputs`` and the ``input_dtype`` of the first
    input, which the flat ``input_*`` fields describe."""
    return {"input_dtype": inputs[0]["dtype"], "inputs": inputs, "outputs": outputs}


def spec_io(spec: IOSpec) -> dict[str, Any]:
    """:func:`io_metadata` as ``spec`` describes the artifact: the input of its dtype, each
    output ``(batch, num_classes)`` float32 (a format whose file says otherwise records what
    the file says)."""
    batch: int | str = "batch" if spec.batch is None else spec.batch
    shape = [batch if d is None else d for d in spec.input_shape]
    outputs = [tensor_entry(n, [batch, spec.num_classes], "float32") for n in spec.output_names]
    return io_metadata([tensor_entry(spec.input_name, shape, spec.dtype)], outputs)


def build_metadata(
    *,
    variant: str,
    spec: IOSpec,
    precision: str,
    fmt: str,
    weights: dict[str, Any],
    dynamic_batch: bool,
    tools: tuple[str, ...] = ("lsnet-deploy", "torch", "numpy"),
    preprocess: Preprocess | None = None,
) -> dict[str, Any]:
    """The metadata every artifact carries (JSON-able values); ``tools``: the packages whose
    versions it records (the exporters' registry lists every format's); ``preprocess``: the
    preprocessing recorded as ``preprocessing`` (default: :class:`Preprocess` at the spec's
    size, what exports calibrate and validate with). The exporter's ``ExportResult.metadata``
    is merged over it: :func:`io_metadata` read from the file, ``output_kind``, the format's
    own entries (docs/sidecar.md)."""
    io = spec_io(spec)
    return {
        "lsnet_deploy.schema": METADATA_SCHEMA,
        "variant": variant,
        "format": fmt,
        "precision": precision,
        "img_size": list(spec.img_size),
        "input_name": spec.input_name,
        "input_shape": list(io["inputs"][0]["shape"]),
        "input_dtype": io["input_dtype"],
        "layout": spec.layout,
        "value_range": spec.value_range,
        "colour_order": spec.colour_order,
        "mean": list(spec.mean),
        "std": list(spec.std),
        "preprocessing": preprocessing_recipe(spec, preprocess),
        "inputs": io["inputs"],
        "outputs": io["outputs"],
        "output_names": list(spec.output_names),
        "output_kind": "logits",
        "num_classes": spec.num_classes,
        "dynamic_batch": dynamic_batch,
        "weights_kind": weights.get("kind"),
        "weights_path": weights.get("path"),
        "source_checkpoint_sha256": weights.get("sha256"),
        "tool_versions": tool_versions(tools),
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
    }


def to_native(metadata: dict[str, Any]) -> dict[str, str]:
    """String -> string form for native metadata (non-strings JSON-encoded)."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}


def from_native(metadata: dict[str, str]) -> dict[str, Any]:
    """Inverse of :func:`to_native` (strings that are not JSON stay strings)."""
    out: dict[str, Any] = {}
    for k, v in metadata.items():
        try:
            out[k] = json.loads(v)
        except (json.JSONDecodeError, TypeError):
            out[k] = v
    return out


def sidecar_path(artifact: Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    return artifact.with_name(artifact.name + SIDECAR_SUFFIX)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temp file in the same folder, then rename over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to a temp file in the same folder, then rename over ``path``."""
    write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def read_sidecar(artifact: Path) -> dict[str, Any] | None:
    """The sidecar of ``artifact`` as a dict if it exists (``None`` otherwise), as written:
    only its JSON is checked here (:func:`lsnet_deploy.sidecar.load_sidecar` checks its
    fields and :func:`lsnet_deploy.sidecar.verify_sidecar` that it describes the artifact).

    Raises:
        ArtifactError: the sidecar cannot be read, is not JSON (or is nested too deeply to
            be a sidecar) or is not a JSON object.
    """
    p = sidecar_path(artifact)
    if not p.is_file():
        return None
    redo = "re-export the artifact, or delete the sidecar to use the metadata embedded in it"
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{p}: cannot read the sidecar ({first_line(e, 80)}); {redo}") from None
    except RecursionError:
        raise ArtifactError(f"{p}: the sidecar's JSON is nested too deeply to be a sidecar; "
                            f"{redo}") from None
    except ValueError as e:  # JSONDecodeError, or an integer too long to convert
        raise ArtifactError(f"{p}: the sidecar is not valid JSON ({first_line(e, 80)}); "
                            f"{redo}") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{p}: the sidecar must be a JSON object, not "
                            f"{type(data).__name__}; {redo}")
    return data
