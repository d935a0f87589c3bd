#!/bin/bash
# timing pass: 1 thread, median of 30 (T) / 20 (B) runs, fp32 re-timed right before the quantized models of each model
cd /tmp/libcmp
for m in lsnet_t_random lsnet_t_random-outliers lsnet_b_random lsnet_b_random-outliers; do
  case $m in lsnet_t*) n=30;; *) n=20;; esac
  for lab in fp32 ort_base ort_movavg ort_convgemm_movavg nncf_default nncf_tr_hist aimet_mm aimet_tfe; do
    f=out/q/$m/$lab.onnx; [ $lab = fp32 ] && f=$m/fp32.onnx
    [ -f $f ] && /tmp/venv_ort/bin/python scripts/evalq.py $m $f $lab --runs $n
  done
done
