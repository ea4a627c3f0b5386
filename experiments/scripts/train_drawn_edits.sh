#!/usr/bin/env bash
# The DiT taught to correct its own drawings (docs/reflection.md, "Session 16"): two
# continuations of the shipped DiT (stage 7's output) with edits of its own train-split drawings,
#   drawn_edits  experiments/dit_drawn_edits_finetune.yaml: 1,000 steps, a third of them edits
#   edits        experiments/dit_edits_finetune.yaml: 3,000 steps, half of them edits
#   edits_seed2  the same with another seed (session 17)
# each scored as the README's tables are (results/latent/NAME/) and in a reflection round with the
# shipped judge (results/reflection/NAME_judge_edit1/). Needs scripts/train_shapeworld_latent.sh's
# runs and experiments/scripts/train_judge.sh's drawn folders. About 35 + 55 + 10 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
source scripts/stages.sh
J=thinkgen/assets/shapeworld_judge
for folder in runs/shapeworld/drawn_reflection runs/shapeworld/drawn_reflection_reasoning; do
  [ -f $folder/rows.jsonl ] || { echo "error: $folder is missing: run experiments/scripts/train_judge.sh first" >&2; exit 1; }
done
# experiment NAME: train its config, then score it
experiment() {
  local config=experiments/configs/shapeworld/latent/experiments/dit_$1_finetune.yaml
  local model=runs/shapeworld/latent/dit_$1_finetune/final out=results/latent/$1
  run_stage $config
  complete $out/editing-no-think || $THINKGEN eval --suite editing --model $model --no-think --n-per-prompt 1 \
    --n-items 120 --out $out/editing-no-think --overwrite > /dev/null
  complete $out/reasoning-no-think || scripts/eval_shapeworld.sh $model $out
  complete results/reflection/$1_judge_edit1 || $THINKGEN eval --suite composition --model $model \
    --judge $J --reflect 1 --correct edit --n-per-prompt 4 --n-items 120 \
    --out results/reflection/$1_judge_edit1 --overwrite > /dev/null
}
experiment drawn_edits
experiment edits
experiment edits_seed2  # session 17: the same with another seed
# the edits DiT correcting with up to four judged edits in the round (retry-edit)
complete results/reflection/edits_judge_retry-edit1 || $THINKGEN eval --suite composition \
  --model runs/shapeworld/latent/dit_edits_finetune/final --judge $J --reflect 1 --correct retry-edit \
  --n-per-prompt 4 --n-items 120 --out results/reflection/edits_judge_retry-edit1 --overwrite > /dev/null
