"""Optional backends: one check, one install hint.

Each export format lives behind a pip extra (``lsnet-deploy[onnx]``, ``[tflite]``,
``[coreml]``, ...). :func:`require` imports what a step needs and, when something is missing,
raises :class:`~lsnet_deploy.errors.MissingDependencyError` naming the missing module and the
extra that installs it. Nothing is ever pip-installed at run time.

The backends announce themselves when first imported (coremltools' version warnings,
torchao's missing CUDA kernels, absl and oneDNN banners on the native stderr): :func:`require`
imports them with Python's and the native stdout/stderr silenced and warnings ignored, so the
Python API stays quiet too; what Python printed is logged at debug level.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from types import ModuleType

from .errors import MissingDependencyError

__all__ = ["install_hint", "quiet_import", "require"]

log = logging.getLogger(__name__)


def install_hint(extra: str) -> str:
    """The one install command the toolkit suggests for a missing extra."""
    return f"pip install -c constraints.txt 'lsnet-deploy[{extra}]'"


def require(extra: str, *modules: str, what: str) -> list[ModuleType]:
    """Import ``modules`` (dotted names) for ``what`` (e.g. ``"ONNX export"``) and return them.

    Raises:
        MissingDependencyError: ``"<what> needs <module>: pip install ... '[<extra>]'"`` for
            the first module that cannot be imported.
    """
    loaded = []
    for name in modules:
        try:
            loaded.append(quiet_import(name))
        except ImportError as e:
            missing = e.name or name
            raise MissingDependencyError(f"{what} needs {missing}: {install_hint(extra)}") from e
    return loaded


@contextlib.contextmanager
def _native_silenced() -> Iterator[None]:
    """File descriptors 1 and 2 to /dev/null for the block (where they can be redirected)."""
    saved: list[tuple[int, int]] = []
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        yield
        return
    try:
        for fd in (1, 2):
            with contextlib.suppress(OSError):
                saved.append((fd, os.dup(fd)))
                os.dup2(devnull, fd)
        yield
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


def quiet_import(name: str) -> ModuleType:
    """``importlib.import_module(name)``; the first import of a module happens with stdout,
    stderr (Python's and the native ones) and warnings silenced (see the module docstring)."""
    if name in sys.modules:
        return importlib.import_module(name)
    text = io.StringIO()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    try:
        with (warnings.catch_warnings(), contextlib.redirect_stdout(text),
              contextlib.redirect_stderr(text), _native_silenced()):
            warnings.simplefilter("ignore")
            return importlib.import_module(name)
    finally:
        if text.getvalue().strip():
            log.debug("importing %s printed: %s", name, text.getvalue().strip())
