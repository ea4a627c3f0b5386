#!/usr/bin/env bash
# What limits position and colour binding (docs/dit_experiments.md, "Continuing the shipped DiT"):
# scripts/train_latent_continue.sh's first run again, with the test's statements held out of the
# captions only (data.held_out: captions) instead of out of the scenes; scored into
# results/latent/continue_captions_held_out/.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
source scripts/stages.sh
E=configs/shapeworld/latent/experiments
run_stage $E/dit_continue_captions_held_out.yaml
run_stage $E/dit_continue_captions_held_out_finetune.yaml
complete results/latent/continue_captions_held_out/reasoning-no-think || \
  scripts/eval_shapeworld.sh runs/shapeworld/latent/dit_continue_captions_held_out_finetune/final \
    results/latent/continue_captions_held_out
echo "== done ($(date +%T))"
