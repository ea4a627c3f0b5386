#!/usr/bin/env bash
# The latent recipe (scripts/train_shapeworld_latent.sh) with layout alignment on its DiT stages
# (configs/shapeworld/latent_layout/: layout_align weight 0.5 on block 2, docs/dit_experiments.md
# session 24). The thinker stages 1-2 and the autoencoder are the latent recipe's own (same folders,
# so they are trained once for both). Each export is scored when it is made, against the latent
# recipe's: stage 4 (results/latent_layout/sft against results/latent/sft), stage 5
# (results/latent_layout/direct_anchor against results/latent/direct_anchor) and stage 7
# (results/latent_layout/final against results/latent/final, the shipped model). Each stage
# resumes: rerun the script.
#   experiments/scripts/train_shapeworld_latent_layout.sh [VARIANT]
# VARIANT (default latent_layout) names the configs (configs/shapeworld/VARIANT/, stages 3-7), the
# runs (runs/shapeworld/VARIANT/) and the scores (results/VARIANT/); latent_layout_fit is the
# variant cut to the 3-hour budget (docs/dit_experiments.md, session 26).
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
source scripts/stages.sh
VARIANT=${1:-latent_layout}
L=configs/shapeworld/latent
V=configs/shapeworld/$VARIANT
R=runs/shapeworld/$VARIANT
S=results/$VARIANT
[ -d "$V" ] || { echo "error: no configs in $V" >&2; exit 1; }
run_stage $L/1_thinker_pretrain.yaml
run_stage $L/2_thinker_sft.yaml
run_stage configs/shapeworld/0_autoencoder.yaml
run_stage $V/3_dit_pretrain.yaml
run_stage $V/4_dit_finetune.yaml
[ -f $R/sft/model_index.json ] || $PYTHON scripts/export_embedded.py $R/dit_finetune/final $R/sft
echo "== evaluation of $R/sft ($(date +%T))"
complete $S/sft/reasoning-no-think || scripts/eval_shapeworld.sh $R/sft $S/sft
run_stage $V/5_thinker_grpo.yaml
[ -f $R/final_direct_anchor/model_index.json ] || \
  $PYTHON scripts/export_embedded.py $R/thinker_grpo_direct_anchor/final $R/final_direct_anchor
echo "== evaluation of $R/final_direct_anchor ($(date +%T))"
complete $S/direct_anchor/reasoning-no-think || \
  scripts/eval_shapeworld.sh $R/final_direct_anchor $S/direct_anchor
run_stage $V/6_dit_continue.yaml
run_stage $V/7_dit_finetune.yaml
[ -f $R/final/model_index.json ] || \
  $PYTHON scripts/export_embedded.py $R/dit_continue_finetune_think_states/final $R/final
echo "== evaluation of $R/final ($(date +%T))"
complete $S/final/reasoning-no-think || scripts/eval_shapeworld.sh $R/final $S/final
echo "== done ($(date +%T))"
