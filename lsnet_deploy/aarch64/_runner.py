"""Runs one artifact on a list of inputs, in the emulated aarch64 Python (not on the host).

Self-contained on purpose: the arm64 interpreter has numpy and the runtime wheels
(``ai_edge_litert``, ``onnxruntime``) but neither lsnet_deploy nor torch, so this file imports
nothing of the package. The host copies it next to the artifact and the inputs and runs::

    python3 _runner.py tflite|onnx MODEL INPUTS.npz OUTPUTS.npz THREADS

``INPUTS.npz`` holds ``x0``, ``x1``, ... (one batch each, laid out as the artifact takes it);
``OUTPUTS.npz`` gets ``y0``, ``y1``, ... (the first output of each run, float32, dequantized
when the artifact returns integers) and ``info`` (a JSON string: runtime and versions). The
TFLite path mirrors the host's validation runner: the LiteRT interpreter with its default
XNNPACK delegate, float inputs quantized with the input's (scale, zero point).
"""

from __future__ import annotations

import json
import platform
import sys


def _quantize(x, dtype, quantization):  # type: ignore[no-untyped-def]
    """``x`` in the interpreter input's dtype (float -> int with its scale and zero point).

    The same rule as ``exporters.tflite.quantize_input``: this script runs in the arm64 Python,
    which has no lsnet_deploy; ``tests/test_aarch64.py`` checks both give the same outputs."""
    import numpy as np

    dtype = np.dtype(dtype)
    if x.dtype == dtype:
        return x
    if dtype.kind in "iu" and x.dtype.kind == "f":
        scale, zp = quantization
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale) + zp, info.min, info.max).astype(dtype)
    return x.astype(dtype)


def _dequantize(y, quantization):  # type: ignore[no-untyped-def]
    """Interpreter output -> float32 (dequantized when integer)."""
    import numpy as np

    if y.dtype.kind in "iu":
        scale, zp = quantization
        return (y.astype(np.float32) - zp) * scale
    return y.astype(np.float32)


def run_tflite(model: str, inputs: list, threads: int | None) -> tuple[list, dict]:  # type: ignore[type-arg]
    """The LiteRT interpreter (default XNNPACK delegate) on each input."""
    import ai_edge_litert
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=model, num_threads=threads)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    outp = interp.get_output_details()[0]
    outs = []
    for x in inputs:
        interp.set_tensor(inp["index"], _quantize(x, inp["dtype"], inp["quantization"]))
        interp.invoke()
        outs.append(_dequantize(interp.get_tensor(outp["index"]), outp["quantization"]))
    version = getattr(ai_edge_litert, "__version__", None) or _dist_version("ai-edge-litert")
    return outs, {"runtime": "ai-edge-litert", "runtime_version": version}


def run_onnx(model: str, inputs: list, threads: int | None) -> tuple[list, dict]:  # type: ignore[type-arg]
    """ONNX Runtime (CPU execution provider) on each input."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    outs = [sess.run(None, {name: x})[0].astype("float32") for x in inputs]
    return outs, {"runtime": "onnxruntime", "runtime_version": ort.__version__}


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def main(argv: list[str]) -> int:
    """Run the artifact on every ``x<k>`` of the inputs and write the outputs (see above)."""
    import numpy as np

    fmt, model, inputs_path, outputs_path, threads = argv
    with np.load(inputs_path) as data:
        inputs = [data[f"x{k}"] for k in range(len(data.files))]
    run = {"tflite": run_tflite, "onnx": run_onnx}[fmt]
    outs, info = run(model, inputs, int(threads) or None)
    info.update(machine=platform.machine(), python=platform.python_version(),
                numpy=np.__version__)
    np.savez(outputs_path, info=np.array(json.dumps(info)),
             **{f"y{k}": y for k, y in enumerate(outs)})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
