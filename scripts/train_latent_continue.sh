#!/usr/bin/env bash
# Taking the shipped latent model's DiT further (docs/dit_experiments.md, "Continuing the shipped
# DiT"): 3,000 more steps on all scenes and edits, then the multi-object finetune, with and without
# think-mode states; each scored as the README tables are, into results/latent/continue*/. The first
# run is the recipe's stage 6 started from the shipped copy of its input; the think-state finetune is stage 7.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
source scripts/stages.sh
E=configs/shapeworld/latent/experiments
run_stage $E/dit_continue.yaml
run_stage $E/dit_continue_finetune.yaml
complete results/latent/continue/reasoning-no-think || \
  scripts/eval_shapeworld.sh runs/shapeworld/latent/dit_continue_finetune/final results/latent/continue
run_stage configs/shapeworld/latent/7_dit_finetune.yaml  # the same finetune with data.think_states: 0.5
complete results/latent/continue_think_states/reasoning-no-think || \
  scripts/eval_shapeworld.sh runs/shapeworld/latent/dit_continue_finetune_think_states/final \
    results/latent/continue_think_states
echo "== done ($(date +%T))"
