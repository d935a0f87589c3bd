#!/bin/bash
cd /tmp/libcmp
for m in lsnet_b_random lsnet_b_random-outliers; do
  /tmp/venv_ort/bin/python scripts/ort_quant.py $m ort_movavg --extra CalibMovingAverage=true > out/log_${m}_ort_movavg.txt 2>&1 && /tmp/venv_ort/bin/python scripts/evalq.py $m out/q/$m/ort_movavg.onnx ort_movavg --no-time || echo FAIL
  timeout 300 /tmp/venv_aimet/bin/python scripts/aimet_quant.py $m aimet_tfe --scheme tf_enhanced > out/log_${m}_aimet_tfe.txt 2>&1 && { grep "^SIM" out/log_${m}_aimet_tfe.txt; /tmp/venv_ort/bin/python scripts/evalq.py $m out/q/$m/aimet_tfe.onnx aimet_tfe --no-time; } || echo FAIL aimet $m
done
