"""Reading LSNet checkpoints: official ``.pth`` files, wrappers, prefixes and ``.safetensors``.

Official files are ``{'model': state_dict}`` whose keys are exactly our module names, so the
only remapping is unwrapping (:func:`extract_state_dict`, a pure function) and, for a model
built for another input size, resizing the attention-bias tables
(:func:`adapt_state_dict`, also pure). Everything is loaded with ``weights_only=True``.

Hostile or damaged files are refused before they reach the model, each with a
:class:`CheckpointError` naming the file and the tensors:

- ``torch.save`` zips are CRC-checked member by member (``zipfile.testzip``) before loading, so
  flipped bytes inside the tensor data are caught. The legacy (pre-1.6, non-zip) pickle format
  and ``.safetensors`` carry no checksum: they are accepted, and damage there is only caught by
  the value checks below (compare the file's sha256 with its source; official downloads are
  checked against the zoo manifest).
- dtypes (:func:`dtype_problems`): float parameters and statistics must be stored as float32,
  float16, bfloat16 or float64 (half precision loads on purpose); integer buffers as integers.
  An int32 weight is refused, never silently cast.
- index buffers (:func:`index_problems`): every ``attention_bias_idxs`` must index inside its
  own ``attention_biases`` table (``[0, table_len - 1]``).
- values (:func:`value_problems`): NaN / Inf in any float tensor, or a negative BatchNorm
  ``running_var``, make the network output NaN; refused unless ``allow_nonfinite=True``.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import stat
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .errors import CheckpointError
from .lsnet import VARIANTS, LSNet, build_lsnet, relative_position_index

__all__ = [
    "FLOAT_DTYPES",
    "CheckpointInfo",
    "adapt_state_dict",
    "check_state_dict",
    "dtype_problems",
    "extract_state_dict",
    "file_sha256",
    "guess_variant",
    "index_problems",
    "load_weights",
    "read_checkpoint",
    "state_dict_mismatch",
    "strip_prefix",
    "value_problems",
]

log = logging.getLogger(__name__)

_WRAPPER_KEYS = ("model", "state_dict", "model_ema", "module", "ema")
_BIAS_TABLE = "attention_biases"
_BIAS_INDEX = "attention_bias_idxs"
_RUNNING_VAR = "running_var"

FLOAT_DTYPES: frozenset[torch.dtype] = frozenset(
    {torch.float32, torch.float16, torch.bfloat16, torch.float64}
)
"""Storage dtypes accepted for floating-point parameters and buffers (cast to the model's)."""


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
    mode = p.stat().st_mode
    if not stat.S_ISREG(mode):
        raise CheckpointError(
            f"checkpoint {p} is not a regular file ({_file_kind(mode)}); pass a .pth or "
            ".safetensors file"
        )
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
    if head.startswith(b"PK"):
        _check_zip_crcs(p)
    else:
        log.info("%s is in the legacy (non-zip) torch.save format, which has no checksums: "
                 "damage is only caught if it makes values invalid", p)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types (KeyError, RuntimeError, ...)
        raise _load_error(p, e) from e
    try:
        return extract_state_dict(obj)
    except ValueError as e:
        raise CheckpointError(f"{p}: {e}") from e


def _file_kind(mode: int) -> str:
    """What a non-regular file is, in words (``a FIFO``, ``a character device``, ...)."""
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _check_zip_crcs(p: Path) -> None:
    """Verify the CRC-32 of every member of a ``torch.save`` zip (``torch.load`` does not):
    raises :class:`CheckpointError` naming the first damaged member."""
    try:
        with zipfile.ZipFile(p) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError,
            NotImplementedError) as e:
        raise CheckpointError(f"{p} is truncated or corrupt ({_short(e)}); re-download it") from e
    if bad is not None:
        raise CheckpointError(
            f"{p} is corrupt: zip member {bad!r} fails its CRC check (its bytes changed after "
            "saving); re-download it"
        )


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


def dtype_problems(
    sd: Mapping[str, torch.Tensor], model_sd: Mapping[str, torch.Tensor]
) -> list[str]:
    """Entries of ``sd`` whose storage would be silently cast into ``model_sd``'s: a float
    parameter or statistic stored as anything but :data:`FLOAT_DTYPES` (int32, bool, complex,
    float8, quantized ...), an integer buffer stored as a non-integer, or a non-dense tensor.
    Only keys present in both are looked at. Each entry reads ``key: <what> (expected ...)``."""
    problems = []
    for key, target in model_sd.items():
        t = sd.get(key)
        if t is None:
            continue
        if t.layout != torch.strided:
            problems.append(f"{key}: {t.layout} tensor (expected a dense tensor)")
        elif target.is_floating_point():
            if t.dtype not in FLOAT_DTYPES:
                problems.append(f"{key}: {t.dtype} (expected float32, float16 or bfloat16)")
        elif t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            problems.append(f"{key}: {t.dtype} (expected an integer tensor, like {target.dtype})")
    return problems


