"""Replace every Split (with a constant 'split' sizes input) by Slice nodes (numerically identical). Workaround for
'Duplicate definition of name (split_with_sizes_split_0)' in NNCF BiasCorrection / AIMET SeqMSE subgraph extraction."""
import sys, onnx, numpy as np
from onnx import helper, numpy_helper
m = onnx.load(sys.argv[1]); g = m.graph
inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
consts = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in g.node if n.op_type == "Constant"}
new = []; k = 0
for n in g.node:
    if n.op_type != "Split": new.append(n); continue
    axis = next((a.i for a in n.attribute if a.name == "axis"), 0)
    sizes = inits.get(n.input[1], consts.get(n.input[1])) if len(n.input) > 1 else None
    assert sizes is not None, n.name
    start = 0
    for out, s in zip(n.output, sizes):
        names = [f"s2s_{k}_{x}" for x in "sea"]; k += 1
        g.initializer.extend([numpy_helper.from_array(np.array([start], np.int64), names[0]),
                              numpy_helper.from_array(np.array([start + int(s)], np.int64), names[1]),
                              numpy_helper.from_array(np.array([axis], np.int64), names[2])])
        new.append(helper.make_node("Slice", [n.input[0]] + names, [out], name=f"{n.name}_slice{k}")); start += int(s)
del g.node[:]; g.node.extend(new)
onnx.checker.check_model(m); onnx.save(m, sys.argv[2]); print("ok", sys.argv[2])
