#!/usr/bin/env bash
# The embedded model v2 DiT-swap candidate (docs/dit_experiments.md): autoencoder, then the latent
# DiT (pretrain + multi-object finetune, with edits) on the embedded model's frozen thinker, then
# the four README evaluations and the editing suite. Each stage resumes: rerun after an interruption.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE
source scripts/stages.sh
run_stage configs/shapeworld/0_autoencoder.yaml
run_stage experiments/configs/shapeworld/experiments/v2_dit_pretrain.yaml
run_stage experiments/configs/shapeworld/experiments/v2_dit_finetune.yaml
echo "== evaluations ($(date +%T))"
scripts/eval_shapeworld.sh runs/shapeworld/v2_dit_finetune/final results/v2_candidate
$THINKGEN eval --suite editing --model runs/shapeworld/v2_dit_finetune/final --no-think --n-per-prompt 1 \
  --n-items 120 --out results/v2_candidate/editing-no-think --overwrite > /dev/null
echo "== done ($(date +%T))"
