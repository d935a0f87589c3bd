"""The model zoo: the manifest of official checkpoints and their download.

``models/zoo.json`` maps each official variant to its Hugging Face file, input size,
normalization, licence and the paper's numbers. Checkpoints are fetched with
``huggingface_hub`` into :func:`lsnet_deploy.paths.checkpoint_dir` and reused from there.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import urllib.parse
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .checkpoint import file_sha256
from .errors import CheckpointError, UnknownVariantError, WeightsUnavailableError, first_line
from .paths import checkpoint_dir, manifest_path

__all__ = ["ZooEntry", "cached_checkpoint", "fetch_checkpoint", "zoo", "zoo_entry"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ZooEntry:
    """One official checkpoint (``models/zoo.json``)."""

    variant: str
    repo_id: str
    filename: str
    url: str
    sha256: str | None
    input_size: int
    interpolation: str
    crop_pct: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    num_classes: int
    license: str
    paper: dict[str, Any]
    counts: dict[str, int] | None = None
    """Parameters and MACs at ``input_size`` (:func:`lsnet_deploy.describe.variant_counts`),
    kept in the manifest so listing the variants builds no model."""


@lru_cache(maxsize=1)
def zoo() -> dict[str, ZooEntry]:
    """All manifest entries by variant name."""
    path = manifest_path()
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read the zoo manifest {path}: {e}") from e
    out: dict[str, ZooEntry] = {}
    for name, d in data["variants"].items():
        out[name] = ZooEntry(
            variant=name,
            repo_id=d["repo_id"],
            filename=d["filename"],
            url=d["url"],
            sha256=d.get("sha256"),
            input_size=int(d["input_size"]),
            interpolation=d["interpolation"],
            crop_pct=float(d["crop_pct"]),
            mean=tuple(d["mean"]),  # type: ignore[arg-type]
            std=tuple(d["std"]),  # type: ignore[arg-type]
            num_classes=int(d["num_classes"]),
            license=d["license"],
            paper=dict(d.get("paper", {})),
            counts={k: int(v) for k, v in d["counts"].items()} if d.get("counts") else None,
        )
    return out


def zoo_entry(variant: str) -> ZooEntry:
    """The manifest entry of an official variant."""
    entries = zoo()
    if variant not in entries:
        raise UnknownVariantError(
            f"{variant!r} has no official checkpoint; official: {', '.join(entries)}"
        )
    return entries[variant]


def cached_checkpoint(variant: str) -> Path | None:
    """Path of the downloaded checkpoint of ``variant`` if present."""
    path = checkpoint_dir() / zoo_entry(variant).filename
    return path if path.is_file() and path.stat().st_size > 0 else None


PROBE_TIMEOUT_S = 3.0
"""How long :func:`hub_unreachable` waits for the Hub's address and a TCP connection."""
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
               "all_proxy")


def hub_unreachable(endpoint: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why the Hub at ``endpoint`` cannot be reached, found in at most ``timeout`` seconds
    (DNS lookup and a TCP connection to its HTTPS port), or ``None`` when it can, or when a
    proxy is configured (the download then goes through it, and only it can tell). One fast
    check instead of the Hub client's retries with back-off (half a minute offline)."""
    if any(os.environ.get(v) for v in _PROXY_VARS):
        return None
    url = urllib.parse.urlsplit(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)
    result: list[str | None] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(None)
        except OSError as e:
            result.append(f"{host} is unreachable ({e.strerror or type(e).__name__}); no "
                          "network?")

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout)
    if not result:
        return f"{host} did not answer within {timeout:.0f} s; no network?"
    return result[0]


def fetch_checkpoint(variant: str) -> Path:
    """Return the official checkpoint of ``variant``, downloading it once if needed.

    Raises :class:`WeightsUnavailableError` when it is not cached and cannot be downloaded
    (offline, ``HF_HUB_OFFLINE=1``, no route to the Hub), and :class:`CheckpointError` when the
    download does not match the manifest's sha256.
    """
    entry = zoo_entry(variant)
    cached = cached_checkpoint(variant)
    if cached is not None:
        return cached
    target_dir = checkpoint_dir()
    hint = (
        f"pass --weights PATH to a local copy of {entry.filename} ({entry.url}), "
        "or --weights random for untrained weights"
    )
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WeightsUnavailableError(f"cannot create {target_dir}: {e}; {hint}") from e
    if os.environ.get("HF_HUB_OFFLINE") not in (None, "", "0"):
        raise WeightsUnavailableError(f"{entry.filename} is not cached and HF_HUB_OFFLINE is "
                                      f"set; {hint}")
    try:
        from huggingface_hub import constants, hf_hub_download
    except ImportError as e:  # pragma: no cover - core dependency
        raise WeightsUnavailableError(f"huggingface_hub is not installed; {hint}") from e
    unreachable = hub_unreachable(constants.ENDPOINT)
    if unreachable:
        raise WeightsUnavailableError(f"cannot download {entry.filename}: {unreachable}; "
                                      f"{hint}")
    log.info("downloading %s from Hugging Face (%s) to %s", entry.filename, entry.repo_id, target_dir)
    try:
        path = Path(
            hf_hub_download(
                repo_id=entry.repo_id, filename=entry.filename, local_dir=str(target_dir)
            )
        )
    except Exception as e:  # offline, DNS, HTTP and hub errors all mean "not available"
        offline = os.environ.get("HF_HUB_OFFLINE") not in (None, "", "0")
        if offline:
            why = "HF_HUB_OFFLINE is set"
        elif type(e).__name__ in ("LocalEntryNotFoundError", "ConnectionError", "ConnectError"):
            why = "cannot reach the Hugging Face Hub"
        else:
            why = f"{type(e).__name__}: {first_line(e, limit=200)}"
        raise WeightsUnavailableError(
            f"could not download {entry.filename} from {entry.repo_id} ({why}); {hint}"
        ) from e
    digest = file_sha256(path)
    if entry.sha256 and digest != entry.sha256:
        path.unlink(missing_ok=True)
        raise CheckpointError(
            f"{entry.filename} sha256 {digest[:12]}... does not match the manifest "
            f"({entry.sha256[:12]}...); the download was removed, try again"
        )
    log.info("%s sha256 %s", entry.filename, digest)
    return path

