"""Where lsnet-deploy finds its data and puts its files.

In a source checkout the data folders are the repository's own: ``models/`` (zoo manifest and
downloaded checkpoints), ``calibration/`` (default images) and ``export/`` (default output).
An installed wheel carries the manifest and the calibration images inside the package
(``lsnet_deploy/_bundled``); downloaded checkpoints then go to ``~/.cache/lsnet-deploy/models``.
``LSNET_DEPLOY_HOME`` overrides the checkpoint folder's parent.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "bundled_dir",
    "calibration_dir",
    "checkpoint_dir",
    "default_export_dir",
    "manifest_path",
    "repo_root",
]

_PKG = Path(__file__).resolve().parent


def repo_root() -> Path | None:
    """The source checkout holding this package, or ``None`` for an installed wheel."""
    root = _PKG.parent
    if (root / "pyproject.toml").is_file() and (root / "models" / "zoo.json").is_file():
        return root
    return None


def bundled_dir() -> Path:
    """Data shipped inside the wheel (absent in a source checkout)."""
    return _PKG / "_bundled"


def manifest_path() -> Path:
    """The zoo manifest (``models/zoo.json``)."""
    root = repo_root()
    if root is not None:
        return root / "models" / "zoo.json"
    return bundled_dir() / "zoo.json"


def calibration_dir() -> Path:
    """The default calibration/validation image folder."""
    root = repo_root()
    if root is not None:
        return root / "calibration"
    return bundled_dir() / "calibration"


def checkpoint_dir() -> Path:
    """Folder for downloaded official checkpoints."""
    home = os.environ.get("LSNET_DEPLOY_HOME")
    if home:
        return Path(home).expanduser() / "models"
    root = repo_root()
    if root is not None:
        return root / "models"
    return Path.home() / ".cache" / "lsnet-deploy" / "models"


def default_export_dir() -> Path:
    """Default artifact folder: ``export/`` of the checkout, else ``./export``."""
    root = repo_root()
    return (root / "export") if root is not None else Path.cwd() / "export"
