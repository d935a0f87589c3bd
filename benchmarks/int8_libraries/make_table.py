"""Build a markdown table from out/results.jsonl (last entry per (label, model) wins; ms = min over all timing passes of the per-pass median)."""
import json, collections
rows = {}; ms = {}
for l in open("/tmp/libcmp/out/results.jsonl"):
    r = json.loads(l); k = (r["label"], r["model"]); rows[k] = r
    if r["ms"] is not None: ms[k] = min(ms.get(k, 1e9), r["ms"])
import os
if os.path.exists("/tmp/libcmp/out/timing2.jsonl"):
    for l in open("/tmp/libcmp/out/timing2.jsonl"):
        r = json.loads(l); k = (r["label"], r["model"]); ms[k] = min(ms.get(k, 1e9), r["ms"])
lib = lambda lab: lab.split("_")[0].replace("ort", "ORT").replace("nncf", "NNCF").replace("aimet", "AIMET").replace("fp32", "-")
models = ["lsnet_t_random", "lsnet_t_random-outliers", "lsnet_b_random", "lsnet_b_random-outliers"]
print("| library | config | model | mean cos | min cos | top-1 agree | 1-thr ms | ms fp32 |")
print("|---|---|---|---|---|---|---|---|")
order = sorted(rows, key=lambda k: (models.index(k[1]), k[0] != "fp32", lib(k[0]), -rows[k]["mean_cos"]))
for k in order:
    r = rows[k]; t = ms.get(k); f = ms.get(("fp32", k[1]))
    print(f"| {lib(k[0])} | {k[0]} | {k[1]} | {r['mean_cos']:.4f} | {r['min_cos']:.4f} | {r['top1']:.3f} | {'' if t is None else f'{t:.1f}'} | {'' if f is None else f'{f:.1f}'} |")
