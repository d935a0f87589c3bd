#!/bin/bash
# final NNCF configs on all 4 models (+ timing)
cd /tmp/libcmp
run(){ m=$1; lab=$2; shift 2; [ -f out/q/$m/$lab.onnx ] || /tmp/venv_nncf/bin/python scripts/nncf_quant.py $m $lab "$@" > out/log_${m}_$lab.txt 2>&1 || { echo FAIL $m $lab; return; }; /tmp/venv_ort/bin/python scripts/evalq.py $m out/q/$m/$lab.onnx $lab --runs 20; }
for m in lsnet_t_random lsnet_t_random-outliers lsnet_b_random lsnet_b_random-outliers; do
  run $m nncf_default
  run $m nncf_transformer --transformer
  run $m nncf_tr_hist --transformer --act-range histogram
done
