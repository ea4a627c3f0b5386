#!/usr/bin/env bash
# Session 21 (docs/dit_experiments.md, "Session 21"): a third cycle of stages 6-7 (6,000 + 1,000
# steps, replaying the shipped model's direct-mode drawings of train riddles) after
# experiments/scripts/train_long_replay.sh's best composite, to measure how composition grows with DiT
# training: 14,000 DiT steps (the recipe), 21,000 (session 20), 28,000 (this). Scored as the README
# tables are, into results/latent/longer_replay/ (and longer_replay_think/: the finetune with every
# caption in think mode). About 80 minutes on 2 cores; each step is
# skipped once done.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
source scripts/stages.sh
E=experiments/configs/shapeworld/latent/experiments
R=runs/shapeworld/latent
require_runs experiments/scripts/train_long_replay.sh $R/dit_long_replay_right_finetune/final
run_stage $E/dit_longer_replay.yaml
run_stage $E/dit_longer_replay_right_finetune.yaml
run_stage $E/dit_longer_replay_think_finetune.yaml  # the same finetune, every caption in think mode
O=results/latent/longer_replay
M=$R/dit_longer_replay_right_finetune/final
complete $O/reasoning-no-think || scripts/eval_shapeworld.sh $M $O
# direct-mode reasoning on a second seed (shipped: results/latent/long_continue/seed1/) and the demo
# prompt over 16 seeds
complete $O/seed1/reasoning-no-think || $THINKGEN eval --suite reasoning --model $M --no-think --seed 1 \
  --n-per-prompt 4 --n-items 120 --out $O/seed1/reasoning-no-think --overwrite > /dev/null
[ -s $O/demo_seeds.txt ] || $PYTHON experiments/scripts/demo_seeds.py $M 16 > $O/demo_seeds.txt
complete results/latent/longer_replay_think/reasoning-no-think || \
  scripts/eval_shapeworld.sh $R/dit_longer_replay_think_finetune/final results/latent/longer_replay_think
echo "== done ($(date +%T))"
