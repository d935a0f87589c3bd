"""The evaluation as a PNG bar chart: per model (PyTorch fp32, then each artifact), top-1 and
top-5 accuracy (with labels) and top-1 agreement with PyTorch fp32, in percent."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..deps import require
from ..errors import OutputError, UnsupportedOptionError
from .run import EvaluationResult

__all__ = ["check_plot_path", "write_plot"]


def check_plot_path(path: str | Path) -> Path:
    """``path`` if a PNG can be written there (a ``.png`` name in an existing writable folder)
    and matplotlib is installed: checked before the evaluation runs.

    Raises:
        UnsupportedOptionError: another suffix than ``.png``.
        OutputError: a folder, or a parent that is not a writable folder.
        MissingDependencyError: no matplotlib (the ``bench`` extra).
    """
    p = Path(path)
    if p.suffix.lower() != ".png":
        raise UnsupportedOptionError(f"--plot writes a PNG: name it *.png, not {p.name}")
    if p.is_dir():
        raise OutputError(f"--plot {p} is a folder; give a file name ending in .png")
    parent = p.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise OutputError(f"cannot write --plot {p}: {parent} is not a writable folder")
    require("bench", "matplotlib", what="the evaluation plot")
    return p


def write_plot(result: EvaluationResult, path: str | Path) -> Path:
    """Draw ``result`` into the PNG ``path`` (written to a temporary file, then renamed)."""
    p = check_plot_path(path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: list[tuple[str, list[float | None]]] = []
    if result.labelled:
        series += [("top-1 accuracy", [s.top1 for s in result.scores]),
                   ("top-5 accuracy", [s.top5 for s in result.scores])]
    series.append(("top-1 agreement with PyTorch fp32",
                   [1.0 if s.is_reference else s.top1_agreement for s in result.scores]))
    names = ["PyTorch fp32" if s.is_reference else f"{s.name}\n({s.runtime} {s.precision})"
             for s in result.scores]
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(names) + 2), 4.5))
    for j, (label, values) in enumerate(series):
        xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(names))]
        heights = [100.0 * v if v is not None else 0.0 for v in values]
        bars = ax.bar(xs, heights, width, label=label)
        for bar, v in zip(bars, values, strict=True):
            if v is not None:
                ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{100 * v:.1f}",
                        ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, fontsize=8)
    ax.set_ylim(0, 125)  # room for the legend above the bars
    ax.set_ylabel("%")
    random = ", RANDOM weights" if result.weights.startswith("RANDOM") else ""
    ax.set_title(f"{result.variant} on {result.n_images} images ({result.layout}{random})",
                 fontsize=10)
    ax.legend(loc="upper center", ncol=len(series), fontsize=8, frameon=False)
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".png", dir=p.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120, format="png")
        os.replace(tmp, p)
    except OSError as e:
        raise OutputError(f"cannot write --plot {p}: {e.strerror or e}") from None
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return p
