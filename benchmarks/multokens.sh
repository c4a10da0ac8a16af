#!/usr/bin/env bash
# Issue 15's study, resumable: both conditions x 4 seeds, the same corpus, tokenizer and budget; then the table
# (val loss mean ± std over seeds; probes, GSM8K after SFT, mul-token usage) and the loss curves.
#
#     nohup nice -n 19 bash benchmarks/multokens.sh >> runs/multokens/loop.log 2>&1 &
set -euo pipefail
R=${REASONLAB:-reasonlab}
O=${OUT:-runs/multokens}
mkdir -p "$O"
$R experiment sweep multokens -c recipes/experiments/multokens.yaml condition=baseline,multokens seed=0,1,2,3 --out "$O/study"
