"""Count op types in ORT's optimized graph (what actually runs) for given models."""
import sys, collections, onnx, onnxruntime as ort, tempfile, os
for p in sys.argv[1:]:
    so = ort.SessionOptions(); so.intra_op_num_threads = 1
    f = tempfile.mktemp(suffix=".onnx"); so.optimized_model_filepath = f
    ort.InferenceSession(p, so, providers=["CPUExecutionProvider"])
    m = onnx.load(f, load_external_data=False); os.remove(f)
    c = collections.Counter(n.op_type for n in m.graph.node)
    print(p, {k: v for k, v in c.most_common() if k in ("QLinearConv", "Conv", "FusedConv", "QuantizeLinear", "DequantizeLinear", "QLinearAdd", "QLinearMul", "MatMulInteger", "QGemm", "QLinearMatMul", "Gemm", "MatMul")})
