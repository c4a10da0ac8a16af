#!/usr/bin/env bash
# The training loop end to end on the default model (issue 11's results a, b, c): sample GSM8K train problems,
# turn the verified traces into SFT / DPO / KTO data, train each, pick each method's checkpoint on a held-out
# slice of the train split (never on test), then greedy on GSM8K test 0-199 before and after, paired. GRPO
# trains on the train split with the verifier's reward. Hours on a 2-core CPU.
#
#     nohup bash benchmarks/star_loop.sh > runs/star/loop.log 2>&1 &       # resumable: run it again
#
# Every step resumes where it stopped (eval re-runs only unfinished problems, train restarts from its last
# checkpoint) or is skipped once its output exists, so a killed session loses at most one checkpoint interval.
# METHODS picks the methods and their order (default: all four); the samples are drawn only when a method needs them:
#     METHODS="grpo kto" bash benchmarks/star_loop.sh >> runs/star/loop.log 2>&1
set -euo pipefail
R=${REASONLAB:-reasonlab}
O=${OUT:-runs/star}
P="--parallel 16 --no-progress"
METHODS=${METHODS:-sft dpo kto grpo}
HELD="-d gsm8k-train --offset 7000 -n 100"   # held-out slice for choosing checkpoints: never sampled from
TEST="-d gsm8k -n 200"                       # GSM8K test problems 0-199
mkdir -p "$O"
# the base evaluations and the samples live in git too (benchmarks/kept.sh): a new machine starts from them. Runs
# of a trained adapter are not kept: the adapter is not, and a retrained one is another model to `reasonlab eval`
. "$(dirname "$0")/kept.sh"
restore_all "$O"
step() { echo "== $(date -u +%H:%M:%S) $*"; }

step "1. the base model, greedy: test (every method is compared with it) and the held-out slice"
$R eval $TEST $P --out "$O/test-base"
keep "$O/test-base"
$R eval $HELD $P --out "$O/heldout-base"
keep "$O/heldout-base"

# sample + datasets: only for the methods that learn from the model's own samples
samples() {
  step "2. sample: 300 train problems x 4 traces"
  $R eval -d gsm8k-train -n 300 -s vote -k 4 -t 0.7 --top-p 0.8 --seed 0 $P --out "$O/sample"
  keep "$O/sample"
  step "3. datasets from the samples (contamination guard on)"
  [ -s "$O/sft.jsonl" ] || $R datagen sft "$O/sample" -o "$O/sft.jsonl"
  # one pair (DPO) / one trace per label (KTO) per problem: each method sees every problem once, and trains in about
  # an hour here (all pairs would be ~3x the rows and the hours). KTO's wrong traces outnumber the right ones ~2.2:1
  # and a KTO step here costs ~170 s (8 rows, their KL rows, the reference passes): all 415 rows would be 2.5 h, so
  # the undesirable side is sampled down to the desirable one's size (--balance): 1.5 h
  [ -s "$O/dpo.jsonl" ] || $R datagen dpo "$O/sample" -o "$O/dpo.jsonl" --max-pairs 1
  [ -s "$O/kto.jsonl" ] || $R datagen kto "$O/sample" -o "$O/kto.jsonl" --per-problem 1 --balance
}

# train METHOD: train, evaluate every checkpoint on the held-out slice, the best one on test
train_and_eval() {
  local m=$1 recipe=$2
  step "4. $m: train"
  $R train "$m" -c "recipes/train/$recipe.yaml" --data "$O/$m.jsonl" --out "$O/train-$m"
  # adapter/ holds the last checkpoint's weights: evaluate it only when no checkpoint was kept
  local cks=("$O/train-$m"/checkpoint-*)
  [ -e "${cks[0]}" ] || cks=("$O/train-$m/adapter")
  for ck in "${cks[@]}"; do
    [ -e "$ck/adapter_config.json" ] || continue
    step "   $m: held-out with $(basename "$ck")"
    $R eval $HELD $P --lora "$ck" --out "$O/heldout-$m-$(basename "$ck")"
  done
  local best  # the checkpoint with the best held-out accuracy (ties: the earlier one)
  best=$(python3 - "$O" "$m" <<'PY'
import json, pathlib, re, sys
out, m = pathlib.Path(sys.argv[1]), sys.argv[2]
runs = sorted(out.glob(f"heldout-{m}-*"), key=lambda p: [int(x) for x in re.findall(r"\d+", p.name)] or [1 << 30])
acc = {p: json.loads((p / "summary.json").read_text())["accuracy"] for p in runs}
best = max(runs, key=lambda p: (acc[p], -runs.index(p)))
print(out / f"train-{m}" / best.name.removeprefix(f"heldout-{m}-"))
PY
)
  step "   $m: test with $best"
  $R eval $TEST $P --lora "$best" --out "$O/test-$m"
  $R compare "$O/test-base" "$O/test-$m"
}
grpo() {
  step "5. grpo: 30 steps with the verifier's reward, rollouts in llama.cpp"
  $R train grpo -c recipes/train/grpo-gsm8k.yaml --out "$O/train-grpo"
  $R eval $TEST $P --lora "$O/train-grpo" --out "$O/test-grpo"
  $R compare "$O/test-base" "$O/test-grpo"
}

sampled=
for m in $METHODS; do
  case $m in
    sft|dpo|kto) [ -n "$sampled" ] || { samples; sampled=1; }
                 train_and_eval "$m" "$([ "$m" = sft ] && echo sft-star || echo "$m")" ;;
    grpo) grpo ;;
    *) echo "star_loop.sh: unknown method '$m' in METHODS (expected sft, dpo, kto, grpo)" >&2; exit 2 ;;
  esac
done
step "done"
