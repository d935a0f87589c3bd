#!/bin/bash
cd /tmp/libcmp
run(){ m=$1; lab=$2; shift 2; timeout 600 /tmp/venv_aimet/bin/python scripts/aimet_quant.py $m $lab "$@" > out/log_${m}_$lab.txt 2>&1 || { echo FAIL $m $lab; grep -B2 -A2 "Error" out/log_${m}_$lab.txt | tail -6; return; }; grep "^SIM\|took" out/log_${m}_$lab.txt; /tmp/venv_ort/bin/python scripts/evalq.py $m out/q/$m/$lab.onnx $lab --no-time; }
run lsnet_t_random-outliers aimet_seqmse_mm --seqmse 20
run lsnet_t_random aimet_seqmse_mm --seqmse 20
run lsnet_t_random-outliers aimet_adaround500_tfe --scheme tf_enhanced --adaround 500
