import sys, onnx, collections
for p in sys.argv[1:]:
    m = onnx.load(p, load_external_data=False)
    c = collections.Counter(n.op_type for n in m.graph.node)
    print(p, dict(sorted(c.items(), key=lambda x: -x[1])))
