"""The split recorded in an image folder's manifest (``SOURCES.json``): which photos calibrate
and which are held out for validation.

The default image set (``calibration/``) records, for every photo, its provenance and a
``"split"`` field, ``"calibration"`` or ``"validation"``, chosen once so that the validation
photos are distinct photographs balanced across sources and scene types (see
``calibration/README.md``). A folder whose manifest has no ``"split"`` field (or that has no
manifest) is not split here: :func:`~lsnet_deploy.pipeline.images.split_images` then holds out
every 4th image. Pure: reads one JSON file and lists nothing but the names it is given.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ImageError

__all__ = ["MANIFEST_NAME", "SPLITS", "ManifestSplit", "read_split"]

MANIFEST_NAME = "SOURCES.json"
"""The manifest's file name inside an image folder."""

SPLITS = ("calibration", "validation")
"""The values of an entry's ``"split"`` field."""


@dataclass(frozen=True)
class ManifestSplit:
    """The file names (no folders) that the manifest ``path`` marks for each split."""

    path: Path
    calibration: frozenset[str]
    validation: frozenset[str]


def read_split(folder: Path, image_names: Iterable[str]) -> ManifestSplit | None:
    """The split recorded in ``folder/SOURCES.json``; ``None`` when the folder has no
    manifest or no entry of it has a ``"split"`` field.

    ``image_names``: the image files of the folder. The manifest must be a JSON list of
    objects, each with a ``"file"`` name; once one entry has a ``"split"``, every entry needs
    one (``"calibration"`` or ``"validation"``), names must be unique and each must be one of
    ``image_names``. Raises :class:`ImageError` (one line, naming the fix) otherwise.
    """
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        return None
    entries = _entries(path)
    if not any("split" in e for e in entries):
        return None
    chosen: dict[str, str] = {}
    for i, entry in enumerate(entries):
        name = _file_name(path, i, entry)
        split = entry.get("split")
        if split not in SPLITS:
            raise _bad(path, f"{name}: \"split\" is {split!r}, expected one of "
                             f"{', '.join(repr(s) for s in SPLITS)}")
        if name in chosen:
            raise _bad(path, f"{name} is listed twice")
        chosen[name] = split
    missing = sorted(set(chosen) - set(image_names))
    if missing:
        more = f", +{len(missing) - 3} more" if len(missing) > 3 else ""
        raise ImageError(
            f"{path} names {len(missing)} image file(s) not in {path.parent}: "
            f"{', '.join(missing[:3])}{more}; restore them or remove their entries")
    return ManifestSplit(
        path,
        frozenset(n for n, s in chosen.items() if s == "calibration"),
        frozenset(n for n, s in chosen.items() if s == "validation"),
    )


def _entries(path: Path) -> list[dict[str, Any]]:
    """The manifest's entries: a JSON list of objects."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise _bad(path, f"unreadable ({e})") from None
    except json.JSONDecodeError as e:
        raise _bad(path, f"not valid JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(data, list) or not all(isinstance(e, dict) for e in data):
        raise _bad(path, "expected a JSON list of objects, one per image")
    return data


def _file_name(path: Path, index: int, entry: dict[str, Any]) -> str:
    """An entry's ``"file"``: a plain file name inside the folder."""
    name = entry.get("file")
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise _bad(path, f"entry {index}: \"file\" must be a file name inside the folder, "
                         f"not {name!r}")
    return name


def _bad(path: Path, what: str) -> ImageError:
    """The error for a malformed manifest: what is wrong, and the way out."""
    return ImageError(f"malformed image manifest {path}: {what}; fix it, or remove its "
                      "\"split\" fields to hold out every 4th image")
