"""iPhone benchmarks: generate a Swift harness for a Core ML model, import what it prints.

:func:`write_ios_harness` writes, for one ``.mlpackage``, an XCTest (``XCTest/``) to add to any
iOS app's unit-test target (it runs on the attached iPhone), a Swift package (``Package.swift``,
``Sources/lsnet-bench/``) that runs the same benchmark on a Mac, and a README with the steps.
Both share one benchmark core, ``LSNetBench.swift``, with the model label, precision, runs,
warm-up, compute units and model file name baked in. For every compute unit the harness prints
one line ``LSNET_BENCH_RESULT {...}``: a :class:`~lsnet_deploy.bench.schema.BenchResult` as
JSON.

:func:`import_results` reads those lines out of a console log (Xcode's, or ``xcodebuild test``
output, noise and all), and also reads JSON lines, a single result object or a whole result
file. :func:`manual_result` makes a result from a number read off Xcode's Core ML performance
report.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import BenchmarkError, OutputError, UnsupportedOptionError
from .runtimes import COMPUTE_UNITS as RUNTIME_COMPUTE_UNITS
from .schema import (
    PLATFORMS,
    RUNTIMES,
    SOURCES,
    BenchReport,
    BenchResult,
    relabel_host_results,
)

__all__ = [
    "COMPUTE_UNITS",
    "HARNESS_FILES",
    "PRECISIONS",
    "RESULT_MARKER",
    "SWIFT_COMPUTE_UNITS",
    "HarnessConfig",
    "import_results",
    "manual_result",
    "normalize_compute_unit",
    "parse_results",
    "render_ios_harness",
    "write_ios_harness",
]

log = logging.getLogger(__name__)

COMPUTE_UNITS = RUNTIME_COMPUTE_UNITS
"""Core ML compute units under lsnet-deploy's names (the ``accelerator`` of a result): the
ones the Mac runner uses."""

SWIFT_COMPUTE_UNITS = {
    "CPU_ONLY": "cpuOnly",
    "CPU_AND_GPU": "cpuAndGPU",
    "CPU_AND_NE": "cpuAndNeuralEngine",
    "ALL": "all",
}
"""lsnet-deploy's compute-unit name -> the ``MLComputeUnits`` case in Swift."""

PRECISIONS = ("fp32", "fp16", "int8", "w8a8", "unknown")
"""Precision labels of a result."""

RESULT_MARKER = "LSNET_BENCH_RESULT"
"""Prefix of a result line printed by the harness (then whitespace and a JSON object)."""

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
# The marker, whitespace, then what must be a JSON object. The marker followed by anything
# else (a quote in a compiler diagnostic echoing the Swift source, say) is not a result line.
_RESULT_LINE = re.compile(re.escape(RESULT_MARKER) + r"\s+(?=\{)")


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


def normalize_compute_unit(name: str) -> str:
    """``"CPU_AND_NE"``, ``"cpu_and_ne"`` or ``"cpuAndNeuralEngine"`` -> ``"CPU_AND_NE"``;
    :class:`UnsupportedOptionError` for anything else."""
    key = str(name).strip().lower().replace("-", "_")
    for unit, swift in SWIFT_COMPUTE_UNITS.items():
        if key in (unit.lower(), swift.lower()):
            return unit
    raise UnsupportedOptionError(
        f"unknown compute unit {name!r}: use one of {', '.join(COMPUTE_UNITS)}"
    )


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
    templates = resources.files(__package__).joinpath("templates").joinpath("ios")
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


def parse_results(text: str, where: str) -> list[BenchResult]:
    """Results in ``text`` (``where`` names it in errors): a result file (``{"results": [...]}``),
    one result object, a JSON array of them, a console log with ``LSNET_BENCH_RESULT`` lines
    among other text, or JSON lines.

    Raises:
        BenchmarkError: no result at all, or a malformed line (``where:LINE: ...``).
    """
    text = text.removeprefix("\ufeff")
    stripped = text.strip()
    if not stripped:
        raise BenchmarkError(
            f"{where}: empty file; expected the LSNET_BENCH_RESULT lines of the iOS harness, "
            "JSON lines or a result JSON"
        )
    whole = _whole_json(stripped)
    if whole is not None:
        results = _from_json_value(whole, where)
    elif _RESULT_LINE.search(text):
        results = _from_marked_lines(text, where)
    else:
        results = _from_json_lines(text, where)
    if not results:
        raise BenchmarkError(f"{where}: holds no benchmark result")
    return _drop_repeats(results, where)


def import_results(paths: list[Path]) -> list[BenchResult]:
    """Read results from each file of ``paths`` (any form :func:`parse_results` takes), in
    order.

    Raises:
        BenchmarkError: no path, a file that cannot be read, holds no result or has a
            malformed line (the message names the file and the line).
    """
    if not paths:
        raise BenchmarkError("no result file to import; pass a log or JSON file")
    results: list[BenchResult] = []
    for path in paths:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise BenchmarkError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise BenchmarkError(f"{path}: is a folder; pass the log or JSON file in it") from None
        except UnicodeDecodeError:
            raise BenchmarkError(f"{path}: not a UTF-8 text file; pass a log or JSON file") from None
        except OSError as e:
            raise BenchmarkError(f"{path}: cannot read ({e.strerror})") from None
        found = parse_results(text, str(path))
        log.info("%s: %d result(s)", path, len(found))
        results.extend(found)
    return results


