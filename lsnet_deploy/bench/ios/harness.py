"""The iPhone/Mac benchmark harness generator: for one Core ML model, the Swift sources of an
XCTest (``XCTest/``, added to any iOS app's unit-test target, runs on the attached iPhone), a
Swift package (``Package.swift``, ``Sources/lsnet-bench/``) running the same benchmark on a
Mac, and a README with the steps, filled from the templates in ``bench/templates/ios`` and
written all or nothing.

Both share one benchmark core, ``LSNetBench.swift``, with the model label, precision, runs,
warm-up, compute units and model file name baked in. For every compute unit the harness prints
one line ``LSNET_BENCH_RESULT {...}``: a :class:`~lsnet_deploy.bench.schema.BenchResult` as
JSON, read back by :mod:`.importer`.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..._version import __version__
from ...errors import BenchmarkError, OutputError, UnsupportedOptionError
from .vocabulary import (
    COMPUTE_UNITS,
    PRECISIONS,
    SWIFT_COMPUTE_UNITS,
    check_choice,
    nonblank_name,
    normalize_compute_unit,
)

__all__ = ["HARNESS_FILES", "HarnessConfig", "render_ios_harness", "write_ios_harness"]

log = logging.getLogger(__name__)

_TEMPLATE_PACKAGE = "lsnet_deploy.bench"  # the templates are its templates/ios/

HARNESS_FILES = (
    "README.md",
    "XCTest/LSNetBenchTests.swift",
    "XCTest/LSNetBench.swift",
    "Package.swift",
    "Sources/lsnet-bench/main.swift",
    "Sources/lsnet-bench/LSNetBench.swift",
)
"""Files :func:`write_ios_harness` writes, relative to its output folder."""

_TEMPLATE_OF = {
    "README.md": "README.md",
    "XCTest/LSNetBenchTests.swift": "LSNetBenchTests.swift",
    "XCTest/LSNetBench.swift": "LSNetBench.swift",
    "Package.swift": "Package.swift",
    "Sources/lsnet-bench/main.swift": "main.swift",
    "Sources/lsnet-bench/LSNetBench.swift": "LSNetBench.swift",
}
_MODEL_SUFFIXES = (".mlpackage", ".mlmodel")
_PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")


@dataclass(frozen=True)
class HarnessConfig:
    """What a generated harness bakes in.

    Attributes:
        model: model label of the results (``lsnet_t``).
        precision: one of :data:`PRECISIONS`.
        model_file: file name of the ``.mlpackage`` looked for in the test bundle.
        model_path: absolute path of the model when generated (the Mac tool's fallback).
        compute_units: names from :data:`COMPUTE_UNITS`, in run order.
        runs: timed predictions per compute unit (>= 1).
        warmup: untimed predictions before them (>= 0).
    """

    model: str
    precision: str
    model_file: str
    model_path: str
    compute_units: tuple[str, ...]
    runs: int
    warmup: int



def render_ios_harness(config: HarnessConfig, out_dir: Path | None = None) -> dict[str, str]:
    """The harness files' text, by path relative to the output folder (nothing is written).

    ``out_dir`` only appears in the README's commands (``cd OUT_DIR``)."""
    values = {
        "GENERATOR": f"lsnet-deploy {__version__}",
        "MODEL": config.model,
        "PRECISION": config.precision,
        "MODEL_FILE": config.model_file,
        "MODEL_STEM": Path(config.model_file).stem,
        "MODEL_LITERAL": _swift_string(config.model, "model label"),
        "PRECISION_LITERAL": _swift_string(config.precision, "precision"),
        "MODEL_FILE_LITERAL": _swift_string(config.model_file, "model file name"),
        "MODEL_PATH_LITERAL": _swift_string(config.model_path, "model path"),
        "MODEL_PATH_SHELL": shlex.quote(config.model_path),
        "OUT_DIR_SHELL": shlex.quote(str(out_dir)) if out_dir is not None else "HARNESS_DIR",
        "RUNS": str(config.runs),
        "WARMUP": str(config.warmup),
        "COMPUTE_UNITS": ", ".join("." + SWIFT_COMPUTE_UNITS[u] for u in config.compute_units),
        "COMPUTE_UNITS_TEXT": ", ".join(config.compute_units),
        "COMPUTE_UNITS_ARG": ",".join(SWIFT_COMPUTE_UNITS[u] for u in config.compute_units),
    }
    templates = resources.files(_TEMPLATE_PACKAGE).joinpath("templates").joinpath("ios")
    out = {}
    for rel in HARNESS_FILES:
        name = _TEMPLATE_OF[rel]
        text = templates.joinpath(name).read_text(encoding="utf-8")
        out[rel] = _fill(text, values, name)
    return out


def write_ios_harness(
    mlpackage: Path,
    out_dir: Path,
    *,
    model: str | None = None,
    precision: str | None = None,
    compute_units: tuple[str, ...] = COMPUTE_UNITS,
    runs: int = 100,
    warmup: int = 10,
    force: bool = False,
) -> list[Path]:
    """Write the iPhone/Mac benchmark harness for ``mlpackage`` into ``out_dir``.

    Args:
        mlpackage: the Core ML model (``.mlpackage``, or ``.mlmodel``); must exist.
        out_dir: output folder (created; other files in it are left alone).
        model, precision: labels of the results; default: what
            :func:`~lsnet_deploy.bench.artifacts.describe_artifact` says (sidecar first).
        compute_units: from :data:`COMPUTE_UNITS`, run in this order, no repeats.
        runs: timed predictions per compute unit (>= 1).
        warmup: untimed predictions before them (>= 0).
        force: overwrite harness files already in ``out_dir``.

    Returns:
        The files written (:data:`HARNESS_FILES` under ``out_dir``).

    Raises:
        UnsupportedOptionError: a bad option value. BenchmarkError: ``mlpackage`` missing.
        OutputError: harness files exist and ``force`` is false, or ``out_dir`` is unusable.

    Nothing is written unless everything is: the files are built in a temporary folder next
    to ``out_dir`` and moved into place; an error part way restores what was there.
    """
    mlpackage = Path(mlpackage)
    out_dir = Path(out_dir)
    config = _harness_config(mlpackage, model=model, precision=precision,
                             compute_units=compute_units, runs=runs, warmup=warmup)
    files = render_ios_harness(config, out_dir.resolve())
    targets = [out_dir / rel for rel in files]
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: exists and is not a folder; choose another output folder")
    existing = [p for p in targets if p.exists() or p.is_symlink()]
    if existing and not force:
        names = ", ".join(p.name for p in existing[:3]) + (", ..." if len(existing) > 3 else "")
        raise OutputError(
            f"{out_dir}: {len(existing)} harness file(s) already exist ({names}); "
            "pass --force to overwrite them"
        )
    _write_tree(files, out_dir)
    log.info("wrote the iOS benchmark harness for %s (%s, %s) to %s", mlpackage.name,
             config.model, config.precision, out_dir)
    return targets


# -- helpers -----------------------------------------------------------------------------------

def _harness_config(mlpackage: Path, *, model: str | None, precision: str | None,
                    compute_units: tuple[str, ...], runs: int, warmup: int) -> HarnessConfig:
    if mlpackage.suffix.lower() not in _MODEL_SUFFIXES:
        raise UnsupportedOptionError(
            f"{mlpackage}: not a Core ML model; pass a {' or '.join(_MODEL_SUFFIXES)} file"
        )
    if not mlpackage.exists():
        raise BenchmarkError(f"{mlpackage}: no such file; export it first (lsnet-deploy export "
                             "--format coreml)")
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise UnsupportedOptionError(f"runs must be an integer >= 1, got {runs!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise UnsupportedOptionError(f"warmup must be an integer >= 0, got {warmup!r}")
    if isinstance(compute_units, str):
        compute_units = (compute_units,)
    units = tuple(normalize_compute_unit(u) for u in compute_units)
    if not units:
        raise UnsupportedOptionError(f"no compute unit; choose from {', '.join(COMPUTE_UNITS)}")
    repeated = sorted({u for u in units if units.count(u) > 1})
    if repeated:
        raise UnsupportedOptionError(f"compute unit(s) given twice: {', '.join(repeated)}")
    if model is None or precision is None:
        from ..artifacts import describe_artifact

        info = describe_artifact(mlpackage)
        model = info.model if model is None else model
        precision = info.precision if precision is None else precision
    model = nonblank_name(model, "model")
    check_choice(precision, PRECISIONS, "precision")
    return HarnessConfig(model=model, precision=precision, model_file=mlpackage.name,
                         model_path=str(mlpackage.resolve()), compute_units=units,
                         runs=runs, warmup=warmup)


def _swift_string(value: str, what: str) -> str:
    """``value`` as a Swift string literal (quotes and backslashes escaped)."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise UnsupportedOptionError(f"the {what} {value!r} holds a control character; rename it")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _fill(template: str, values: dict[str, str], name: str) -> str:
    def sub(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"template {name}: unknown placeholder {{{{{key}}}}}")
        return values[key]

    return _PLACEHOLDER.sub(sub, template)


def _write_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def _write_tree(files: dict[str, str], out_dir: Path) -> None:
    """Write ``files`` under ``out_dir`` all or nothing (see :func:`write_ios_harness`)."""
    created_root = _topmost_missing(out_dir.parent)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp",
                                        dir=out_dir.parent))
    except OSError as e:
        if created_root is not None:
            shutil.rmtree(created_root, ignore_errors=True)
        raise OutputError(f"{out_dir}: cannot create ({e.strerror}); choose another output "
                          "folder") from None
    new, old = staging / "new", staging / "old"
    try:
        for rel, text in files.items():
            _write_file(new / rel, text)
        for rel in files:
            os.chmod(new / rel, 0o644)
        if not out_dir.exists():
            os.rename(new, out_dir)
        else:
            _move_into(new, old, out_dir, list(files))
    except OSError as e:
        if created_root is not None:
            shutil.rmtree(created_root, ignore_errors=True)
        raise OutputError(
            f"{out_dir}: cannot write the harness ({e}); nothing was changed"
        ) from None
    except BaseException:
        if created_root is not None:
            shutil.rmtree(created_root, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_into(new: Path, old: Path, out_dir: Path, rels: list[str]) -> None:
    """Move ``new/rel`` to ``out_dir/rel`` for every ``rel``, keeping what they replace under
    ``old``; on an error put everything back and re-raise."""
    moved: list[tuple[Path, Path | None]] = []
    made_dirs: list[Path] = []
    try:
        for rel in rels:
            dest = out_dir / rel
            missing = []
            d = dest.parent
            while not d.exists():
                missing.append(d)
                d = d.parent
            dest.parent.mkdir(parents=True, exist_ok=True)
            made_dirs.extend(reversed(missing))
            backup = None
            if dest.exists() or dest.is_symlink():
                backup = old / rel
                backup.parent.mkdir(parents=True, exist_ok=True)
                os.replace(dest, backup)
            moved.append((dest, backup))
            os.replace(new / rel, dest)
    except BaseException:
        for dest, backup in reversed(moved):
            try:
                if backup is not None and (backup.exists() or backup.is_symlink()):
                    os.replace(backup, dest)
                else:
                    dest.unlink(missing_ok=True)
            except OSError as e:  # pragma: no cover - rollback is best effort
                log.warning("could not restore %s: %s", dest, e)
        for d in reversed(made_dirs):
            try:
                d.rmdir()
            except OSError:
                pass
        raise


def _topmost_missing(path: Path) -> Path | None:
    """The highest ancestor-or-self of ``path`` that does not exist (``None``: it exists)."""
    path = path.absolute()
    if path.exists():
        return None
    while not path.parent.exists():
        path = path.parent
    return path

