"""Core ML's own export options (``--ios``, ``--classifier``, ``--w8a8-scheme``): their defaults,
checks and the file-name parts they add."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..errors import UnsupportedOptionError
from .base import FormatOptions, NameParts, Precision
from .coreml_checks import IOS_SPEC_VERSION

__all__ = ["DEFAULT_IOS", "W8A8_SCHEMES", "CoremlOptions"]

DEFAULT_IOS = 17
W8A8_SCHEMES = ("symmetric", "affine")
"""Core ML W8A8 quantization schemes (``--w8a8-scheme``); the first is the default."""


@dataclass(frozen=True)
class CoremlOptions(FormatOptions):
    """CoreML's own options: the minimum deployment target (``None``: iOS 17) and whether the
    model is a classifier (``None``: yes for 1000-class models)."""

    owner: ClassVar[str] = "CoreML"
    ios: int | None = field(default=None, metadata={"flag": "--ios"})
    classifier: bool | None = field(default=None, metadata={"flag": "--classifier"})
    w8a8_scheme: str | None = field(default=None, metadata={"flag": "--w8a8-scheme"})
    """W8A8 activations: ``symmetric`` (``None``: the default; Apple's scheme for the Neural
    Engine's int8 compute) or ``affine`` (a zero point per tensor: a full 8 bits for one-signed
    tensors; higher fidelity, its Neural Engine speed unmeasured: docs/int8.md)."""

    @property
    def scheme(self) -> str:
        return self.w8a8_scheme if self.w8a8_scheme is not None else "symmetric"

    @property
    def ios_target(self) -> int:
        return self.ios if self.ios is not None else DEFAULT_IOS

    def is_classifier(self, num_classes: int) -> bool:
        return self.classifier if self.classifier is not None else num_classes == 1000

    def rounds_weights(self, precision: Precision) -> bool:
        """No: coremltools' W8A8 quantizer (``LinearQuantizer``) takes the weights' scale as
        ``max|w| / 127.5`` on ``-128..127`` (and zero points under ``--w8a8-scheme affine``),
        another grid than GPTQ rounds to; its own nearest rounding would move them again."""
        return False

    def check(self, precision: Precision) -> None:
        if self.ios_target not in IOS_SPEC_VERSION:
            raise UnsupportedOptionError(
                f"--ios {self.ios}: supported {', '.join(map(str, IOS_SPEC_VERSION))}")
        if self.w8a8_scheme is not None:
            if self.w8a8_scheme not in W8A8_SCHEMES:
                raise UnsupportedOptionError(f"--w8a8-scheme {self.w8a8_scheme}: choose "
                                             f"{' or '.join(W8A8_SCHEMES)}")
            if precision != "w8a8":
                raise UnsupportedOptionError(
                    f"--w8a8-scheme applies to --w8a8, not {precision}")

    def refuse_for(self, format_name: str, precision: Precision) -> None:
        if self.classifier:  # --logits is what every other format gives anyway
            raise UnsupportedOptionError(
                f"--classifier applies to CoreML and TFLite, not {format_name}")
        if self.ios is not None:
            raise UnsupportedOptionError(f"--ios applies to CoreML, not {format_name}")
        if self.w8a8_scheme is not None:
            raise UnsupportedOptionError(f"--w8a8-scheme applies to CoreML, not {format_name}")

    def name_parts(self, precision: Precision, num_classes: int) -> NameParts:
        extra = ""
        if self.is_classifier(num_classes) != (num_classes == 1000):
            extra += "_cls" if self.is_classifier(num_classes) else "_logits"
        if self.ios_target != DEFAULT_IOS:
            extra += f"_ios{self.ios_target}"
        if self.scheme != "symmetric":
            extra += f"_{self.scheme}"
        return NameParts(extra=extra)

    def output_names(self, num_classes: int) -> tuple[str, ...] | None:
        return ("classLabel", "classLabel_probs") if self.is_classifier(num_classes) else None
