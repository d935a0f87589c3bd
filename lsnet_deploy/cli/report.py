"""``lsnet-deploy report``: the paper's claims beside lsnet-deploy's measurements."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ..errors import OutputError
from ._common import JsonOpt, emit_json, out

__all__ = ["report_cmd"]


def report_cmd(
    paths: Annotated[list[Path] | None, typer.Argument(
        help="Result files or folders (default: every report under export/bench/).",
        show_default=False)] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Also write the Markdown page here.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The paper's claims (params, GMACs, GPU throughput, top-1) beside lsnet-deploy's
    measurements (latency per runtime, precision and device). Every result file is checked
    field by field (a malformed or implausible one is an error naming the file, the record
    and the field); hidden entries of a folder are skipped."""
    from ..bench.claims import (
        PAPER_NOTE,
        build_claims,
        claims_markdown,
        collect_results,
        find_result_files,
    )
    from ..metadata import write_text_atomic

    files = find_result_files(list(paths or []))
    results = collect_results(files)
    claims = build_claims(results)
    page = claims_markdown(claims, results, files)
    if output is not None:
        try:
            write_text_atomic(output, page)
        except OSError as e:
            raise OutputError(f"cannot write {output}: {e.strerror or e}; choose another "
                              "--output") from None
    if as_json:
        emit_json({"note": PAPER_NOTE, "claims": [asdict(c) for c in claims],
                   "results": [r.to_dict() for r in results],
                   "sources": [str(f) for f in files]})
        return
    if not out.is_terminal:  # piped: the Markdown itself, never squeezed to a width
        out.file.write(page)
    else:
        from rich.markdown import Markdown

        out.print(Markdown(page))
    if output is not None:
        out.print(f"written: {escape(str(output))}")
