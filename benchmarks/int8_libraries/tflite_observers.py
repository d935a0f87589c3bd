"""TFLite PT2E INT8: the activation observer litert-torch's quantizer config uses (torchao's
``HistogramObserver``: an L2-optimal range from a 2048-bin histogram, which may clip) against a
plain ``MinMaxObserver`` (never clips), on each synthetic weight family.

Usage (from the repository root)::

    .venv/bin/python benchmarks/int8_libraries/tflite_observers.py [--variant lsnet_t]
        [--families random random-outliers]

Each configuration is a full ``lsnet-deploy export --format tflite --int8`` (channel
equalization included, gate off); the MinMax one runs with litert-torch's module attribute
``HistogramObserver`` pointed at ``MinMaxObserver`` while its (cached) config is rebuilt. Prints one
Markdown row per configuration: mean / min logit cosine against the unfused PyTorch model on
the held-out photos, top-1 agreement, and the export's wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from lsnet_deploy.pipeline import export


@contextlib.contextmanager
def activation_observer(name: str) -> Iterator[None]:
    """Run the block with litert-torch's static config observing activations with ``name``
    (``histogram``: as shipped; ``minmax``)."""
    import litert_torch.quantize.pt2e_quantizer as quantizer
    from torchao.quantization.pt2e.observer import MinMaxObserver

    def forget() -> None:  # the config is built once and cached (functools.lru_cache)
        cached = getattr(quantizer.get_symmetric_quantization_config, "cache_clear", None)
        if cached is not None:
            cached()

    shipped = quantizer.HistogramObserver
    if name == "minmax":
        quantizer.HistogramObserver = MinMaxObserver
    forget()
    try:
        yield
    finally:
        quantizer.HistogramObserver = shipped
        forget()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="lsnet_t")
    ap.add_argument("--families", nargs="+", default=["random", "random-outliers"],
                    choices=["random", "random-outliers"])
    args = ap.parse_args(argv)
    print("| variant | weights | activation observer | mean cos | min cos | top-1 agree | "
          "export s |\n|---|---|---|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.families:
            for observer in ("histogram", "minmax"):
                start = time.perf_counter()
                with activation_observer(observer):
                    [art] = export(args.variant, "tflite", weights=family, precision="int8",
                                   min_cosine=0.0, output_dir=Path(tmp) / observer, force=True)
                v = art.validation
                print(f"| {args.variant} | {family} | {observer} | {v['mean_cosine']:.4f} | "
                      f"{v['min_cosine']:.4f} | {v['top1_agreement']:.0%} | "
                      f"{time.perf_counter() - start:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
