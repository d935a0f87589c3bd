"""The iPhone result importer: reads the ``LSNET_BENCH_RESULT {...}`` lines the harness prints
out of a console log (Xcode's, or ``xcodebuild test`` output, noise and all), and also JSON
lines, a single result object or a whole result file; :func:`manual_result` makes a result
from a number read off Xcode's Core ML performance report."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from ...errors import BenchmarkError, UnsupportedOptionError
from ..schema import (
    PLATFORMS,
    RUNTIMES,
    BenchReport,
    BenchResult,
    latency_problem,
    loads_json,
    relabel_host_results,
)
from .vocabulary import (
    COMPUTE_UNITS,
    PRECISIONS,
    RESULT_MARKER,
    check_choice,
    nonblank_name,
    normalize_compute_unit,
)

__all__ = ["import_results", "manual_result", "parse_results"]

log = logging.getLogger(__name__)

# The marker, whitespace, then what must be a JSON object. The marker followed by anything
# else (a quote in a compiler diagnostic echoing the Swift source, say) is not a result line.
_RESULT_LINE = re.compile(re.escape(RESULT_MARKER) + r"\s+(?=\{)")


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
    whole = _whole_json(stripped, where)
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
        median_ms: median latency of one prediction in milliseconds (> 0, at most
            :data:`~lsnet_deploy.bench.schema.MAX_MS`: the check of imported numbers).
        precision: one of :data:`PRECISIONS`; runtime: one of
            :data:`~lsnet_deploy.bench.schema.RUNTIMES`; platform: one of
            :data:`~lsnet_deploy.bench.schema.PLATFORMS`.
        accelerator: for ``coreml`` required, one of :data:`COMPUTE_UNITS` (Swift names
            accepted); otherwise free text (an Android delegate), or ``None``.
        notes: free text.

    Raises:
        UnsupportedOptionError: a value out of range or an unknown name.
    """
    model = nonblank_name(model, "--model")
    device = nonblank_name(device, "--device")
    problem = latency_problem(median_ms)
    if problem:
        raise UnsupportedOptionError(
            f"--median-ms {problem}: a positive number of milliseconds, got {median_ms!r}"
        )
    check_choice(precision, PRECISIONS, "--precision")
    check_choice(runtime, RUNTIMES, "--runtime")
    check_choice(platform, PLATFORMS, "--platform")
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



# -- parsing -----------------------------------------------------------------------------------

def _whole_json(text: str, where: str) -> Any:
    """The whole text as JSON when it is an object or an array, else ``None``."""
    if text[0] not in "{[":
        return None
    try:
        return loads_json(text, where)
    except json.JSONDecodeError:
        return None


def _from_json_value(data: Any, where: str) -> list[BenchResult]:
    if isinstance(data, dict) and "results" in data:
        report = relabel_host_results(BenchReport.from_dict(data, where))
        results = report.results
        for r in results:  # host results of another machine keep that machine's record
            if r.platform in ("host", "macos") and report.environment:
                r.device_info.setdefault("environment", report.environment)
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
        except RecursionError:
            raise BenchmarkError(f"{at}: JSON nested too deeply to be a result") from None
        except json.JSONDecodeError as e:
            raise BenchmarkError(
                f"{at}: malformed {RESULT_MARKER} line ({e.msg}, column {e.colno}); copy the "
                "whole line from the console again"
            ) from None
        except ValueError as e:  # e.g. an integer too long to convert
            raise BenchmarkError(f"{at}: not a usable {RESULT_MARKER} line ({e})"[:200]) from None
        results.append(_result(data, at))
    return results


def _from_json_lines(text: str, where: str) -> list[BenchResult]:
    results = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        at = f"{where}:{lineno}"
        try:
            data = loads_json(line, at)
        except json.JSONDecodeError:
            raise BenchmarkError(
                f"{at}: no {RESULT_MARKER} line in the file and this line is not JSON either; "
                "pass the console log of the harness (with its result lines), JSON lines or a "
                "result JSON"
            ) from None
        results.append(_result(data, at))
    return results


def _result(data: Any, where: str) -> BenchResult:
    """One result, checked like every result read from a file
    (:meth:`~lsnet_deploy.bench.schema.BenchResult.from_dict`: types, vocabulary, finite and
    plausible numbers)."""
    return BenchResult.from_dict(data, where)


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
