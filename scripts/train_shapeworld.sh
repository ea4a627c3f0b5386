#!/usr/bin/env bash
# Train the embedded ShapeWorld model from nothing, on CPU (2 cores: about 2 hours), then write
# it to thinkgen/assets/shapeworld (half precision) for `make demo`:
#   stages 1-4 (thinker pretraining and SFT, DiT pretraining and finetune; 71 min), exported as the
#   SFT model runs/shapeworld/sft, which every RL recipe starts from; then the RL that made the
#   embedded model: thinker GRPO with the state anchor (600 steps), then DiT Flow-GRPO (150 steps).
# Each stage resumes from its newest checkpoint if interrupted: rerun the script.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/stages.sh
for stage in 1_thinker_pretrain 2_thinker_sft 3_dit_pretrain 4_dit_finetune; do
  run_stage configs/shapeworld/$stage.yaml
done
[ -f runs/shapeworld/sft/model_index.json ] || $PYTHON scripts/export_embedded.py runs/shapeworld/dit_finetune/final runs/shapeworld/sft
V=configs/shapeworld/rl_variants
run_stage $V/thinker_grpo_anchor.yaml
# 600 steps = the 300-step run continued from its last checkpoint (resume is exact)
if [ ! -d runs/shapeworld/thinker_grpo_anchor_600/checkpoints ]; then
  mkdir -p runs/shapeworld/thinker_grpo_anchor_600/checkpoints
  cp -r runs/shapeworld/thinker_grpo_anchor/checkpoints/step-000300 runs/shapeworld/thinker_grpo_anchor_600/checkpoints/
  cp runs/shapeworld/thinker_grpo_anchor/rollouts.jsonl runs/shapeworld/thinker_grpo_anchor_600/
fi
run_stage $V/thinker_grpo_anchor_600.yaml
run_stage $V/dit_flow_grpo_after_anchor.yaml
$PYTHON scripts/export_embedded.py runs/shapeworld/dit_flow_grpo_after_anchor/final thinkgen/assets/shapeworld
