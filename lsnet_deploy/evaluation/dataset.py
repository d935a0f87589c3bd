"""The images ``evaluate`` scores and their labels, listed without decoding anything.

Three layouts of ``--images DIR`` (docs/evaluate.md):

- **synset folders** (the ImageNet val layout, torchvision ``ImageFolder``): one subfolder per
  class, named by its WordNet id (``n01440764`` ...); the class index of a folder is its
  position in the sorted folder names. There must be exactly one folder per class of the
  model (an empty one is fine); for a 1000-class model the first and last must be the first
  and last ImageNet-1K synsets (``n01440764`` tench, ``n15075141`` toilet tissue), so that the
  sorted order is the order of the class names.
- **a labels file** (``--labels FILE``): one ``path<TAB>index`` line per image (a comma or
  spaces also separate; the path is relative to ``DIR`` and may contain spaces; ``#`` starts
  a comment line; one header line such as ``path,label`` is allowed). Exactly the files it
  lists are scored; each must exist, once, with an index in ``[0, num_classes)``.
- **a plain folder**: image files directly in ``DIR``, no labels: agreement only.

``limit`` keeps a spread of the images: labelled ones round-robin over the classes (the first
image of every class, then the second, ...), so ``--limit 1000`` on ImageNet val is one image
per class; unlabelled ones in name order.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import DatasetError, ImageError, UnsupportedOptionError
from ..preprocess import IMAGE_SUFFIXES, list_images

__all__ = [
    "IMAGENET_FIRST_SYNSET",
    "IMAGENET_LAST_SYNSET",
    "LabelledImages",
    "Layout",
    "parse_labels",
    "read_dataset",
    "spread",
]

Layout = Literal["synsets", "labels-file", "unlabelled"]

WNID = re.compile(r"n\d{8}")
IMAGENET_FIRST_SYNSET = "n01440764"
"""The first ImageNet-1K synset in sorted order: class 0, tench."""
IMAGENET_LAST_SYNSET = "n15075141"
"""The last ImageNet-1K synset in sorted order: class 999, toilet tissue."""
_HEADER_WORDS = frozenset({"label", "labels", "class", "class_index", "index", "target", "y"})
_SHOWN = 3


@dataclass(frozen=True)
class LabelledImages:
    """The images to score, in order, and their class indices.

    Attributes:
        folder: the ``--images`` folder.
        paths: the image files (after ``limit``).
        labels: the class index of each path (``None``: unlabelled, agreement only).
        layout: ``synsets``, ``labels-file`` or ``unlabelled``.
        total: how many images the layout lists before ``limit``.
    """

    folder: Path
    paths: tuple[Path, ...]
    labels: tuple[int, ...] | None
    layout: Layout
    total: int

    @property
    def source(self) -> str:
        """``"DIR (synset folders, 50 of 1000 images)"``, for reports."""
        kind = {"synsets": "synset folders", "labels-file": "labels file",
                "unlabelled": "no labels"}[self.layout]
        count = (f"{len(self.paths)} of {self.total} images" if len(self.paths) < self.total
                 else f"{self.total} images")
        return f"{self.folder} ({kind}, {count})"


def read_dataset(folder: str | Path, labels_file: str | Path | None = None,
                 num_classes: int = 1000, limit: int | None = None) -> LabelledImages:
    """List the images of ``folder`` and their labels (see the module docstring for the
    layouts) for a model of ``num_classes`` classes, keeping at most ``limit`` (:func:`spread`).

    Raises:
        ImageError: ``folder`` missing or not a folder, no image in it, image files and class
            folders mixed.
        DatasetError: a labels file that cannot be read, names missing or repeated files, or
            gives a class index out of range; class folders that are not one per class of the
            model or not named as synsets.
        UnsupportedOptionError: ``limit`` below 1.
    """
    if limit is not None and limit < 1:
        raise UnsupportedOptionError(f"--limit must be at least 1, got {limit}")
    root = Path(folder)
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "not found"
        raise ImageError(f"image folder {what}: {root}; pass --images DIR")
    if labels_file is not None:
        pairs = _labelled_by_file(root, Path(labels_file), num_classes)
        return _made(root, [p for p, _ in pairs], [c for _, c in pairs], "labels-file", limit)
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    per_class = [list_images(c) for c in classes]
    loose = list_images(root)
    if not any(per_class):
        if not loose:
            raise ImageError(f"no image files in {root} (expected files ending in "
                             f"{', '.join(sorted(IMAGE_SUFFIXES))}, or one folder per class)")
        return _made(root, loose, None, "unlabelled", limit)
    if loose:
        raise ImageError(f"{root} holds both image files ({loose[0].name} ...) and class "
                         "folders; use one layout: synset folders, or a flat folder with "
                         "--labels FILE")
    _check_synsets(root, [c.name for c in classes], num_classes)
    paths = [p for files in per_class for p in files]
    labels = [k for k, files in enumerate(per_class) for _ in files]
    return _made(root, paths, labels, "synsets", limit)


def _made(root: Path, paths: Sequence[Path], labels: Sequence[int] | None, layout: Layout,
          limit: int | None) -> LabelledImages:
    keep = spread(labels, len(paths), limit)
    return LabelledImages(root, tuple(paths[i] for i in keep),
                          None if labels is None else tuple(labels[i] for i in keep),
                          layout, len(paths))


def spread(labels: Sequence[int] | None, n: int, limit: int | None) -> list[int]:
    """Indices of the ``limit`` items to keep out of ``n`` (all when ``limit`` is ``None``),
    in their original order: round-robin over the classes of ``labels`` (the first item of
    each class, then the second, ...), or the first ``limit`` without labels."""
    if limit is None or limit >= n:
        return list(range(n))
    if labels is None:
        return list(range(limit))
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, c in enumerate(labels):
        by_class[c].append(i)
    queues = [by_class[c] for c in sorted(by_class)]
    chosen: list[int] = []
    rank = 0
    while len(chosen) < limit:
        chosen += [q[rank] for q in queues if rank < len(q)][: limit - len(chosen)]
        rank += 1
    return sorted(chosen)


def _check_synsets(root: Path, names: list[str], num_classes: int) -> None:
    """Class folders that are the model's classes in the ImageNet order, or a DatasetError."""
    if len(names) != num_classes:
        raise DatasetError(
            f"{root} has {len(names)} class folders but the model has {num_classes} classes: "
            "the synset layout needs one folder per class (their sorted names give the class "
            "indices); for a subset of the classes pass --labels FILE")
    bad = [n for n in names if not WNID.fullmatch(n)]
    if bad:
        raise DatasetError(
            f"{root}: class folder {bad[0]!r} is not a WordNet synset id (n + 8 digits, e.g. "
            f"{IMAGENET_FIRST_SYNSET}); the synset layout is ImageNet val's, otherwise pass "
            "--labels FILE")
    if num_classes == 1000 and (names[0], names[-1]) != (IMAGENET_FIRST_SYNSET,
                                                          IMAGENET_LAST_SYNSET):
        raise DatasetError(
            f"{root}: the class folders run from {names[0]} to {names[-1]}, not ImageNet-1K's "
            f"{IMAGENET_FIRST_SYNSET} (tench) .. {IMAGENET_LAST_SYNSET} (toilet tissue); "
            "these are not the model's classes: pass --labels FILE with class indices")


