"""AIMET-ONNX PTQ. usage: aimet_quant.py MODEL_DIR LABEL [--scheme min_max|tf_enhanced] [--cle] [--seqmse N]
  [--adaround ITERS] [--config default|per_channel] [--act uint8|int8]"""
import argparse, os, time, copy, numpy as np, onnx
from aimet_onnx.quantsim import QuantizationSimModel
import aimet_onnx
ap = argparse.ArgumentParser()
ap.add_argument("model_dir"); ap.add_argument("label")
ap.add_argument("--scheme", default="min_max"); ap.add_argument("--cle", action="store_true")
ap.add_argument("--seqmse", type=int, default=0); ap.add_argument("--adaround", type=int, default=0)
ap.add_argument("--config", default="per_channel"); ap.add_argument("--input", default="fp32")
a = ap.parse_args()
cfgdir = os.path.join(os.path.dirname(aimet_onnx.__file__), "common/quantsim_config")
cfg = {"default": None, "per_channel": f"{cfgdir}/default_config_per_channel.json"}[a.config]
calib = np.load("/tmp/libcmp/calib.npy"); inputs = [{"image": calib[i:i+1]} for i in range(len(calib))]
model = onnx.load(f"{a.model_dir}/{a.input}.onnx")
t = time.time()
if a.cle:
    from aimet_onnx.cross_layer_equalization import equalize_model
    equalize_model(model)
sim = QuantizationSimModel(model, param_type="int8", activation_type="int8", quant_scheme=a.scheme,
                           config_file=cfg, providers=["CPUExecutionProvider"])
if a.seqmse:
    from aimet_onnx.sequential_mse.seq_mse import apply_seq_mse
    apply_seq_mse(sim, inputs, num_candidates=a.seqmse)
if a.adaround:
    from aimet_onnx.adaround.adaround_weight import apply_adaround
    apply_adaround(sim, inputs, num_iterations=a.adaround)
sim.compute_encodings(inputs)
# evaluate the sim session directly too
ref = np.load(f"{a.model_dir}/reference_logits.npy").astype(np.float64); val = np.load("/tmp/libcmp/val.npy")
outs = np.stack([sim.session.run(None, {"image": val[i:i+1]})[0][0] for i in range(len(val))]).astype(np.float64)
cos = (outs*ref).sum(1)/np.linalg.norm(outs,axis=1)/np.linalg.norm(ref,axis=1)
print(f"SIM {a.label}: mean_cos={cos.mean():.4f} min_cos={cos.min():.4f} top1={(outs.argmax(1)==ref.argmax(1)).mean():.3f}")
q = sim.to_onnx_qdq(prequantize_constants=True)
name = os.path.basename(a.model_dir.rstrip("/"))
out = f"/tmp/libcmp/out/q/{name}/{a.label}.onnx"; os.makedirs(os.path.dirname(out), exist_ok=True)
onnx.save(q, out)
print(out, f"took {time.time()-t:.1f}s")
