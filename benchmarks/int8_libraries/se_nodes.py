"""Print names of squeeze-excite nodes (ReduceMean -> Conv -> Relu -> Conv -> Sigmoid -> Mul) in fp32/pre.onnx."""
import sys, onnx
m = onnx.load(sys.argv[1], load_external_data=False)
prod = {o: n for n in m.graph.node for o in n.output}
cons = {}
for n in m.graph.node:
    for i in n.input: cons.setdefault(i, []).append(n)
out = []
for n in m.graph.node:
    if n.op_type == "ReduceMean" and all(c.op_type == "Conv" for c in cons.get(n.output[0], [])) and cons.get(n.output[0]):
        c1 = cons[n.output[0]][0]; r = cons[c1.output[0]][0]; c2 = cons[r.output[0]][0]; s = cons[c2.output[0]][0]
        if (r.op_type, c2.op_type, s.op_type) == ("Relu", "Conv", "Sigmoid"):
            out += [n.name, c1.name, r.name, c2.name, s.name] + [x.name for x in cons[s.output[0]] if x.op_type == "Mul"]
print(" ".join(out))
