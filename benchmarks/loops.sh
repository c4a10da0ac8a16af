#!/usr/bin/env bash
# Every long measurement, in issue order, each resumable: run it again after any stop and it goes on where it was.
#   training loop (issue 11) -> verifiers (issue 12) -> data generation (issue 13) -> hierarchical CoT (issue 14)
#
#     REASONLAB=$PWD/.venv/bin/reasonlab nohup bash benchmarks/loops.sh >> runs/loops.log 2>&1 &
#
# Pause it while something else needs the CPU (llama.cpp computations slow each other ~5x on 2 cores):
#     pkill -STOP -f 'reasonlab (eval|train|score|datagen)'   ...   pkill -CONT -f 'reasonlab (eval|train|score|datagen)'
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p runs/star runs/verifier runs/datagen runs/hcot
bash benchmarks/star_loop.sh >> runs/star/loop.log 2>&1
bash benchmarks/verifier_loop.sh >> runs/verifier/loop.log 2>&1
bash benchmarks/datagen_loop.sh >> runs/datagen/loop.log 2>&1
bash benchmarks/hcot_loop.sh >> runs/hcot/loop.log 2>&1
