#!/usr/bin/env bash
# Issue 14's measurement, resumable: hCoT data from GSM8K train rationales, prune-aware LoRA SFT of the default
# model, the markers written into its GGUF, then greedy evaluation of the untrained model (plain), the trained
# model decoding plainly, and the trained model under hcot pruning, on GSM8K test 100-199 and MATH-500 levels 1-2;
# then, on GSM8K, the notebook's comparison at one live-context budget (nothing pruned vs pruned) and min tokens 256;
# benchmarks/hcot.py prints the table (mode, min/max tokens, live cap, wall time, generated, retained, peak live,
# accuracy, runaway).
#
#     nohup bash benchmarks/hcot_loop.sh >> runs/hcot/loop.log 2>&1 &
#
# N (rationales, default 300) sets the training size: each example becomes ~3-4 stage rows, ~1.5 h of training here.
set -euo pipefail
R=${REASONLAB:-reasonlab}
O=${OUT:-runs/hcot}
N=${N:-300}
P="--parallel 16 --no-progress"
mkdir -p "$O"
. "$(dirname "$0")/kept.sh"   # the untrained model's evaluations are kept in git (the adapter is not)
restore_all "$O"
step() { echo "== $(date -u +%H:%M:%S) $*"; }

step "1. hcot data from $N GSM8K train rationales"
[ -s "$O/data.jsonl" ] || $R datagen hcot -d gsm8k-train -n "$N" -o "$O/data.jsonl"
step "2. prune-aware LoRA SFT"
$R train sft -c recipes/train/hcot.yaml --data "$O/data.jsonl" --out "$O/train"
step "3. the markers in the GGUF, with the rows the run trained for them"
[ -s "$O/qwen-hcot.gguf" ] || $R train add-tokens --rows "$O/train" --out "$O/qwen-hcot.gguf"
# the trained model's two modes first (the comparison the target is about), then the untrained model; the table is
# printed after every run, so a loop stopped part way still shows what it has
table() { "$PY" benchmarks/hcot.py --dir "$O"; }
G="-d gsm8k --offset 100 -n 100"
M="-d math500 --where level=1,2 -n 100"
T="--max-tokens 1024 -m $O/qwen-hcot.gguf --lora $O/train"
run() {  # run <name> <eval args...>: one evaluation (resumable), kept in git, then the table so far
  local name=$1; shift
  step "4. $name"
  $R eval "$@" $P --out "$O/$name"
  keep "$O/$name"
  table
}
run gsm8k-trained-hcot $G $T -s hcot
run gsm8k-trained-plain $G $T
run gsm8k-base $G --max-tokens 1024
# the notebook's own comparison: the same live-context budget (prompt + what is kept), without and with pruning —
# does forgetting finished thoughts let a solution finish inside it?
run gsm8k-trained-none-live384 $G $T -s hcot -O prune=none -O max_live=384
run gsm8k-trained-hcot-live384 $G $T -s hcot -O max_live=384
run math-trained-hcot $M $T -s hcot
run math-trained-plain $M $T
run math-base $M --max-tokens 1024
# and its minimum-tokens knob
run gsm8k-trained-hcot-min256 $G $T -s hcot -O min_tokens=256
step "5. pruning by continuation vs in place (kv_shift), the same cuts on the default model"
[ -s "$O/prune_speed.txt" ] || "$PY" benchmarks/hcot_prune.py > "$O/prune_speed.txt"
cat "$O/prune_speed.txt"
step "done"
