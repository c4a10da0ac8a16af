#!/usr/bin/env bash
# Issue 14's measurement, resumable: hCoT data from GSM8K train rationales, prune-aware LoRA SFT of the default
# model, the markers written into its GGUF, then greedy evaluation of the untrained model (plain), the trained
# model decoding plainly, and the trained model under hcot pruning, on GSM8K test 100-199 and MATH-500 levels 1-2;
# benchmarks/hcot.py prints the table (mode, tokens, wall time, generated, retained, peak live, accuracy).
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
"$PY" benchmarks/hcot.py --dir "$O"
step "5. pruning by continuation vs in place (kv_shift), the same cuts on the default model"
[ -s "$O/prune_speed.txt" ] || "$PY" benchmarks/hcot_prune.py > "$O/prune_speed.txt"
cat "$O/prune_speed.txt"
step "done"
