"""``lsnet-deploy bench profile``: where the time goes, by LSNet op group and op kind (ONNX
Runtime's profiler) and block by block (LiteRT), for LSNet and its peers. Registered under
``bench`` by :mod:`lsnet_deploy.cli.app`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ..errors import UnsupportedOptionError
from ._common import (
    JsonOpt,
    PeerName,
    TestModelOpt,
    Variant,
    checked_test_model,
    emit_json,
    new_progress,
    out,
)

__all__ = ["profile_cmd"]


def profile_cmd(
    model: Annotated[list[Variant] | None, typer.Option(
        "--model", "-m", help="LSNet variant to profile (repeatable; random weights: timing "
        "does not depend on them).", show_default=False)] = None,
    peer: Annotated[list[PeerName] | None, typer.Option(
        "--peer", help="Peer network to profile beside it (repeatable).", show_default=False)
    ] = None,
    precision: Annotated[list[str] | None, typer.Option(
        "--precision", help="fp32 and/or int8 (repeatable; default fp32).", show_default=False)
    ] = None,
    runtime: Annotated[list[str] | None, typer.Option(
        "--runtime", help="onnxruntime (its profiler, per op) and/or litert (fp32, block by "
        "block); repeatable, default both.", show_default=False)] = None,
    threads: Annotated[int, typer.Option("--threads", min=1, help="Intra-op threads.")] = 1,
    runs: Annotated[int, typer.Option("--runs", min=1, help="Profiled runs.")] = 50,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Also write the Markdown to this file.")] = None,
    as_json: JsonOpt = False,
    test_model: TestModelOpt = None,
) -> None:
    """Where the time goes: ONNX Runtime's profiler by LSNet op group (stem, SKA, LKP,
    attention, FFN, ...) and op kind; LiteRT block by block. For LSNet and peers."""
    from ..bench.litert_profile import block_profile_markdown, profile_litert_blocks
    from ..bench.profile import profile_markdown, profile_onnx

    models = [checked_test_model(test_model)] if test_model else [m.value for m in model or []]
    names = models + [p.value for p in peer or []]
    if not names:
        raise UnsupportedOptionError("nothing to profile: give --model VARIANT and/or "
                                     "--peer NAME")
    precisions = precision or ["fp32"]
    bad = [p for p in precisions if p not in ("fp32", "int8")]
    if bad:
        raise UnsupportedOptionError(f"--precision {', '.join(bad)}: profile takes fp32, int8")
    runtimes = runtime or ["onnxruntime", "litert"]
    bad = [r for r in runtimes if r not in ("onnxruntime", "litert")]
    if bad:
        raise UnsupportedOptionError(f"--runtime {', '.join(bad)}: profile takes onnxruntime, "
                                     "litert")
    ort_runs = precisions if "onnxruntime" in runtimes else []
    profiles, blocks = [], []
    with new_progress() as bar:
        task = bar.add_task("profiling", total=len(names) * (
            len(ort_runs) + ("litert" in runtimes)))
        for name in names:
            for prec in ort_runs:
                bar.update(task, description=escape(f"profiling {name} {prec} (ONNX Runtime)"))
                profiles.append(profile_onnx(name, prec, threads=threads, runs=runs))
                bar.advance(task)
            if "litert" in runtimes:
                blocks.append(profile_litert_blocks(
                    name, threads=threads, runs=runs,
                    progress=lambda m: bar.update(task, description=escape(m))))
                bar.advance(task)
    text = profile_markdown(profiles) + block_profile_markdown(blocks)
    if output is not None:
        output.write_text(text)
    if as_json:
        emit_json({"profiles": [p.to_dict() for p in profiles],
                   "litert_blocks": [b.to_dict() for b in blocks]})
    else:
        out.print(text, markup=False, highlight=False)