def index_problems(sd: Mapping[str, torch.Tensor]) -> list[str]:
    """Index buffers of ``sd`` that point outside their table: every ``*.attention_bias_idxs``
    must hold values in ``[0, n - 1]`` for its ``*.attention_biases`` table ``(heads, n)``.
    Buffers without a table or of another shape are left to the key/shape check. Each entry
    reads ``key: values in [lo, hi], valid [0, n - 1]``."""
    problems = []
    for key, idx in sd.items():
        if not key.endswith(_BIAS_INDEX) or idx.numel() == 0:
            continue
        table = sd.get(key[: -len(_BIAS_INDEX)] + _BIAS_TABLE)
        if table is None or table.dim() != 2:
            continue
        if idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool:
            continue  # reported by dtype_problems
        lo, hi, n = int(idx.min()), int(idx.max()), int(table.shape[1])
        if lo < 0 or hi >= n:
            problems.append(f"{key}: values in [{lo}, {hi}], valid [0, {n - 1}]")
    return problems


def value_problems(sd: Mapping[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    """``(nonfinite, negative_var)``: the float tensors of ``sd`` holding NaN or Inf, and the
    BatchNorm ``*.running_var`` holding a negative value (``sqrt(var + eps)`` is then NaN)."""
    nonfinite, negative = [], []
    for key, t in sd.items():
        if not t.is_floating_point() or t.layout != torch.strided:
            continue
        if not bool(torch.isfinite(t).all()):
            nonfinite.append(key)
        elif key.endswith(_RUNNING_VAR) and bool((t < 0).any()):
            negative.append(key)
    return nonfinite, negative


def check_state_dict(
    sd: Mapping[str, torch.Tensor],
    model_sd: Mapping[str, torch.Tensor],
    path: str | Path,
    *,
    allow_nonfinite: bool = False,
) -> None:
    """Refuse a state dict that would load into a silently wrong model.

    Checks, in order: storage dtypes (:func:`dtype_problems`), index ranges
    (:func:`index_problems`) and values (:func:`value_problems`). With ``allow_nonfinite`` the
    value problems are logged as a warning instead (to inspect a broken checkpoint). Raises
    :class:`CheckpointError` naming ``path``, the first tensors and their count.
    """
    dtypes = dtype_problems(sd, model_sd)
    if dtypes:
        raise CheckpointError(
            f"{path}: {len(dtypes)} tensor(s) stored with a dtype that would be silently cast "
            f"({_preview(dtypes, 2)}); re-save the checkpoint from the float model"
        )
    indices = index_problems(sd)
    if indices:
        raise CheckpointError(
            f"{path}: {len(indices)} attention-bias index buffer(s) out of range "
            f"({_preview(indices, 2)}); the checkpoint is corrupt: re-download it"
        )
    nonfinite, negative = value_problems(sd)
    if not (nonfinite or negative):
        return
    parts = []
    if nonfinite:
        parts.append(f"{len(nonfinite)} tensor(s) hold NaN/Inf ({_preview(nonfinite)})")
    if negative:
        parts.append(f"{len(negative)} BatchNorm running_var tensor(s) hold negative values "
                     f"({_preview(negative)})")
    what = "; ".join(parts)
    if allow_nonfinite:
        log.warning("%s: %s; loaded anyway (allow_nonfinite): outputs will be NaN", path, what)
        return
    raise CheckpointError(
        f"{path}: {what}; the weights are corrupt or diverged: re-download or re-export them "
        "(the Python API loads them anyway with create_model(..., allow_nonfinite=True), for "
        "inspection)"
    )


def load_weights(
    model: LSNet,
    path: str | Path,
    variant: str | None = None,
    *,
    allow_nonfinite: bool = False,
) -> CheckpointInfo:
    """Load a checkpoint into ``model`` strictly (after unwrapping and bias-table resizing).

    Raises :class:`CheckpointError` with the missing / unexpected / mis-shaped keys and the
    variant the file appears to hold when it does not fit, and for a damaged file (zip CRC
    mismatch, silently cast dtypes, out-of-range index buffers, NaN/Inf or negative running
    variances; see the module docstring). ``allow_nonfinite=True`` loads NaN/Inf and negative
    variances anyway, with a warning (outputs will be NaN): for inspecting a broken file only.
    """
    sd, wrapper = read_checkpoint(path)
    model_sd = model.state_dict()
    check_state_dict(sd, model_sd, path, allow_nonfinite=allow_nonfinite)
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
