#!/usr/bin/env bash
# Two ways to take the v2 DiT-swap candidate (experiments/scripts/train_v2_candidate.sh) further, each then
# scored as the README tables are (composition and reasoning, think and direct):
#   1. Flow-GRPO on it with the corrected square reading (configs/.../v2_dit_flow_grpo.yaml);
#   2. 3,000 more pretraining steps and the finetune again (v2_dit_continue, v2_dit_finetune2).
# Each stage resumes: rerun after an interruption.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
source scripts/stages.sh
run_stage experiments/configs/shapeworld/experiments/v2_dit_flow_grpo.yaml
echo "== evaluations ($(date +%T))"
scripts/eval_shapeworld.sh runs/shapeworld/v2_dit_flow_grpo/final results/v2_candidate/flow_grpo
run_stage experiments/configs/shapeworld/experiments/v2_dit_continue.yaml
run_stage experiments/configs/shapeworld/experiments/v2_dit_finetune2.yaml
echo "== evaluations ($(date +%T))"
scripts/eval_shapeworld.sh runs/shapeworld/v2_dit_finetune2/final results/v2_candidate/continued
echo "== done ($(date +%T))"
