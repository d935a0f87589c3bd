"""Reading LSNet checkpoints: official ``.pth`` files, wrappers, prefixes and ``.safetensors``.

Official files are ``{'model': state_dict}`` whose keys are exactly our module names, so the
only remapping is unwrapping (:func:`extract_state_dict`, a pure function) and, for a model
built for another input size, resizing the attention-bias tables
(:func:`adapt_state_dict`, also pure). Everything is loaded with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .errors import CheckpointError
from .lsnet import VARIANTS, LSNet, build_lsnet, relative_position_index

__all__ = [
    "CheckpointInfo",
    "adapt_state_dict",
    "extract_state_dict",
    "file_sha256",
    "guess_variant",
    "load_weights",
    "read_checkpoint",
    "state_dict_mismatch",
    "strip_prefix",
]

log = logging.getLogger(__name__)

_WRAPPER_KEYS = ("model", "state_dict", "model_ema", "module", "ema")
_BIAS_TABLE = "attention_biases"
_BIAS_INDEX = "attention_bias_idxs"


@dataclass(frozen=True)
class CheckpointInfo:
    """Where loaded weights came from: the file, its sha256 and the wrapper key unwrapped."""

    path: str
    sha256: str
    wrapper: str | None
    resized_bias_tables: int


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _is_tensor_dict(obj: object) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) for k in obj)
        and any(isinstance(v, torch.Tensor) for v in obj.values())
    )


def extract_state_dict(obj: object) -> tuple[dict[str, torch.Tensor], str | None]:
    """Find the state dict in a loaded checkpoint object.

    Accepts a bare state dict, or one wrapped under ``model`` (official), ``state_dict``,
    ``model_ema`` (in that order of preference), and strips a leading ``module.`` (DDP) prefix.
    Returns ``(state_dict, wrapper_key_or_None)``; raises ``ValueError`` if none is found.
    """
    wrapper: str | None = None
    sd: object = obj
    if isinstance(obj, Mapping) and not _is_tensor_dict(obj):
        for key in _WRAPPER_KEYS:
            if key in obj and _is_tensor_dict(obj[key]):
                sd, wrapper = obj[key], key
                break
        else:
            keys = ", ".join(map(str, list(obj)[:8])) if isinstance(obj, Mapping) else ""
            raise ValueError(f"no state dict found (top-level keys: {keys or 'none'})")
    elif isinstance(obj, Mapping) and "model" in obj and _is_tensor_dict(obj["model"]):
        sd, wrapper = obj["model"], "model"
    if not _is_tensor_dict(sd):
        raise ValueError(f"no state dict found (loaded a {type(obj).__name__})")
    assert isinstance(sd, Mapping)
    return strip_prefix({k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}), wrapper


def strip_prefix(sd: dict[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    """Drop a prefix shared by every key (DistributedDataParallel's ``module.``)."""
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], str | None]:
    """Load a checkpoint file (``.pth``/``.pt``/``.bin`` via ``torch.load(weights_only=True)``
    or ``.safetensors``) and return ``(state_dict, wrapper_key)``.

    Raises :class:`CheckpointError` naming the file and the problem.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    if p.is_dir():
        raise CheckpointError(f"checkpoint path is a directory, expected a file: {p}")
    if p.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {p} is empty (0 bytes): re-download it")
    if p.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as e:  # pragma: no cover - safetensors is a core dependency
            raise CheckpointError("reading .safetensors needs the 'safetensors' package") from e
        try:
            return strip_prefix(dict(load_file(str(p)))), None
        except Exception as e:  # safetensors raises its own SafetensorError
            raise CheckpointError(
                f"{p} is not a readable safetensors file ({_short(e)}); is it truncated?"
            ) from e
    try:
        with open(p, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {p}: {e.strerror or e}") from e
    if not (head.startswith(b"PK") or head.startswith(b"\x80")):  # zip (torch.save) or pickle
        raise CheckpointError(
            f"{p} is not a PyTorch checkpoint (neither a torch.save zip nor a pickle)"
        )
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types (KeyError, RuntimeError, ...)
        raise _load_error(p, e) from e
    try:
        return extract_state_dict(obj)
    except ValueError as e:
        raise CheckpointError(f"{p}: {e}") from e


def _load_error(p: Path, e: Exception) -> CheckpointError:
    """Turn a ``torch.load`` failure into a one-line, actionable error."""
    msg = str(e)
    if isinstance(e, pickle.UnpicklingError) and "Weights only load failed" in msg:
        return CheckpointError(
            f"{p} holds Python objects other than tensors and cannot be loaded with "
            "weights_only=True; re-save it as {'model': model.state_dict()}"
        )
    if (
        isinstance(e, (EOFError, zipfile.BadZipFile))
        or "central directory" in msg
        or "zip archive" in msg
        or "EOF" in msg
        or "truncated" in msg
    ):
        return CheckpointError(f"{p} is truncated or corrupt ({_short(e)}); re-download it")
    return CheckpointError(f"{p} is not a PyTorch checkpoint ({type(e).__name__}: {_short(e)})")


def _short(e: BaseException, limit: int = 120) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def resize_bias_table(table: torch.Tensor, src: tuple[int, int], dst: tuple[int, int]) -> torch.Tensor:
    """Bicubically resize a relative-position bias table ``(heads, h*w)`` from grid ``src`` to
    ``dst`` (the table is an image over offsets ``(|dy|, |dx|)``), as upstream fine-tuning does."""
    heads = table.shape[0]
    img = table.reshape(1, heads, src[0], src[1]).float()
    out = F.interpolate(img, size=dst, mode="bicubic", align_corners=False)
    return out.reshape(heads, dst[0] * dst[1]).to(table.dtype)


def _grid_of_table(key: str, length: int) -> tuple[int, int]:
    """Grid of a checkpoint's bias table: official tables are square (4x4 for 224)."""
    side = int(round(length**0.5))
    if side * side == length:
        return (side, side)
    raise CheckpointError(
        f"{key} has {length} entries, not a square grid; build the model for the size the "
        "checkpoint was trained at"
    )


