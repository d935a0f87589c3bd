"""For each op type: how many nodes have (all / some / no) activation inputs coming from DequantizeLinear
(weights/initializer-DQ excluded), and how many Conv/MatMul/Gemm have quantized weights."""
import sys, onnx, collections
for p in sys.argv[1:]:
    m = onnx.load(p, load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    prod = {o: n for n in m.graph.node for o in n.output}
    def is_const_dq(n):
        return n.op_type == "DequantizeLinear" and (n.input[0] in inits or (n.input[0] in prod and prod[n.input[0]].op_type == "Constant"))
    stats = collections.defaultdict(lambda: [0, 0, 0])
    wq = collections.Counter()
    for n in m.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear", "Constant"): continue
        act_in = [i for i in n.input if i and i not in inits and not (i in prod and prod[i].op_type == "Constant") and not (i in prod and is_const_dq(prod[i]))]
        wts = [i for i in n.input if i in prod and is_const_dq(prod[i])]
        if wts: wq[n.op_type] += 1
        if not act_in: continue
        q = sum(1 for i in act_in if i in prod and prod[i].op_type == "DequantizeLinear")
        stats[n.op_type][0 if q == len(act_in) else (1 if q else 2)] += 1
    print(p); print("  activation inputs quantized [all, some, none]:", dict(stats)); print("  quantized weights:", dict(wq))
