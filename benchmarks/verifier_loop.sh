#!/usr/bin/env bash
# Issue 12's measurement, end to end and resumable: a generative verifier trained on train-split verdicts, then
# judged on GSM8K test problems it never saw — within-problem AUROC, and maj@8 vs verifier-weighted vote vs
# best-of-8 vs pass@8 on the same 8 samples per problem — beside the zero-shot judge (the untrained model asked
# the same question). Sampling happens once; each verifier scores the stored traces (`reasonlab score`).
#
#     nohup bash benchmarks/verifier_loop.sh > runs/verifier/loop.log 2>&1 &     # resumable: run it again
#
# Needs the train-split samples of benchmarks/star_loop.sh (runs/star/sample). Hours on a 2-core CPU: ~8 h in all
# on an AMD EPYC (step 7, more data, ~1.6 h of it).
set -euo pipefail
R=${REASONLAB:-reasonlab}
O=${OUT:-runs/verifier}
SAMPLES=${SAMPLES:-runs/star/sample}
mkdir -p "$O"
. "$(dirname "$0")/kept.sh"   # star_loop's samples, the 8 test samples per problem and the judge's scores are kept in git
restore "$SAMPLES"
restore_all "$O"
step() { echo "== $(date -u +%H:%M:%S) $*"; }

step "1. verifier data from the train-split samples (balanced per problem, test overlaps dropped)"
[ -s "$O/verifier.jsonl" ] || $R datagen verifier "$SAMPLES" -o "$O/verifier.jsonl"

step "2. 8 samples per GSM8K test problem 0-199 (the traces every verifier is judged on)"
$R eval -d gsm8k -n 200 -s vote -k 8 -t 0.7 --top-p 0.8 --seed 0 --parallel 16 --no-progress --out "$O/test-k8"
keep "$O/test-k8"

# training is not kept in git (its adapter is ~35 MB) but checkpoints every 10 steps, so a stopped loop resumes it
# on the same machine; it comes before the judge, whose scores are kept in git and can be made anywhere later
step "3. train the verifier (LoRA SFT on Yes/No), score the test samples with it"
$R train sft -c recipes/train/verifier.yaml --data "$O/verifier.jsonl" --out "$O/train"
$R score "$O/test-k8" --scorer-lora "$O/train" --out "$O/test-k8-genrm" --no-progress

step "4. score them with the zero-shot judge (the untrained model asked the same question)"
$R score "$O/test-k8" --scorer self --out "$O/test-k8-judge" --no-progress
keep "$O/test-k8-judge"   # no adapter behind these scores

step "5. the discriminative kind on the same data: right/wrong pairs, a scalar head (TRL RewardTrainer)"
[ -s "$O/reward.jsonl" ] || $R datagen reward "$SAMPLES" -o "$O/reward.jsonl"
$R train reward -c recipes/train/reward.yaml --data "$O/reward.jsonl" --out "$O/train-reward"
$R score "$O/test-k8" --scorer-kind classifier --scorer-lora "$O/train-reward" --out "$O/test-k8-rm" --no-progress

step "6. a larger zero-shot judge: the 1.5B asked the same question about the 0.5B's traces"
$R models pull qwen2.5-coder-1.5b
$R score "$O/test-k8" --scorer qwen2.5-coder-1.5b --out "$O/test-k8-judge-1.5b" --no-progress
keep "$O/test-k8-judge-1.5b"

# the trained verifiers learned from 118 problems' traces: does more data of the same kind close more of the gap?
# Samples kept in git, like the test traces. The keeper (the scalar head: better AUROC per scoring second) is
# trained again with the same recipe on the STaR traces plus these (the generative one is not: ~2 h more here)
step "7. more verifier data: 8 samples per GSM8K train problem 300-399, the scalar head trained on both sets"
$R eval -d gsm8k-train --offset 300 -n 100 -s vote -k 8 -t 0.7 --top-p 0.8 --seed 0 --parallel 16 --no-progress \
    --out "$O/train-k8"
keep "$O/train-k8"
[ -s "$O/reward-more.jsonl" ] || $R datagen reward "$SAMPLES" "$O/train-k8" -o "$O/reward-more.jsonl"
$R train reward -c recipes/train/reward.yaml --data "$O/reward-more.jsonl" --out "$O/train-reward-more"
$R score "$O/test-k8" --scorer-kind classifier --scorer-lora "$O/train-reward-more" --out "$O/test-k8-rm-more" \
    --no-progress
$R summary "$O/test-k8-judge" "$O/test-k8-judge-1.5b" "$O/test-k8-genrm" "$O/test-k8-rm" "$O/test-k8-rm-more"
step "done"
