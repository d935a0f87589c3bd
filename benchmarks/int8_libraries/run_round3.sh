#!/bin/bash
cd /tmp/libcmp
m=lsnet_t_random-outliers; d=out/nosplit/$m
timeout 480 /tmp/venv_aimet/bin/python scripts/aimet_quant.py $d aimet_seqmse_mm_nosplit --seqmse 20 > out/log_${m}_aimet_seqmse_mm_nosplit.txt 2>&1 && { grep "^SIM\|took" out/log_${m}_aimet_seqmse_mm_nosplit.txt; /tmp/venv_ort/bin/python scripts/evalq.py $m out/q/$m/aimet_seqmse_mm_nosplit.onnx aimet_seqmse_mm_nosplit --no-time; } || { echo FAIL seqmse; grep "Error" out/log_${m}_aimet_seqmse_mm_nosplit.txt | tail -3; }
timeout 480 /tmp/venv_nncf/bin/python scripts/nncf_quant.py $d nncf_tr_hist_fullbc_nosplit --transformer --act-range histogram --no-fbc > out/log_${m}_nncf_tr_hist_fullbc_nosplit.txt 2>&1 && /tmp/venv_ort/bin/python scripts/evalq.py $m out/q/$m/nncf_tr_hist_fullbc_nosplit.onnx nncf_tr_hist_fullbc_nosplit --no-time || { echo FAIL fullbc; grep "Error" out/log_${m}_nncf_tr_hist_fullbc_nosplit.txt | tail -3; }
for m in lsnet_t_random-outliers lsnet_t_random; do
 for cfg in "ort_convgemm_movavg --op-types Conv Gemm --extra CalibMovingAverage=true" "ort_convgemm_pct99.99 --op-types Conv Gemm --method percentile --percentile 99.99"; do
  set -- $cfg; lab=$1; shift
  /tmp/venv_ort/bin/python scripts/ort_quant.py $m $lab "$@" > out/log_${m}_$lab.txt 2>&1 && /tmp/venv_ort/bin/python scripts/evalq.py $m out/q/$m/$lab.onnx $lab --no-time || echo FAIL $lab
 done
done
