"""Typed exceptions of lsnet-deploy.

Every error the toolkit raises on purpose derives from :class:`LsnetDeployError`. Messages are
one line and say what to do next; the CLI prints them without a traceback and maps each class
to an exit code (see ``lsnet_deploy.cli.EXIT_CODES``).
"""

from __future__ import annotations


def first_line(e: BaseException, limit: int | None = None) -> str:
    """The first line of ``str(e)`` (cut to ``limit`` characters with "..." if given): what a
    one-line error message quotes of a third-party exception."""
    lines = str(e).strip().splitlines()
    first = lines[0] if lines else ""
    if limit is not None and len(first) > limit:
        return first[: limit - 3] + "..."
    return first


class LsnetDeployError(Exception):
    """Base class of every error raised on purpose by lsnet-deploy."""


class UnknownVariantError(LsnetDeployError, ValueError):
    """A variant name that is not registered."""


class InputShapeError(LsnetDeployError, ValueError):
    """An input whose size does not match the geometry the model was built for."""


class CheckpointError(LsnetDeployError):
    """A checkpoint file that cannot be read or does not fit the model."""


class WeightsUnavailableError(LsnetDeployError):
    """Official weights are neither cached nor downloadable (e.g. offline)."""


class ImageError(LsnetDeployError):
    """An image or image folder that cannot be used."""


class DatasetError(ImageError):
    """A labelled image set that cannot be used: a labels file naming unknown files or bad class
    indices, class folders that are not the model's classes."""


class MissingDependencyError(LsnetDeployError, ImportError):
    """An optional backend is not installed; the message names the pip extra."""


class ReparamError(LsnetDeployError):
    """Reparameterization produced an unexpected structure (a bug: please report it)."""


class UnsupportedOptionError(LsnetDeployError, ValueError):
    """An option the chosen format or precision does not support (never silently rewritten)."""


class OutputError(LsnetDeployError):
    """The output location cannot be used (not writable, artifact exists without --force)."""


class ExportError(LsnetDeployError):
    """A converter failed to produce an artifact."""


class ValidationFailedError(LsnetDeployError):
    """An artifact was written but does not match PyTorch within its gate; it is kept, marked
    failed in its sidecar, for inspection (``artifacts`` lists what was written)."""

    artifacts: list[object] = []


class ArtifactError(LsnetDeployError):
    """An artifact or its sidecar that cannot be trusted: a sidecar that is malformed, or whose
    sha256 or input description does not match the file next to it."""


class BenchmarkError(LsnetDeployError):
    """A benchmark that cannot run (model fails to load or run, bad result file)."""


class DeviceError(BenchmarkError):
    """A phone that cannot be used: adb missing, no device, unauthorized, tool failed on it."""


class EmulationError(LsnetDeployError):
    """An emulated run or the setup of its environment failed (qemu-user, debootstrap or the
    arm64 runtime crashed, or a run timed out)."""
