#!/bin/bash
cd /tmp/libcmp
run(){ m=$1; lab=$2; shift 2; /tmp/venv_ort/bin/python scripts/ort_quant.py $m $lab "$@" > out/log_${m}_$lab.txt 2>&1 || { echo FAIL $m $lab; grep -i "error" out/log_${m}_$lab.txt | tail -3; return; }; /tmp/venv_ort/bin/python scripts/evalq.py $m out/q/$m/$lab.onnx $lab --no-time; }
for m in lsnet_t_random-outliers lsnet_t_random; do
  run $m ort_pct99.99 --method percentile --percentile 99.99
  run $m ort_pct99.999 --method percentile --percentile 99.999
  run $m ort_entropy --method entropy
  run $m ort_movavg --extra CalibMovingAverage=true
  run $m ort_actsym --extra ActivationSymmetric=true
  run $m ort_keepact --extra QDQKeepRemovableActivations=true
  run $m ort_distribution --method distribution
done
