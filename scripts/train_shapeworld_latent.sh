#!/usr/bin/env bash
# The embedded model's recipe (= make train-shapeworld; configs/shapeworld/latent/): thinker
# pretraining and SFT (the word tokenizer that decodes as written), the ShapeWorld autoencoder, a
# latent DiT (9,000 steps with edits, then the multi-object finetune), thinker GRPO anchored on
# think- and direct-mode states, then the DiT again on the final thinker (3,000 steps, and the
# finetune with think-mode states). 175 minutes on 2 cores (README, "The latent recipe").
# Writes runs/shapeworld/latent/final (half precision), the model shipped as
# thinkgen/assets/shapeworld (copied by hand), and scores it into results/latent/final/.
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
FINAL=runs/shapeworld/latent/final_direct_anchor
[ -f $FINAL/model_index.json ] || \
  $PYTHON scripts/export_embedded.py runs/shapeworld/latent/thinker_grpo_direct_anchor/final $FINAL
run_stage $L/6_dit_continue.yaml
run_stage $L/7_dit_finetune.yaml
[ -f runs/shapeworld/latent/final/model_index.json ] || $PYTHON scripts/export_embedded.py \
  runs/shapeworld/latent/dit_continue_finetune_think_states/final runs/shapeworld/latent/final
echo "== evaluations ($(date +%T))"
complete results/latent/sft/reasoning-no-think || scripts/eval_shapeworld.sh runs/shapeworld/latent/sft results/latent/sft
complete results/latent/direct_anchor/reasoning-no-think || scripts/eval_shapeworld.sh $FINAL results/latent/direct_anchor
complete results/latent/final/reasoning-no-think || \
  scripts/eval_shapeworld.sh runs/shapeworld/latent/final results/latent/final
echo "== done ($(date +%T))"
