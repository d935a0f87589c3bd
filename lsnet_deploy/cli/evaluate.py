"""``lsnet-deploy evaluate``: top-1 / top-5 accuracy of PyTorch fp32 and of artifacts on a
labelled image folder, and each artifact's agreement with PyTorch fp32."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ._common import (
    JsonOpt,
    TestModelOpt,
    Variant,
    WeightsOpt,
    WorkProgress,
    checked_test_model,
    emit_json,
    log,
    out,
    print_table,
)

__all__ = ["evaluate_cmd"]

def evaluate_cmd(
    images: Annotated[Path, typer.Option(
        "--images", help="Image folder: ImageNet val synset folders (n01440764/ ...), a flat "
        "folder with --labels, or a plain folder (agreement with PyTorch only).",
        show_default=False)],
    artifacts: Annotated[list[Path] | None, typer.Argument(
        help="Artifacts of one model (their sidecars name the model and weights); none: "
        "PyTorch alone (--model).", show_default=False)] = None,
    labels: Annotated[Path | None, typer.Option(
        "--labels", help="Labels file: 'path<TAB>class index' lines, paths relative to "
        "--images.")] = None,
    model: Annotated[Variant | None, typer.Option(
        "--model", "-m", help="Variant of the PyTorch reference (default: the artifacts').")
    ] = None,
    weights: WeightsOpt = None,
    img_size: Annotated[int | None, typer.Option(
        "--img-size", min=32, help="Input size of PyTorch alone (default 224; with artifacts: "
        "theirs).")] = None,
    limit: Annotated[int | None, typer.Option(
        "--limit", min=1, help="Score at most N images (round-robin over the classes).")
    ] = None,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Images per chunk.")] = 32,
    threads: Annotated[int | None, typer.Option(
        "--threads", min=1, help="Threads of the artifacts' runtimes.")] = None,
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="Also write a bar chart (PNG) of accuracy and agreement here.")] = None,
    as_json: JsonOpt = False,
    test_model: TestModelOpt = None,
) -> None:
    """Top-1 / top-5 accuracy of PyTorch fp32 and of every artifact on labelled images, and
    each artifact's top-1 agreement, top-5 overlap and logit cosine with PyTorch fp32."""
    from ..evaluation import evaluate
    from ..evaluation.plot import check_plot_path, write_plot

    variant = checked_test_model(test_model) if test_model else (
        model.value if model is not None else None)
    if plot is not None:
        check_plot_path(plot)
    with WorkProgress() as say:
        result = evaluate(list(artifacts or []), images, labels=labels, model=variant,
                          weights=weights if weights is not None else ...,
                          img_size=img_size, limit=limit, batch=batch, threads=threads,
                          progress=say)
    log.info("%s", say.summary())
    if plot is not None:
        write_plot(result, plot)
    if as_json:
        emit_json({**result.to_dict(), "plot": str(plot) if plot is not None else None})
        return
    print_table(_table(result))
    if plot is not None:
        out.print(f"written: {escape(str(plot))}")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _table(result: Any) -> Table:
    t = Table(title=f"{result.variant} on {escape(result.images)}",
              caption=f"weights: {escape(result.weights)}; agreement and cosine are against "
              "PyTorch fp32 on the same images")
    columns = ["model", "runtime", "precision", "images"]
    if result.labelled:
        columns += ["top-1", "top-5"]
    columns += ["top-1 agreement", "top-5 overlap", "cosine mean / min"]
    for c in columns:
        t.add_column(c)
    for s in result.scores:
        row = ["PyTorch fp32 (reference)" if s.is_reference else escape(s.name), s.runtime,
               s.precision, str(s.n_images)]
        if result.labelled:
            row += [f"{_pct(s.top1)} ({s.correct_top1})", f"{_pct(s.top5)} ({s.correct_top5})"]
        cosine = "-" if s.mean_cosine is None else f"{s.mean_cosine:.5f} / {s.min_cosine:.5f}"
        row += [_pct(s.top1_agreement), _pct(s.top5_overlap), cosine]
        t.add_row(*row)
    return t
