#!/usr/bin/env bash
# Session 20 (docs/dit_experiments.md, "Session 20"): can the session-19 DiT (stages 6-7 again,
# experiments/scripts/train_long_continue.sh) keep the direct-mode reasoning it lost? The shipped model's own
# direct-mode drawings of reasoning train-split riddles (x 4) replayed among the training scenes
# (data.replay): in stage 7 only (300 or 600 riddles), or in stages 6 and 7 (600; or in stage 7
# only the drawings the scorer calls right, data.replay_select); and the
# shipped and session-19 DiTs averaged (experiments/scripts/interpolate_dits.py). Each is scored as the README
# tables are, into results/latent/{long_replay,long_replay600,long_replay_both,long_replay_right,wise/a050}/.
# About 105 minutes on 2 cores after train_long_continue.sh; each step is skipped once done.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
source scripts/stages.sh
E=experiments/configs/shapeworld/latent/experiments
R=runs/shapeworld/latent
require_runs scripts/train_shapeworld_latent.sh $R/final $R/dit_continue_finetune_think_states/final
require_runs experiments/scripts/train_long_continue.sh $R/dit_long_continue/final $R/dit_long_continue_finetune/final
# draw N FOLDER: the shipped model (the recipe's half-precision export) draws N riddles of the
# reasoning train split, 4 images each, in direct mode: the drawings the configs replay
draw() {
  complete "$2" || $THINKGEN eval --suite reasoning --model $R/final --no-think --split train \
    --n-per-prompt 4 --n-items "$1" --out "$2" --overwrite > /dev/null
}
draw 300 runs/replay/shipped_reasoning_train_direct
draw 600 runs/replay/shipped_reasoning_train_direct_600
run_stage $E/dit_long_replay_finetune.yaml
run_stage $E/dit_long_replay600_finetune.yaml
run_stage $E/dit_long_replay.yaml
run_stage $E/dit_long_replay_both_finetune.yaml
run_stage $E/dit_long_replay_right_finetune.yaml
[ -f runs/wise/a050/model_index.json ] || $PYTHON experiments/scripts/interpolate_dits.py \
  $R/dit_continue_finetune_think_states/final $R/dit_long_continue_finetune/final runs/wise/a050 --alpha 0.5 --half
evaluate() {  # evaluate MODEL OUT: the README tables' four runs
  complete "$2/reasoning-no-think" || scripts/eval_shapeworld.sh "$1" "$2"
}
evaluate $R/dit_long_replay_finetune/final results/latent/long_replay
evaluate $R/dit_long_replay600_finetune/final results/latent/long_replay600
evaluate $R/dit_long_replay_both_finetune/final results/latent/long_replay_both
evaluate runs/wise/a050 results/latent/wise/a050
evaluate $R/dit_long_replay_right_finetune/final results/latent/long_replay_right
# the closest candidate: direct-mode reasoning on a second seed (shipped: results/latent/long_continue/seed1/)
# and the demo prompt over 16 seeds
B=results/latent/long_replay_both
complete $B/seed1/reasoning-no-think || $THINKGEN eval --suite reasoning --model $R/dit_long_replay_both_finetune/final \
  --no-think --seed 1 --n-per-prompt 4 --n-items 120 --out $B/seed1/reasoning-no-think --overwrite > /dev/null
[ -s $B/demo_seeds.txt ] || $PYTHON experiments/scripts/demo_seeds.py $R/dit_long_replay_both_finetune/final 16 > $B/demo_seeds.txt
echo "== done ($(date +%T))"
