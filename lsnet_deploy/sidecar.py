"""Reading and verifying an artifact's JSON sidecar (``model.onnx`` -> ``model.onnx.json``).

A sidecar is a claim about the file next to it. Before anything acts on it, three things are
checked, each a one-line :class:`~lsnet_deploy.errors.ArtifactError`:

1. **structure** (:func:`load_sidecar`): a JSON object with a ``metadata`` object whose fields
   have the types and values the readers need (variant, ``img_size``, ``input_shape``
   consistent with them and the layout, mean/std, ...), a ``sha256`` string, and so on.
   :func:`check_metadata` applies the same checks to the metadata embedded in an artifact.
2. **identity** (:func:`verify_sidecar`): the sidecar's ``sha256`` equals
   :func:`artifact_sha256` of the artifact, and its metadata equals the metadata embedded in
   the artifact for every field both have (:data:`COMPARED_FIELDS`).
3. **input** (done by :func:`lsnet_deploy.pipeline.validation.validate`): the input the
   metadata describes is the input the artifact really takes.

**sha256 of a folder artifact** (``.mlpackage``): the digest of its files' relative POSIX
paths and contents in sorted order (``"<path>\\0<file sha256>\\n"`` per file), see
:func:`artifact_sha256`. Sidecars written before folder digests existed carry ``""`` for a
folder; such a sidecar is trusted only if the metadata embedded in the package agrees with it
(step 2), and a folder whose package embeds no lsnet-deploy metadata cannot be verified. A
file's sidecar must always carry its digest.

**What the commands do with an untrusted sidecar**: ``validate`` refuses it (the error says
to re-export, or to delete the sidecar so the embedded metadata is used). ``bench`` (and
``bench android``, ``bench ios-harness``) label results from the sidecar only when it is
trusted (:func:`trusted_sidecar`); otherwise it is ignored with a warning and the file is
described from itself, so a copied sidecar can never make another model an LSNet result.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .checkpoint import file_sha256
from .errors import ArtifactError, LsnetDeployError, MissingDependencyError, first_line
from .metadata import from_native, read_sidecar, sidecar_path

if TYPE_CHECKING:
    from .exporters import Exporter

__all__ = [
    "COMPARED_FIELDS",
    "REDO",
    "Sidecar",
    "artifact_sha256",
    "check_metadata",
    "load_sidecar",
    "trusted_sidecar",
    "verify_sidecar",
]

log = logging.getLogger(__name__)

REDO = "re-export the artifact, or delete the sidecar to use the metadata embedded in it"
"""What to do about a sidecar that cannot be trusted (the end of every such message)."""

COMPARED_FIELDS = ("variant", "precision", "img_size", "input_shape", "input_name",
                   "input_dtype", "layout", "value_range", "mean", "std", "num_classes",
                   "dynamic_batch")
"""Metadata fields a sidecar and the artifact's embedded metadata must agree on."""

_HEX64 = re.compile(r"[0-9a-f]{64}")
_LAYOUTS = ("NCHW", "NHWC")
_DTYPES = ("float32", "float16", "uint8", "int8")
_VALUE_RANGES = ("normalized", "0..255")
_MAX_SIDE = 16384


@dataclass(frozen=True)
class Sidecar:
    """A sidecar whose structure was checked (``path``: the sidecar file; ``data``: its JSON)."""

    path: Path
    data: dict[str, Any]

    @property
    def metadata(self) -> dict[str, Any]:
        """The artifact metadata (checked by :func:`check_metadata`)."""
        meta: dict[str, Any] = self.data["metadata"]
        return meta

    @property
    def sha256(self) -> str:
        """The artifact's digest as recorded (``""``: a folder artifact of an older export)."""
        return str(self.data["sha256"])

    @property
    def precision(self) -> str | None:
        value = self.data.get("precision") or self.metadata.get("precision")
        return str(value) if value else None

    @property
    def export(self) -> dict[str, Any]:
        """The ``export`` section (``{}`` if absent)."""
        return dict(self.data.get("export") or {})

    @property
    def validation(self) -> dict[str, Any]:
        """The ``validation`` section (``{}`` if absent)."""
        return dict(self.data.get("validation") or {})

    @property
    def status(self) -> str | None:
        """``"passed"`` / ``"failed"`` as recorded at export (``None`` if absent)."""
        value = self.data.get("status")
        return str(value) if value is not None else None


def artifact_sha256(path: Path) -> str:
    """Hex sha256 of an artifact: of the file, or for a folder artifact (``.mlpackage``) of
    its files' relative POSIX paths and contents in sorted order (``"<path>\\0<file
    sha256>\\n"`` per file)."""
    path = Path(path)
    if not path.is_dir():
        return file_sha256(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path).as_posix()}\0{file_sha256(f)}\n".encode())
    return h.hexdigest()


