#!/usr/bin/env bash
# The latent-DiT recipe for the embedded model (configs/shapeworld/latent/): the embedded model's
# thinker stages (with today's tokenizer), the ShapeWorld autoencoder, a latent DiT (9,000 steps
# with edits, then the multi-object finetune), then anchored thinker GRPO; an estimated 2.5 hours on 2
# cores. Writes runs/shapeworld/latent/final (half precision) and scores it into results/latent/;
# it replaces thinkgen/assets/shapeworld only by hand, when it beats the embedded model.
# Each stage resumes from its newest checkpoint if interrupted: rerun the script.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
source scripts/stages.sh
L=configs/shapeworld/latent
run_stage $L/1_thinker_pretrain.yaml
run_stage $L/2_thinker_sft.yaml
run_stage configs/shapeworld/0_autoencoder.yaml
run_stage $L/3_dit_pretrain.yaml
run_stage $L/4_dit_finetune.yaml
[ -f runs/shapeworld/latent/sft/model_index.json ] || \
  $PYTHON scripts/export_embedded.py runs/shapeworld/latent/dit_finetune/final runs/shapeworld/latent/sft
run_stage $L/5_thinker_grpo.yaml
[ -f runs/shapeworld/latent/final/model_index.json ] || \
  $PYTHON scripts/export_embedded.py runs/shapeworld/latent/thinker_grpo/final runs/shapeworld/latent/final
echo "== evaluations ($(date +%T))"
complete results/latent/sft/reasoning-no-think || scripts/eval_shapeworld.sh runs/shapeworld/latent/sft results/latent/sft
complete results/latent/reasoning-no-think || scripts/eval_shapeworld.sh runs/shapeworld/latent/final results/latent
echo "== done ($(date +%T))"
