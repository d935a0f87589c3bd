"""ORT quantize_static baseline + variants.
usage: ort_quant.py MODEL_DIR LABEL [--method minmax|entropy|percentile|distribution] [--percentile P]
       [--extra KEY=VAL ...] [--input pre|fp32]"""
import argparse, json, os, numpy as np
from onnxruntime.quantization import (quantize_static, QuantFormat, QuantType, CalibrationMethod, CalibrationDataReader)
ap = argparse.ArgumentParser()
ap.add_argument("model_dir"); ap.add_argument("label")
ap.add_argument("--method", default="minmax"); ap.add_argument("--percentile", type=float, default=None)
ap.add_argument("--extra", nargs="*", default=[]); ap.add_argument("--op-types", nargs="*", default=None); ap.add_argument("--exclude", nargs="*", default=None); ap.add_argument("--input", default="pre")
a = ap.parse_args()
calib = np.load("/tmp/libcmp/calib.npy")
class R(CalibrationDataReader):
    def __init__(self): self.it = iter([{"image": calib[i:i+1]} for i in range(len(calib))])
    def get_next(self): return next(self.it, None)
extra = {}
for kv in a.extra:
    k, v = kv.split("="); extra[k] = json.loads(v)
if a.percentile is not None: extra["CalibPercentile"] = a.percentile
meth = dict(minmax=CalibrationMethod.MinMax, entropy=CalibrationMethod.Entropy,
            percentile=CalibrationMethod.Percentile, distribution=CalibrationMethod.Distribution)[a.method]
name = os.path.basename(a.model_dir.rstrip("/"))
out = f"/tmp/libcmp/out/q/{name}/{a.label}.onnx"; os.makedirs(os.path.dirname(out), exist_ok=True)
quantize_static(f"{a.model_dir}/{a.input}.onnx", out, R(), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=meth,
                extra_options=extra, op_types_to_quantize=a.op_types, nodes_to_exclude=a.exclude)
print(out)
