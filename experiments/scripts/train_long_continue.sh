#!/usr/bin/env bash
# Session 19 (docs/dit_experiments.md, "Session 19"): the shipped DiT trained further with the
# recipe's stages 6-7 again (6,000 + 1,000 steps, about an hour on 2 cores), scored as the README
# tables are into results/latent/long_continue/, with the demo prompt over 16 seeds.
# Needs the shipped stage-7 run (runs/shapeworld/latent/dit_continue_finetune_think_states, written
# by scripts/train_shapeworld_latent.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
source scripts/stages.sh
E=experiments/configs/shapeworld/latent/experiments
R=runs/shapeworld/latent
require_runs scripts/train_shapeworld_latent.sh $R/dit_continue_finetune_think_states/final
run_stage $E/dit_long_continue.yaml
run_stage $E/dit_long_continue_finetune.yaml
complete results/latent/long_continue/reasoning-no-think || \
  scripts/eval_shapeworld.sh $R/dit_long_continue_finetune/final results/latent/long_continue
[ -s results/latent/long_continue/demo_seeds.txt ] || $PYTHON experiments/scripts/demo_seeds.py \
  $R/dit_long_continue_finetune/final 16 > results/latent/long_continue/demo_seeds.txt
echo "== done ($(date +%T))"
