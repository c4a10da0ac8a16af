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
step "3. the markers in the GGUF"
[ -s "$O/qwen-hcot.gguf" ] || $R train add-tokens --out "$O/qwen-hcot.gguf"
for set in gsm8k math; do
  if [ $set = gsm8k ]; then D="-d gsm8k --offset 100 -n 100"; else D="-d math500 --where level=1,2 -n 100"; fi
  step "4. $set: untrained, plain"
  $R eval $D $P --max-tokens 1024 --out "$O/$set-base"
  keep "$O/$set-base"
  step "   $set: trained, plain decoding"
  $R eval $D $P --max-tokens 1024 -m "$O/qwen-hcot.gguf" --lora "$O/train" --out "$O/$set-trained-plain"
  step "   $set: trained, hcot pruning"
  $R eval $D $P --max-tokens 1024 -m "$O/qwen-hcot.gguf" --lora "$O/train" -s hcot --out "$O/$set-trained-hcot"
done
# the notebook's own comparison: the same live-context budget (prompt + what is kept), without and with pruning —
# does forgetting finished thoughts let a solution finish inside it? And its minimum-tokens knob
D="-d gsm8k --offset 100 -n 100"
step "4b. gsm8k: trained, live context <= 384 tokens, nothing pruned / pruned; min tokens 256"
$R eval $D $P --max-tokens 1024 -m "$O/qwen-hcot.gguf" --lora "$O/train" -s hcot -O prune=none -O max_live=384 \
    --out "$O/gsm8k-trained-none-live384"
$R eval $D $P --max-tokens 1024 -m "$O/qwen-hcot.gguf" --lora "$O/train" -s hcot -O max_live=384 \
    --out "$O/gsm8k-trained-hcot-live384"
$R eval $D $P --max-tokens 1024 -m "$O/qwen-hcot.gguf" --lora "$O/train" -s hcot -O min_tokens=256 \
    --out "$O/gsm8k-trained-hcot-min256"
"$PY" benchmarks/hcot.py --dir "$O"
step "5. pruning by continuation vs in place (kv_shift), the same cuts on the default model"
[ -s "$O/prune_speed.txt" ] || "$PY" benchmarks/hcot_prune.py > "$O/prune_speed.txt"
cat "$O/prune_speed.txt"
step "done"
