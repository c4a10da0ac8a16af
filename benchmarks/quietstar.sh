#!/usr/bin/env bash
# Issue 16's measurements, resumable (a finished cell is skipped, a killed one resumes from its checkpoint):
#   (a) GRU: base LM width 8/32/64 x use_reasoner on/off x seeds 7,8,9
#   (b) transformer: max_reasoning_len 0/1/5/10 x seeds 7,8,9 (plus use_reasoner=false, the plain NLL baseline)
# then the tables (val bits/char, mean ± std over seeds) and curves.
#
#     JOBS=2 nohup nice -n 19 bash benchmarks/quietstar.sh >> runs/quietstar/loop.log 2>&1 &
#
# JOBS cells run side by side (each single-threaded; results do not depend on it): 2 on this 2-core machine.
set -euo pipefail
R=${REASONLAB:-reasonlab}
O=${OUT:-runs/quietstar}
J="--jobs ${JOBS:-1}"
mkdir -p "$O"
$R experiment sweep quietstar -c recipes/experiments/quietstar-gru.yaml $J \
  base_lm_hidden_dim=8,32,64 use_reasoner=true,false seed=7,8,9 --out "$O/gru"
$R experiment sweep quietstar -c recipes/experiments/quietstar-transformer.yaml $J \
  max_reasoning_len=0,1,5,10 seed=7,8,9 --out "$O/transformer"
$R experiment sweep quietstar -c recipes/experiments/quietstar-transformer.yaml $J \
  use_reasoner=false seed=7,8,9 --out "$O/transformer-nll"