def load_sidecar(artifact: Path) -> Sidecar | None:
    """The sidecar of ``artifact`` with its structure checked, ``None`` when there is none.

    Raises:
        ArtifactError: unreadable, not a JSON object, or a field missing or of the wrong type
            or value (the message names the sidecar and the field).
    """
    data = read_sidecar(artifact)
    if data is None:
        return None
    where = str(sidecar_path(artifact))
    meta = data.get("metadata")
    if not isinstance(meta, dict):
        raise ArtifactError(f"{where}: {'no' if meta is None else 'a malformed'} 'metadata' "
                            f"object (got {_show(meta)}); {REDO}")
    check_metadata(meta, f"{where}: metadata", REDO)
    digest = data.get("sha256")
    if not isinstance(digest, str) or (digest and not _HEX64.fullmatch(digest)):
        raise ArtifactError(f"{where}: sha256 must be 64 lowercase hex digits, got "
                            f"{_show(digest)}; {REDO}")
    for key in ("export", "validation"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise ArtifactError(f"{where}: {key} must be an object, got {_show(data[key])}; "
                                f"{REDO}")
    for key in ("precision", "format", "status", "artifact"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise ArtifactError(f"{where}: {key} must be a string, got {_show(data[key])}; "
                                f"{REDO}")
    top, inner = data.get("precision"), meta.get("precision")
    if top is not None and inner is not None and top != inner:
        raise ArtifactError(f"{where}: precision {_show(top)} differs from metadata.precision "
                            f"{_show(inner)}; {REDO}")
    for key in ("min_cosine", "min_photo_cosine"):
        gate = (data.get("export") or {}).get(key)
        if gate is not None and not _finite(gate):
            raise ArtifactError(f"{where}: export.{key} must be a number, got {_show(gate)}; "
                                f"{REDO}")
    cosine = (data.get("validation") or {}).get("mean_cosine")
    if cosine is not None and not _finite(cosine):
        raise ArtifactError(f"{where}: validation.mean_cosine must be a number, got "
                            f"{_show(cosine)}; {REDO}")
    return Sidecar(sidecar_path(artifact), data)


def check_metadata(meta: dict[str, Any], where: str, todo: str = "re-export the artifact") -> None:
    """Check artifact metadata (a sidecar's ``metadata`` or the embedded one, decoded): the
    fields :func:`~lsnet_deploy.pipeline.validation.spec_from_metadata` and the benchmark
    labels read. ``variant`` and ``img_size`` are required, the others optional; an
    ``input_shape`` must agree with ``img_size``, the layout and ``dynamic_batch``.

    Raises:
        ArtifactError: ``where: <field> must be ..., got ...; <todo>``.
    """
    def bad(field: str, what: str) -> ArtifactError:
        return ArtifactError(f"{where}: {field} must be {what}, got {_show(meta.get(field))}; "
                             f"{todo}")

    if not _text(meta.get("variant")):
        raise bad("variant", "a variant name")
    size = meta.get("img_size")
    if not (isinstance(size, list) and len(size) == 2 and all(_count(v, _MAX_SIDE) for v in size)):
        raise bad("img_size", f"[height, width] (integers 1..{_MAX_SIDE})")
    for field in ("precision", "input_name", "colour_order"):
        if field in meta and not _text(meta[field]):
            raise bad(field, "a non-empty string")
    for field, allowed in (("layout", _LAYOUTS), ("input_dtype", _DTYPES),
                           ("value_range", _VALUE_RANGES)):
        if field in meta and meta[field] not in allowed:
            raise bad(field, "one of " + ", ".join(allowed))
    for field, positive in (("mean", False), ("std", True)):
        if field in meta:
            v = meta[field]
            if not (isinstance(v, list) and len(v) == 3 and all(_finite(x) for x in v)
                    and (not positive or all(x > 0 for x in v))):
                raise bad(field, f"three {'positive ' if positive else ''}numbers")
    if "num_classes" in meta and not _count(meta["num_classes"], 10**7):
        raise bad("num_classes", "a positive integer")
    names = meta.get("output_names")
    if "output_names" in meta and not (isinstance(names, list) and names
                                       and all(_text(n) for n in names)):
        raise bad("output_names", "a list of names")
    if "dynamic_batch" in meta and not isinstance(meta["dynamic_batch"], bool):
        raise bad("dynamic_batch", "true or false")
    for field in ("weights_kind", "weights_path", "source_checkpoint_sha256"):
        if meta.get(field) is not None and not isinstance(meta[field], str):
            raise bad(field, "a string or null")
    if "input_shape" in meta:
        _check_input_shape(meta, bad)


def _check_input_shape(meta: dict[str, Any], bad: Callable[[str, str], ArtifactError]) -> None:
    shape = meta["input_shape"]
    dynamic = bool(meta.get("dynamic_batch"))
    ok = isinstance(shape, list) and len(shape) == 4 and all(
        _count(d, _MAX_SIDE) for d in shape[1:])
    batch_ok = ok and (shape[0] == "batch" if dynamic else _count(shape[0], 10**6))
    if not ok or not batch_ok:
        first = '"batch"' if dynamic else "the batch size"
        raise bad("input_shape", f"[{first}, 4 dims of positive integers]")
    h, w = meta["img_size"]
    layout = meta.get("layout", "NCHW")
    expected = [3, h, w] if layout == "NCHW" else [h, w, 3]
    if list(shape[1:]) != expected:
        raise bad("input_shape", f"[batch, {', '.join(map(str, expected))}] (img_size "
                                 f"{[h, w]}, {layout})")


def verify_sidecar(artifact: Path, sidecar: Sidecar, exp: Exporter) -> None:
    """Check that ``sidecar`` describes ``artifact`` (see the module docstring): its sha256,
    and its metadata against the metadata embedded in the artifact.

    The digest decides for a file (a sidecar copied next to another file never matches);
    the embedded metadata, when it can be read, must also agree field by field
    (:data:`COMPARED_FIELDS`: an edited sidecar). A folder artifact whose sidecar has no
    digest (older exports) is verified by its embedded metadata alone, which must exist.

    Raises:
        ArtifactError: a digest or a metadata field that differs, a file's sidecar without a
            digest, or a folder artifact that cannot be verified.
        MissingDependencyError: a folder without digest whose format's package is needed to
            read its embedded metadata.
    """
    artifact = Path(artifact)
    name, side = artifact.name, sidecar.path.name
    fmt = sidecar.data.get("format")
    if fmt is not None and fmt != exp.name:
        raise ArtifactError(f"{name}: {side} describes a {_show(fmt)} artifact, not "
                            f"{exp.name}; {REDO}")
    if sidecar.sha256:
        if artifact_sha256(artifact) != sidecar.sha256:
            raise ArtifactError(f"{name}: its sha256 differs from the one in {side} (the "
                                f"artifact was replaced or changed after export); {REDO}")
    elif not artifact.is_dir():
        raise ArtifactError(f"{side}: no sha256 of {name} (every export records it); {REDO}")
    try:
        native = from_native(exp.read_metadata(artifact))
    except Exception as e:
        if sidecar.sha256:  # the digest matched: the file is the one exported; a broken
            log.debug("embedded metadata of %s not read: %s", name, e)  # one fails to run
            return
        if isinstance(e, LsnetDeployError):
            raise
        raise ArtifactError(f"{name}: cannot be verified: {side} has no sha256 and the "
                            f"embedded metadata cannot be read ({type(e).__name__}: "
                            f"{first_line(e, 80)}); {REDO}") from e
    if "variant" not in native:
        if not sidecar.sha256:
            raise ArtifactError(f"{name}: cannot be verified: {side} has no sha256 and the "
                                f"artifact embeds no lsnet-deploy metadata; {REDO}")
        return  # the digest matched: the sidecar describes exactly this file
    for field in COMPARED_FIELDS:
        if field in native and field in sidecar.metadata and (
                native[field] != sidecar.metadata[field]):
            raise ArtifactError(
                f"{name}: {side} says {field} {_show(sidecar.metadata[field])} but the "
                f"artifact's embedded metadata says {_show(native[field])}; {REDO}")


def trusted_sidecar(artifact: Path, exp: Exporter) -> tuple[Sidecar | None, str | None]:
    """The sidecar of ``artifact`` when it can be trusted, else ``(None, why)``: the reason it
    was ignored (logged as a warning; ``None`` when there is no sidecar). For labelling
    (``bench``): an untrusted sidecar never labels a file."""
    try:
        sidecar = load_sidecar(artifact)
        if sidecar is None:
            return None, None
        verify_sidecar(artifact, sidecar, exp)
    except (ArtifactError, MissingDependencyError) as e:
        why = str(e).removesuffix("; " + REDO)
        log.warning("ignoring the sidecar of %s: %s; the file is described from itself",
                    Path(artifact).name, why)
        return None, why
    return sidecar, None


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _count(value: Any, limit: int) -> bool:
    """A positive integer up to ``limit`` (booleans are not integers here)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= limit


def _finite(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _show(value: Any, limit: int = 60) -> str:
    """``repr`` of a value from a file, cut to ``limit`` characters (one-line messages)."""
    text = repr(value) if not isinstance(value, (dict, list)) else _short_container(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short_container(value: dict[str, Any] | list[Any]) -> str:
    """A container shown without recursing into it (a hostile one may be deeply nested)."""
    if isinstance(value, dict):
        return "{...}" if value else "{}"
    items = [repr(v) if not isinstance(v, (dict, list)) else "..." for v in value[:8]]
    return "[" + ", ".join(items) + (", ...]" if len(value) > 8 else "]")
