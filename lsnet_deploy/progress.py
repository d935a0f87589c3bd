"""Progress of long work, reported through one callback type.

Library functions that run for more than a few seconds take ``progress: Say | None``: a
callable that receives a ``str``. A plain message starts a phase ("exporting
lsnet_t_224_int8.onnx"); a :class:`Step` (a ``str`` too, so ``print`` or a logger works as a
callback) reports item ``index`` of ``total`` of a counted phase ("sensitivity 3/12: group
ska"), from which the command line draws a bar with an ETA.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

__all__ = ["Say", "Step", "counted", "quiet"]

T = TypeVar("T")

Say = Callable[[str], None]
"""A progress callback: receives phase messages and :class:`Step` items."""


class Step(str):
    """Item ``index`` (1-based) of ``total`` in the counted phase ``phase``, about to be
    worked on; ``str(step)`` is ``"<phase> <index>/<total>[: <item>]"``."""

    phase: str
    index: int
    total: int
    item: str

    def __new__(cls, phase: str, index: int, total: int, item: str = "") -> Step:
        text = f"{phase} {index}/{total}" + (f": {item}" if item else "")
        step = super().__new__(cls, text)
        step.phase, step.index, step.total, step.item = phase, index, total, item
        return step


def quiet(_message: str) -> None:
    """The callback that reports nothing."""


def counted(say: Say | None, phase: str, items: Sequence[T] | Iterable[T],
            label: Callable[[T], str] = str, total: int | None = None) -> Iterator[T]:
    """Iterate ``items``, reporting a :class:`Step` of ``phase`` before each (``total``: the
    count when ``items`` has no length)."""
    n = total if total is not None else len(items)  # type: ignore[arg-type]
    for k, item in enumerate(items, 1):
        if say is not None:
            say(Step(phase, k, n, label(item)))
        yield item
