"""The installed version of lsnet-deploy (a leaf module: any layer may import it)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lsnet-deploy")
except PackageNotFoundError:  # running from a checkout without installing
    __version__ = "0.0.0+unknown"
