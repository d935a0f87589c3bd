"""Evaluate a (quantized) ONNX model vs PyTorch reference logits.
usage: evalq.py MODEL_DIR ONNX_PATH LABEL [--no-time] [--runs N]
Appends a JSON line to /tmp/libcmp/out/results.jsonl"""
import sys, json, time, argparse, numpy as np, onnxruntime as ort
ap = argparse.ArgumentParser()
ap.add_argument("model_dir"); ap.add_argument("onnx"); ap.add_argument("label")
ap.add_argument("--no-time", action="store_true"); ap.add_argument("--runs", type=int, default=30)
ap.add_argument("--out", default="/tmp/libcmp/out/results.jsonl")
a = ap.parse_args()
val = np.load("/tmp/libcmp/val.npy"); ref = np.load(f"{a.model_dir}/reference_logits.npy").astype(np.float64)
so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.inter_op_num_threads = 1
s = ort.InferenceSession(a.onnx, so, providers=["CPUExecutionProvider"])
iname = s.get_inputs()[0].name
outs = np.stack([s.run(None, {iname: val[i:i+1]})[0][0] for i in range(len(val))]).astype(np.float64)
cos = (outs*ref).sum(1)/np.linalg.norm(outs,axis=1)/np.linalg.norm(ref,axis=1)
top1 = float((outs.argmax(1)==ref.argmax(1)).mean())
ms = None
if not a.no_time:
    x = val[:1]
    for _ in range(5): s.run(None, {iname: x})
    ts = []
    for _ in range(a.runs):
        t = time.perf_counter(); s.run(None, {iname: x}); ts.append((time.perf_counter()-t)*1e3)
    ms = float(np.median(ts))
r = dict(label=a.label, model=a.model_dir.rstrip("/").split("/")[-1], onnx=a.onnx, mean_cos=float(cos.mean()),
         min_cos=float(cos.min()), top1=top1, ms=ms, ort=ort.__version__)
print(json.dumps(r)); open(a.out, "a").write(json.dumps(r)+"\n")
