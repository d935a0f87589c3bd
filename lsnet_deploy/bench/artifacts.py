"""What an artifact file is, for labelling benchmark results: format, model label, precision;
and the model files of a folder.

Works for any file of a registered format (``.onnx``, ``.tflite``, ``.mlpackage``, ...), not
only lsnet-deploy's: the JSON sidecar written by ``lsnet-deploy export`` is read first, but only
when it can be trusted (:func:`lsnet_deploy.sidecar.trusted_sidecar`: well formed, its sha256
that of the file, its metadata the file's embedded metadata). A sidecar that cannot be trusted
(copied next to another model, edited, corrupted) is ignored with a warning, and the file is
described from itself, as if it had none: by the metadata lsnet-deploy embeds natively, else by
its format's exporter (``precision_of``: ONNX quantization ops and initializer types, TFLite
weight types) and its file name. What cannot be told is ``"unknown"``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import BenchmarkError
from ..exporters import format_of_suffix, get_exporter
from ..metadata import from_native
from ..sidecar import trusted_sidecar
from .schema import PRECISIONS

__all__ = ["ArtifactInfo", "describe_artifact", "expand_artifacts", "format_of"]

log = logging.getLogger(__name__)

_PRECISION_IN_NAME = re.compile(r"(?:^|[_\-.])(fp32|fp16|int8|w8a8)(?:$|[_\-.])")


@dataclass(frozen=True)
class ArtifactInfo:
    """``fmt``: the format name; ``model``: the LSNet variant when the
    artifact says so, else the file stem; ``precision``: ``fp32`` / ``fp16`` / ``int8`` /
    ``w8a8`` / ``unknown``; ``from_sidecar``: whether lsnet-deploy's sidecar was found and
    trusted; ``mean_cosine``: the sidecar's validation cosine vs PyTorch (``None`` if unknown);
    ``failed_gate``: the sidecar marks the artifact as failing its validation gate;
    ``ignored_sidecar``: why a sidecar next to the file was not trusted (``None``: there was
    none, or it was trusted); ``input_shape``: the trusted sidecar's ``metadata.input_shape``
    (``"batch"`` for a dynamic batch), ``None`` if unknown."""

    path: Path
    fmt: str
    model: str
    precision: str
    from_sidecar: bool = False
    mean_cosine: float | None = None
    failed_gate: bool = False
    ignored_sidecar: str | None = None
    input_shape: list[int | str] | None = None


def format_of(path: Path) -> str:
    """The format of a file by suffix, or :class:`BenchmarkError`."""
    suffixes = format_of_suffix()
    fmt = suffixes.get(Path(path).suffix.lower())
    if fmt is None:
        raise BenchmarkError(
            f"{path}: not a model file lsnet-deploy can benchmark "
            f"(known suffixes: {', '.join(suffixes)})"
        )
    return fmt


def expand_artifacts(paths: Iterable[Path], suffixes: tuple[str, ...] | None = None
                     ) -> list[Path]:
    """``paths`` with every folder that is not itself a model (an ``.mlpackage`` is) replaced
    by the model files under it, recursively and sorted. Hidden entries (names starting with
    ``"."``, e.g. the staging folders an export leaves behind when killed,
    ``.<artifact>.lsnet-tmp-XXXX/``) are skipped, and so are files of other types (sidecars).
    ``suffixes``: the model suffixes to keep (default: every registered format's).

    Raises:
        BenchmarkError: a folder without any model file.
    """
    known = tuple(s.lower() for s in (suffixes or tuple(format_of_suffix())))
    out: list[Path] = []
    for given in paths:
        path = Path(given)
        if not path.is_dir() or path.suffix.lower() in format_of_suffix():
            out.append(path)
            continue
        found = _models_under(path, known)
        if not found:
            raise BenchmarkError(f"{path}: no model file in this folder (looked for "
                                 f"{', '.join(known)}; hidden entries are skipped)")
        out += found
    return out


def _models_under(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    found: list[Path] = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue  # staging folders, editor and OS files
        if entry.suffix.lower() in suffixes and (entry.is_file() or entry.is_dir()):
            found.append(entry)
        elif entry.is_dir() and not entry.is_symlink():
            found += _models_under(entry, suffixes)
    return found


def describe_artifact(path: Path) -> ArtifactInfo:
    """Format, model label and precision of ``path`` (which must exist); see the module
    docstring for what is trusted."""
    path = Path(path)
    fmt = format_of(path)
    if not path.exists():
        raise BenchmarkError(f"{path}: no such file")
    exp = get_exporter(fmt)
    sidecar, ignored = trusted_sidecar(path, exp)
    if sidecar is not None:
        cosine = sidecar.validation.get("mean_cosine")
        return ArtifactInfo(path, fmt, str(sidecar.metadata["variant"]),
                            _label(sidecar.precision), True,
                            float(cosine) if cosine is not None else None,
                            sidecar.status == "failed",
                            input_shape=sidecar.metadata.get("input_shape"))
    model, precision = None, "unknown"
    try:  # the metadata lsnet-deploy embeds natively (what `validate` reads without a sidecar)
        native = from_native(exp.read_metadata(path))
        variant = native.get("variant")
        model = variant.strip() if isinstance(variant, str) and variant.strip() else None
        precision = _label(native.get("precision"))
        if precision == "unknown":
            precision = _label(exp.precision_of(path))
    except Exception as e:  # noqa: BLE001 - a foreign or broken file: label it, the runtime will complain
        log.debug("could not inspect %s: %s", path, e)
    if precision == "unknown":
        match = _PRECISION_IN_NAME.search(path.stem.lower())
        precision = match.group(1) if match else "unknown"
    return ArtifactInfo(path, fmt, model or path.stem, precision, ignored_sidecar=ignored)


def _label(precision: object) -> str:
    """A precision label of a result (:data:`~lsnet_deploy.bench.schema.PRECISIONS`), or
    ``"unknown"``."""
    return precision if isinstance(precision, str) and precision in PRECISIONS else "unknown"
