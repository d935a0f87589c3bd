"""NNCF PTQ on the ONNX backend.
usage: nncf_quant.py MODEL_DIR LABEL [--input fp32|pre] [--preset performance|mixed] [--transformer]
   [--sq-conv A] [--sq-matmul A] [--no-fbc (use full BiasCorrection)] [--no-bc] [--act-range minmax|mean_minmax|...]
   [--subset 21] [--ignore-type Add ...]"""
import argparse, os, time, numpy as np, onnx, nncf
from nncf.quantization.advanced_parameters import (AdvancedQuantizationParameters, AdvancedSmoothQuantParameters,
                                                   AdvancedBiasCorrectionParameters)
from nncf.quantization.range_estimator import RangeEstimatorParametersSet
ap = argparse.ArgumentParser()
ap.add_argument("model_dir"); ap.add_argument("label")
ap.add_argument("--input", default="fp32"); ap.add_argument("--preset", default=None)
ap.add_argument("--transformer", action="store_true")
ap.add_argument("--sq-conv", type=float, default=None); ap.add_argument("--sq-matmul", type=float, default=None)
ap.add_argument("--no-fbc", action="store_true"); ap.add_argument("--no-bc", action="store_true")
ap.add_argument("--bc-all", action="store_true")
ap.add_argument("--act-range", default=None); ap.add_argument("--subset", type=int, default=21)
ap.add_argument("--ignore-type", nargs="*", default=[])
ap.add_argument("--quantize-outputs", action="store_true")
a = ap.parse_args()
calib = np.load("/tmp/libcmp/calib.npy")
model = onnx.load(f"{a.model_dir}/{a.input}.onnx")
ds = nncf.Dataset([calib[i:i+1] for i in range(len(calib))], lambda x: {"image": x})
adv = AdvancedQuantizationParameters()
sq = AdvancedSmoothQuantParameters()
if a.sq_conv is not None: sq.convolution = a.sq_conv
if a.sq_matmul is not None: sq.matmul = a.sq_matmul
adv.smooth_quant_alphas = sq
if a.no_bc: adv.disable_bias_correction = True
if a.bc_all: adv.bias_correction_params = AdvancedBiasCorrectionParameters(apply_for_all_nodes=True)
if a.act_range: adv.activations_range_estimator_params = getattr(RangeEstimatorParametersSet, a.act_range.upper())
if a.quantize_outputs: adv.quantize_outputs = True
kw = {}
if a.preset: kw["preset"] = getattr(nncf.QuantizationPreset, a.preset.upper())
if a.transformer: kw["model_type"] = nncf.ModelType.TRANSFORMER
if a.ignore_type: kw["ignored_scope"] = nncf.IgnoredScope(types=a.ignore_type)
t = time.time()
q = nncf.quantize(model, ds, subset_size=a.subset, fast_bias_correction=not a.no_fbc, advanced_parameters=adv, **kw)
name = os.path.basename(a.model_dir.rstrip("/"))
out = f"/tmp/libcmp/out/q/{name}/{a.label}.onnx"; os.makedirs(os.path.dirname(out), exist_ok=True)
onnx.save(q, out)
print(out, f"quantize took {time.time()-t:.1f}s")
