#!/usr/bin/env bash
# Issue 13's measurements, resumable (each step resumes or is skipped once its output exists), the target first:
#   pivotal      draw GSM8K train problems of runs/star/sample until 30 have p(0) in [0.2, 0.8]; sequential
#                estimator without, then with pivots confirmed (on the first one's journal), then fixed n = 10 on the
#                same problems
#   variants     GSM-Symbolic variants of GSM8K test 0-49 (5 each; solve programs by the default model, then
#                by the 1.5B); the default model's greedy accuracy on originals vs variants
#   conversation GSM8K test 0-49: solver/critic (self, then the 1.5B as critic) and a 3-agent, 2-round debate;
#                the vote at equal tokens is maj@k over the same problems of runs/verifier/test-k8 (t 0.7, top-p 0.8)
#   problems     100 proposed GSM8K-style problems, solved back 4 times (3 must agree)
#   (DPO, step 2: on the confirmed search's pairs; GSM8K test 0-199 greedy)
#
#     nohup bash benchmarks/datagen_loop.sh >> runs/datagen/loop.log 2>&1 &
#
# Needs runs/star/sample and runs/star/test-base (benchmarks/star_loop.sh). Many hours on a 2-core CPU.
set -euo pipefail
R=${REASONLAB:-reasonlab}
O=${OUT:-runs/datagen}
P="--parallel 16 --no-progress"
mkdir -p "$O"
# star_loop's samples and base test run, and every output here that no adapter stands behind, are kept in git
. "$(dirname "$0")/kept.sh"
restore runs/star/sample
restore runs/star/test-base
restore runs/verifier/test-k8   # the vote the conversations are set beside
restore_all "$O"
step() { echo "== $(date -u +%H:%M:%S) $*"; }

# one writer's variants: NAME, then datagen variants' own flags (the model that writes each problem's solve)
variants_step() {
  local name=$1; shift
  [ -s "$O/$name.jsonl" ] || $R datagen variants -d gsm8k -n 50 --per-problem 5 --parallel 8 --no-progress "$@" \
      -o "$O/$name.jsonl"
  keep "$O/$name.jsonl"
  # acceptance and rejections by reason (the default model's first variants were kept before their stats were)
  [ ! -e "$O/$name.jsonl.stats.json" ] || keep "$O/$name.jsonl.stats.json"
  keep "$O/$name.originals.jsonl"
  $R eval -d "$O/$name.originals.jsonl" $P --out "$O/$name-originals"
  keep "$O/$name-originals"
  $R eval -d "$O/$name.jsonl" $P --out "$O/$name-eval"
  keep "$O/$name-eval"
}

# the pivotal searches first: they are the longest, and the comparison the issue sets a target on
step "1. pivotal tokens: sequential, then fixed n = 10 on the same problems"
$R datagen pivotal runs/star/sample -o "$O/pivotal-seq-unconfirmed" -n 30 --no-confirm $P
keep "$O/pivotal-seq-unconfirmed"
# confirmed pivots (the default), on the unconfirmed search's journal: only the confirmations are drawn anew
if [ ! -s "$O/pivotal-seq/estimates.jsonl" ]; then
  mkdir -p "$O/pivotal-seq"
  cp "$O/pivotal-seq-unconfirmed"/{roots,estimates,calls}.jsonl "$O/pivotal-seq/"
fi
$R datagen pivotal runs/star/sample -o "$O/pivotal-seq" -n 30 $P
keep "$O/pivotal-seq"
# DPO first: its adapter is not kept (a session that ends mid-training starts it again), while the fixed search
# below resumes from its journal on any machine. The evaluation's record is kept, so a later session skips both
step "2. DPO on the confirmed search's pairs; GSM8K test 0-199 greedy"
if [ ! -s "$O/test-pivotal/summary.json" ]; then
  $R train dpo -c recipes/train/dpo-pivotal.yaml --data "$O/pivotal-seq/dpo.jsonl" --out "$O/train-pivotal"
  keep "$O/train-pivotal"   # its record (summary, log history, curves), not the adapter
  $R eval -d gsm8k -n 200 $P --lora "$O/train-pivotal" --out "$O/test-pivotal"
  keep "$O/test-pivotal"
fi
$R compare runs/star/test-base "$O/test-pivotal"
# fixed n = 10 takes the sequential search's continuations as its own (draws from the same prefixes at the same
# settings), drawing only the rest; they count in its cost in full, its wall time is not comparable
$R datagen pivotal runs/star/sample -o "$O/pivotal-fixed" --estimator fixed --samples 10 \
    --problems-from "$O/pivotal-seq-unconfirmed" --draws-from "$O/pivotal-seq" $P
keep "$O/pivotal-fixed"
step "3. variants of GSM8K test 0-49"
variants_step variants
# the 0.5B writes an accepted program for 3 of 50 problems (6 %): too few to compare accuracy on. The 1.5B writes
# the programs here; the default model still answers originals and variants
$R models pull qwen2.5-coder-1.5b
variants_step variants-1.5b -m qwen2.5-coder-1.5b

step "4. conversations on GSM8K test 0-49"
C="-d gsm8k -n 50 -s conversation $P"
$R eval $C -O rounds=2 --out "$O/critic-self"
keep "$O/critic-self"
$R models pull qwen2.5-coder-1.5b
$R eval $C -O rounds=2 -O critic.model=qwen2.5-coder-1.5b -O critic.engine.n_parallel=16 --out "$O/critic-1.5b"
keep "$O/critic-1.5b"
$R eval $C -t 0.7 --top-p 0.8 --seed 0 -O mode=debate -O agents=3 -O rounds=2 --out "$O/debate-3x2"
keep "$O/debate-3x2"

step "5. 100 proposed problems, solved back"
[ -s "$O/problems.jsonl" ] || $R datagen problems -n 100 --style gsm8k --k 4 --m 3 --parallel 8 --no-progress \
    -o "$O/problems.jsonl"
keep "$O/problems.jsonl"
keep "$O/problems.jsonl.stats.json"
keep "$O/problems.jsonl.rows.jsonl"   # every proposal's outcome, the rejected ones' text too (and a stopped run's resume)

"$PY" benchmarks/datagen_report.py --dir "$O"
step "done"