def manual_result(
    *,
    model: str,
    device: str,
    median_ms: float,
    precision: str = "unknown",
    runtime: str = "coreml",
    accelerator: str | None = None,
    platform: str = "ios",
    notes: str | None = None,
) -> BenchResult:
    """A result entered by hand, e.g. the median of Xcode's Core ML performance report.

    Args:
        model: model label (``lsnet_t``); device: the phone (``"iPhone 15 Pro"``).
        median_ms: median latency of one prediction in milliseconds (> 0).
        precision: one of :data:`PRECISIONS`; runtime: one of
            :data:`~lsnet_deploy.bench.schema.RUNTIMES`; platform: one of
            :data:`~lsnet_deploy.bench.schema.PLATFORMS`.
        accelerator: for ``coreml`` required, one of :data:`COMPUTE_UNITS` (Swift names
            accepted); otherwise free text (an Android delegate), or ``None``.
        notes: free text.

    Raises:
        UnsupportedOptionError: a value out of range or an unknown name.
    """
    model = _nonblank(model, "--model")
    device = _nonblank(device, "--device")
    if (isinstance(median_ms, bool) or not isinstance(median_ms, (int, float))
            or not math.isfinite(median_ms) or median_ms <= 0):
        raise UnsupportedOptionError(
            f"--median-ms must be a positive number of milliseconds, got {median_ms!r}"
        )
    _choice(precision, PRECISIONS, "--precision")
    _choice(runtime, RUNTIMES, "--runtime")
    _choice(platform, PLATFORMS, "--platform")
    if runtime == "coreml":
        if accelerator is None:
            raise UnsupportedOptionError(
                "a Core ML result needs its compute units: pass --compute-units "
                f"({', '.join(COMPUTE_UNITS)}) as chosen in Xcode's performance report"
            )
        accelerator = normalize_compute_unit(accelerator)
    return BenchResult(
        model=model,
        runtime=runtime,
        precision=precision,
        threads=None,
        batch=1,
        median_ms=float(median_ms),
        platform=platform,
        device=device,
        accelerator=accelerator,
        source="manual",
        notes=notes,
    )


# -- generator ---------------------------------------------------------------------------------


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
        from .artifacts import describe_artifact

        info = describe_artifact(mlpackage)
        model = info.model if model is None else model
        precision = info.precision if precision is None else precision
    model = _nonblank(model, "model")
    _choice(precision, PRECISIONS, "precision")
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


# -- importer ----------------------------------------------------------------------------------

def _whole_json(text: str) -> Any:
    """The whole text as JSON when it is an object or an array, else ``None``."""
    if text[0] not in "{[":
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _from_json_value(data: Any, where: str) -> list[BenchResult]:
    if isinstance(data, dict) and "results" in data:
        report = relabel_host_results(BenchReport.from_dict(data, where))
        results = report.results
        for r in results:  # host results of another machine keep that machine's record
            if r.platform in ("host", "macos") and report.environment:
                r.device_info.setdefault("environment", report.environment)
        for i, result in enumerate(results):
            _check_vocabulary(result, f"{where}: results[{i}]")
        return results
    if isinstance(data, dict):
        return [_result(data, where)]
    if isinstance(data, list):
        return [_result(item, f"{where}: [{i}]") for i, item in enumerate(data)]
    raise BenchmarkError(f"{where}: expected a JSON object or array, got {type(data).__name__}")


def _from_marked_lines(text: str, where: str) -> list[BenchResult]:
    decoder = json.JSONDecoder()
    results = []
    for lineno, line in enumerate(text.splitlines(), 1):
        match = _RESULT_LINE.search(line)
        if match is None:
            continue
        at = f"{where}:{lineno}"
        try:
            data, _ = decoder.raw_decode(line, match.end())
        except json.JSONDecodeError as e:
            raise BenchmarkError(
                f"{at}: malformed {RESULT_MARKER} line ({e.msg}, column {e.colno}); copy the "
                "whole line from the console again"
            ) from None
        results.append(_result(data, at))
    return results


def _from_json_lines(text: str, where: str) -> list[BenchResult]:
    results = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        at = f"{where}:{lineno}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            raise BenchmarkError(
                f"{at}: no {RESULT_MARKER} line in the file and this line is not JSON either; "
                "pass the console log of the harness (with its result lines), JSON lines or a "
                "result JSON"
            ) from None
        results.append(_result(data, at))
    return results


def _result(data: Any, where: str) -> BenchResult:
    result = BenchResult.from_dict(data, where)
    _check_vocabulary(result, where)
    return result


def _check_vocabulary(result: BenchResult, where: str) -> None:
    for key, allowed in (("runtime", RUNTIMES), ("platform", PLATFORMS), ("source", SOURCES)):
        value = getattr(result, key)
        if value not in allowed:
            raise BenchmarkError(
                f"{where}: unknown {key} {value!r} (known: {', '.join(allowed)})"
            )


def _drop_repeats(results: list[BenchResult], where: str) -> list[BenchResult]:
    """Identical results (a log holding the same line twice) are kept once."""
    seen: set[str] = set()
    kept = []
    for result in results:
        fingerprint = json.dumps(result.to_dict(), sort_keys=True, default=str)
        if fingerprint in seen:
            log.warning("%s: the same result appears twice; kept once", where)
            continue
        seen.add(fingerprint)
        kept.append(result)
    return kept


# -- validation --------------------------------------------------------------------------------


def _nonblank(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UnsupportedOptionError(f"{what} must be a non-empty name, got {value!r}")
    return value.strip()


def _choice(value: Any, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise UnsupportedOptionError(
            f"{what} {value!r} is not one of {', '.join(allowed)}"
        )
