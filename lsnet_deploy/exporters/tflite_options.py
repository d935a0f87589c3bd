"""TFLite's own export options (``--io``, ``--classifier``, ``--int8-int16``): their defaults,
checks, the file-name parts they add, and whether the INT8 preparation applies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..errors import UnsupportedOptionError
from ..quantize.headroom import check_headroom, refuse_int16_options
from .base import FormatOptions, NameParts, Precision

__all__ = ["A16_ALL", "FLOAT_IO", "IO_TYPES", "TfliteOptions"]

IO_TYPES = ("float32", "uint8", "int8")
"""INT8 boundary tensor types (``--io``: the output and a tensor input; an image input is
uint8 whatever the type); the first is the default."""
FLOAT_IO = IO_TYPES[0]
A16_ALL = "all"
"""The one ``--int8-int16`` value TFLite takes: LiteRT's 16x8 has int16 activations
everywhere (its kernels take no int8/int16 mix in one op)."""


def _needs_int8(io: str) -> UnsupportedOptionError:
    return UnsupportedOptionError(f"--io {io} needs --int8 (fp32/fp16 models have float32 "
                                  "inputs and outputs)")


@dataclass(frozen=True)
class TfliteOptions(FormatOptions):
    """TFLite's own options: the INT8 boundary tensor type (``None``: ``float32``), the
    classifier head, and 16x8 (``int8_int16=("all",)``: int16 activations, int8 weights)."""

    owner: ClassVar[str] = "TFLite"
    io: str | None = field(default=None, metadata={"flag": "--io"})
    classifier: bool | None = field(default=None, metadata={"flag": "--classifier"})
    """Softmax probabilities (``None``: yes for 1000-class models with float32 outputs) or raw
    logits (``--logits``); shared with CoreML."""
    int8_int16: tuple[str, ...] | None = field(default=None, metadata={"flag": "--int8-int16"})
    """INT8: ``("all",)`` writes LiteRT's 16x8 (int16 activations, int8 weights) through
    ai-edge-quantizer; shared with ONNX, where op groups may be named."""
    int16_headroom: float | None = field(default=None, metadata={"flag": "--int16-headroom"})
    """16x8: how many times its calibrated range each int16 activation range spans (``None``:
    :data:`~lsnet_deploy.quantize.headroom.INT16_HEADROOM`); shared with ONNX."""

    @property
    def io_type(self) -> str:
        return self.io if self.io is not None else FLOAT_IO

    @property
    def a16(self) -> bool:
        """16x8: int16 activations everywhere (``--int8-int16 all``)."""
        return bool(self.int8_int16)

    def _default_classifier(self, num_classes: int) -> bool:
        # quantized outputs (--io uint8/int8) are the raw integer forms: logits
        return num_classes == 1000 and self.io_type == FLOAT_IO

    def is_classifier(self, num_classes: int) -> bool:
        return (self.classifier if self.classifier is not None
                else self._default_classifier(num_classes))

    def check(self, precision: Precision) -> None:
        if self.int8_int16:
            self._check_a16(precision)
        check_headroom(self.int16_headroom, self.int8_int16)
        if self.io is None:
            return
        if precision != "int8" and self.io != FLOAT_IO:
            raise _needs_int8(self.io)
        if precision == "int8" and self.io not in IO_TYPES:
            raise UnsupportedOptionError(
                f"tflite INT8 export supports --io {', '.join(IO_TYPES)}, not {self.io}")
        if self.classifier and self.io != FLOAT_IO:
            raise UnsupportedOptionError(
                f"--classifier gives float32 probabilities; --io {self.io} outputs quantized "
                "logits (drop --classifier, or --io for the float32 probabilities)")

    def _check_a16(self, precision: Precision) -> None:
        given = self.int8_int16 or ()
        if precision != "int8":
            raise UnsupportedOptionError("--int8-int16 chooses int16 activations of an INT8 "
                                         "export: add --int8")
        if tuple(given) != (A16_ALL,):
            raise UnsupportedOptionError(
                f"--int8-int16 {' '.join(given)}: TFLite's 16x8 has int16 activations "
                f"everywhere, use --int8-int16 {A16_ALL} (op groups and auto apply to ONNX)")
        if self.io_type != FLOAT_IO:
            raise UnsupportedOptionError(f"--io {self.io} with --int8-int16: a 16x8 file has "
                                         "float32 outputs (and a float32 or uint8 image input)")

    def check_quantization(self, precision: Precision, exclude: tuple[str, ...]) -> None:
        if self.a16 and exclude:
            raise UnsupportedOptionError("--int8-exclude with --int8-int16: a 16x8 file keeps "
                                         "no op group in float; drop one of them")

    def observers(self, precision: Precision) -> str | None:
        return ("the running min/max of every tensor" if self.a16 else
                "the PT2E observers (histogram for activations, min/max for weights)")

    def failure_hint(self, precision: Precision) -> str | None:
        if self.a16:
            return (" try more calibration photos (--calib DIR, --calib-size), a wider "
                    "--int16-headroom (a photo beyond the calibrated ranges is clipped) or "
                    "lower --min-cosine")
        return None

    def equalizes(self, precision: Precision) -> bool:
        """16x8 quantizes the fused model as it is: 16-bit steps need no equalization, whose
        tighter ranges clipped the worst photo before the int16 headroom (docs/int8.md)."""
        return not self.a16

    def gptq_by_default(self, precision: Precision) -> bool:
        """16x8 (int16 activations) rounds its weights with GPTQ; 8-bit does not by default."""
        return self.a16

    def refuse_for(self, format_name: str, precision: Precision) -> None:
        if self.classifier:  # --logits is what every other format gives anyway
            raise UnsupportedOptionError(
                f"--classifier applies to CoreML and TFLite, not {format_name}")
        refuse_int16_options(self.int8_int16, self.int16_headroom, format_name)
        if self.io is None or self.io == FLOAT_IO:  # every other format is float at the edge
            return
        if precision != "int8":
            raise _needs_int8(self.io)
        raise UnsupportedOptionError(
            f"{format_name} INT8 export supports --io float32, not {self.io}")

    def name_parts(self, precision: Precision, num_classes: int) -> NameParts:
        """``_a16`` for 16x8 (``lsnet_t_224_int8_a16.tflite``), ``_cls`` / ``_logits`` for a
        non-default head, and the ``--io`` type of an INT8 file when not float32."""
        extra = "_a16" if self.a16 and precision == "int8" else ""
        if self.is_classifier(num_classes) != self._default_classifier(num_classes):
            extra += "_cls" if self.is_classifier(num_classes) else "_logits"
        io = self.io if precision == "int8" and self.io_type != FLOAT_IO else None
        return NameParts(extra=extra, io=io)

    def output_names(self, num_classes: int) -> tuple[str, ...] | None:
        return ("probabilities",) if self.is_classifier(num_classes) else None