def _labelled_by_file(root: Path, labels_file: Path, num_classes: int) -> list[tuple[Path, int]]:
    try:
        text = labels_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        why = getattr(e, "strerror", None) or type(e).__name__
        raise DatasetError(f"cannot read labels file {labels_file}: {why}; pass a UTF-8 text "
                           "file of 'path<TAB>class index' lines") from None
    entries = parse_labels(text, str(labels_file), num_classes)
    missing = [rel for rel, _ in entries if not (root / rel).is_file()]
    if missing:
        shown = ", ".join(missing[:_SHOWN]) + (" ..." if len(missing) > _SHOWN else "")
        raise DatasetError(f"{labels_file} names {len(missing)} file(s) not in {root}: {shown}; "
                           "paths are relative to the --images folder")
    return [(root / rel, label) for rel, label in entries]


def parse_labels(text: str, where: str, num_classes: int) -> list[tuple[str, int]]:
    """``(relative path, class index)`` pairs of a labels file's ``text`` (pure; the format is
    in the module docstring), in file order.

    Raises:
        DatasetError: ``<where> line N: ...`` for a line without an index, an index that is
            not an integer in ``[0, num_classes)``, a path listed twice; or no entry at all.
    """
    entries: list[tuple[str, int]] = []
    seen: dict[str, int] = {}
    first = True
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        sep = "\t" if "\t" in line else "," if "," in line else None
        parts = [part.strip() for part in line.rsplit(sep, 1)]
        if len(parts) != 2 or not parts[0]:
            raise DatasetError(f"{where} line {n}: expected 'path<TAB>class index', got "
                               f"{line[:60]!r}")
        rel, value = parts
        header, first = first and value.lower() in _HEADER_WORDS, False
        if header:
            continue
        try:
            label = int(value)
        except ValueError:
            raise DatasetError(f"{where} line {n}: class index {value[:30]!r} is not an integer "
                               f"(0..{num_classes - 1})") from None
        if not 0 <= label < num_classes:
            raise DatasetError(f"{where} line {n}: class index {label} is out of range: the "
                               f"model has {num_classes} classes (0..{num_classes - 1})")
        key = Path(rel).as_posix()
        if key in seen:
            raise DatasetError(f"{where} line {n}: {rel} is already labelled on line "
                               f"{seen[key]}; list each image once")
        seen[key] = n
        entries.append((rel, label))
    if not entries:
        raise DatasetError(f"{where} labels no image; expected 'path<TAB>class index' lines")
    return entries
