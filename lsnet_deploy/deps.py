"""Optional backends: one check, one install hint.

Each export format lives behind a pip extra (``lsnet-deploy[onnx]``, ``[tflite]``,
``[coreml]``, ...). :func:`require` imports what a step needs and, when something is missing,
raises :class:`~lsnet_deploy.errors.MissingDependencyError` naming the missing module and the
extra that installs it. Nothing is ever pip-installed at run time.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

__all__ = ["install_hint", "require"]


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
            loaded.append(importlib.import_module(name))
        except ImportError as e:
            missing = e.name or name
            raise MissingDependencyError(f"{what} needs {missing}: {install_hint(extra)}") from e
    return loaded