def _grid_of_index(idx: torch.Tensor) -> tuple[int, int] | None:
    """The ``(h, w)`` grid whose relative-position index equals ``idx`` ``(N, N)``, if any."""
    if idx.dim() != 2 or idx.shape[0] != idx.shape[1]:
        return None
    n = idx.shape[0]
    for h in range(1, n + 1):
        if n % h == 0:
            candidate, _ = relative_position_index((h, n // h))
            if torch.equal(candidate, idx.to(candidate.dtype)):
                return (h, n // h)
    return None


def adapt_state_dict(
    sd: Mapping[str, torch.Tensor],
    model_sd: Mapping[str, torch.Tensor],
    grid: tuple[int, int] | None = None,
) -> tuple[dict[str, torch.Tensor], int]:
    """Fit attention-bias tables of ``sd`` to a model built for another input size.

    For every ``*.attention_biases`` built for another grid than the model's stage-4 ``grid``
    ``(h, w)`` (default: square, from the model's table length), the table is resized
    bicubically and ``*.attention_bias_idxs`` is replaced by the model's own index. The
    checkpoint's grid is read from its ``attention_bias_idxs`` (else assumed square).
    Everything else is returned unchanged. Returns ``(new_sd, n_resized)``.
    """
    out = dict(sd)
    resized = 0
    for key, table in sd.items():
        if not key.endswith(_BIAS_TABLE) or key not in model_sd:
            continue
        target = model_sd[key]
        if table.dim() != 2 or table.shape[0] != target.shape[0]:
            continue  # a different head count: reported as mis-shaped by the caller
        src_idx = sd.get(key[: -len(_BIAS_TABLE)] + _BIAS_INDEX)
        src = _grid_of_index(src_idx) if src_idx is not None else None
        src = src or _grid_of_table(key, table.shape[1])
        if src[0] * src[1] != table.shape[1]:
            raise CheckpointError(
                f"{key} has {table.shape[1]} entries but its index is for a "
                f"{src[0]}x{src[1]} grid; the checkpoint is inconsistent"
            )
        dst = grid if grid is not None else _grid_of_table(key, target.shape[1])
        if dst[0] * dst[1] != target.shape[1]:
            raise CheckpointError(f"{key}: grid {dst} does not match a table of {target.shape[1]}")
        if src == dst:
            continue
        out[key] = resize_bias_table(table, src, dst)
        idx_key = key[: -len(_BIAS_TABLE)] + _BIAS_INDEX
        if idx_key in model_sd:
            out[idx_key] = model_sd[idx_key].clone()
        resized += 1
    return out, resized


def state_dict_mismatch(
    sd: Mapping[str, torch.Tensor], model_sd: Mapping[str, torch.Tensor]
) -> tuple[list[str], list[str], list[str]]:
    """``(missing, unexpected, misshaped)`` key lists of ``sd`` against ``model_sd``; the
    mis-shaped entries read ``key: file [..] vs model [..]``."""
    missing = [k for k in model_sd if k not in sd]
    unexpected = [k for k in sd if k not in model_sd]
    misshaped = [
        f"{k}: file {list(sd[k].shape)} vs model {list(model_sd[k].shape)}"
        for k in model_sd
        if k in sd and sd[k].shape != model_sd[k].shape
    ]
    return missing, unexpected, misshaped


def guess_variant(sd: Mapping[str, torch.Tensor]) -> str | None:
    """Name of the official variant whose keys and shapes match ``sd`` exactly (at any of the
    bias-table sizes), or ``None``."""
    for name, cfg in VARIANTS.items():
        if not cfg.official:
            continue
        with torch.device("meta"):
            ref = build_lsnet(name).state_dict()
        if set(ref) != set(sd):
            continue
        if all(
            ref[k].shape == sd[k].shape
            for k in ref
            if not (k.endswith(_BIAS_TABLE) or k.endswith(_BIAS_INDEX))
        ):
            return name
    return None


def _preview(items: list[str], n: int = 3) -> str:
    more = f", +{len(items) - n} more" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def load_weights(model: LSNet, path: str | Path, variant: str | None = None) -> CheckpointInfo:
    """Load a checkpoint into ``model`` strictly (after unwrapping and bias-table resizing).

    Raises :class:`CheckpointError` with the missing / unexpected / mis-shaped keys and the
    variant the file appears to hold when it does not fit.
    """
    sd, wrapper = read_checkpoint(path)
    model_sd = model.state_dict()
    try:
        sd, resized = adapt_state_dict(sd, model_sd, model.attn_resolution)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from e
    missing, unexpected, misshaped = state_dict_mismatch(sd, model_sd)
    if missing or unexpected or misshaped:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({_preview(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({_preview(unexpected)})")
        if misshaped:
            parts.append(f"{len(misshaped)} mis-shaped ({_preview(misshaped, 2)})")
        guess = guess_variant(sd)
        hint = (
            f"; it looks like an {guess} checkpoint: use --model {guess}"
            if guess and guess != variant
            else "; is it an LSNet checkpoint?"
        )
        target = variant or "this model"
        raise CheckpointError(f"{path} does not fit {target}: " + "; ".join(parts) + hint)
    model.load_state_dict(sd, strict=True)
    if resized:
        log.info("resized %d attention-bias tables to the %s grid", resized, model.attn_resolution)
    return CheckpointInfo(str(path), file_sha256(path), wrapper, resized)
