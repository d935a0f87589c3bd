"""Artifact metadata: one dict embedded natively in the artifact and written as a JSON sidecar.

Native metadata is string -> string (ONNX ``metadata_props``, CoreML
``user_defined_metadata``): lists and numbers are JSON-encoded. The sidecar
``<artifact>.json`` holds the same fields plus export details and the validation results.
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
from .spec import IOSpec

__all__ = [
    "SIDECAR_SUFFIX",
    "build_metadata",
    "read_sidecar",
    "sidecar_path",
    "to_native",
    "tool_versions",
    "write_json_atomic",
    "write_text_atomic",
]

SIDECAR_SUFFIX = ".json"


def tool_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of ``names`` (pip distribution names; missing ones omitted)."""
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def build_metadata(
    *,
    variant: str,
    spec: IOSpec,
    precision: str,
    fmt: str,
    weights: dict[str, Any],
    dynamic_batch: bool,
    tools: tuple[str, ...] = ("lsnet-deploy", "torch", "numpy"),
) -> dict[str, Any]:
    """The metadata every artifact carries (JSON-able values); ``tools``: the packages whose
    versions it records (the exporters' registry lists every format's)."""
    return {
        "lsnet_deploy.schema": 1,
        "variant": variant,
        "format": fmt,
        "precision": precision,
        "img_size": list(spec.img_size),
        "input_name": spec.input_name,
        "input_shape": ["batch" if d is None else d for d in spec.input_shape],
        "input_dtype": spec.dtype,
        "layout": spec.layout,
        "value_range": spec.value_range,
        "colour_order": spec.colour_order,
        "mean": list(spec.mean),
        "std": list(spec.std),
        "output_names": list(spec.output_names),
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
