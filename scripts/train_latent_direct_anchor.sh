#!/usr/bin/env bash
# The latent recipe's stage 5 again with the direct-mode state anchor
# (configs/shapeworld/latent/experiments/thinker_grpo_direct_anchor.yaml), exported to
# runs/shapeworld/latent/final_direct_anchor and scored into results/latent/direct_anchor/.
# Needs runs/shapeworld/latent/sft (scripts/train_shapeworld_latent.sh). Resumes: rerun it.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
source scripts/stages.sh
run_stage configs/shapeworld/latent/experiments/thinker_grpo_direct_anchor.yaml
OUT=runs/shapeworld/latent/final_direct_anchor
[ -f $OUT/model_index.json ] || $PYTHON scripts/export_embedded.py runs/shapeworld/latent/thinker_grpo_direct_anchor/final $OUT
complete results/latent/direct_anchor/reasoning-no-think || scripts/eval_shapeworld.sh $OUT results/latent/direct_anchor
echo "== done ($(date +%T))"
