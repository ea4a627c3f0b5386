#!/usr/bin/env bash
# Reinforcement learning on ShapeWorld from the SFT model (runs/shapeworld/sft), then the README's RL tables:
#   stage 4 (thinker GRPO): 300 and 600 steps, each with and without the state anchor;
#   stage 5 (DiT Flow-GRPO) after the 300-step stage 4 = SepGRPO: the recipe and two variants,
#   and the recipe after the anchored 600-step stage 4; Dual-GRPO at SepGRPO v1's wall time.
# Every run resumes where it stopped; finished runs and evaluations are skipped.
#   scripts/rl_shapeworld.sh            (~2.5 hours on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/stages.sh
if [ ! -f runs/shapeworld/sft/model_index.json ]; then
  if [ ! -f runs/shapeworld/dit_finetune/final/model_index.json ]; then
    echo "the RL recipes start from the SFT model: run scripts/train_shapeworld.sh (stages 1-4) first" >&2
    exit 2
  fi
  $PYTHON scripts/export_embedded.py runs/shapeworld/dit_finetune/final runs/shapeworld/sft
fi
V=configs/shapeworld/rl_variants
continue_from() {  # SRC DST: a longer run continues SRC from its step-300 checkpoint (resume is exact)
  if [ ! -d "$2/checkpoints" ]; then
    mkdir -p "$2/checkpoints"
    cp -r "$1/checkpoints/step-000300" "$2/checkpoints/"
    cp "$1/rollouts.jsonl" "$2/"
  fi
}
train_unless_final configs/shapeworld/5_thinker_grpo.yaml
train_unless_final $V/thinker_grpo_anchor.yaml
continue_from runs/shapeworld/thinker_grpo runs/shapeworld/thinker_grpo_600
continue_from runs/shapeworld/thinker_grpo_anchor runs/shapeworld/thinker_grpo_anchor_600
for config in $V/thinker_grpo_600.yaml $V/thinker_grpo_anchor_600.yaml configs/shapeworld/6_dit_flow_grpo.yaml \
              $V/dit_flow_grpo_v1.yaml $V/dit_flow_grpo_early.yaml $V/dit_flow_grpo_after_anchor.yaml \
              configs/shapeworld/7_dual_grpo.yaml; do
  train_unless_final $config
done
evaluate_rl runs/shapeworld/thinker_grpo/final results/rl/thinker_grpo
evaluate_rl runs/shapeworld/thinker_grpo_600/final results/rl/thinker_grpo_600
evaluate_rl runs/shapeworld/thinker_grpo_anchor/final results/rl/thinker_grpo_anchor
evaluate_rl runs/shapeworld/dit_flow_grpo/final results/rl/sep_grpo
evaluate_rl runs/shapeworld/dit_flow_grpo_v1/final results/rl/sep_grpo_v1
evaluate_rl runs/shapeworld/dit_flow_grpo_early/final results/rl/sep_grpo_early
evaluate_rl runs/shapeworld/thinker_grpo_anchor_600/final results/rl/thinker_grpo_anchor_600
evaluate_rl runs/shapeworld/dual_grpo/final results/rl/dual_grpo
for run in thinker_grpo_anchor thinker_grpo_anchor_600 dual_grpo; do
  evaluate_rl runs/shapeworld/$run/final results/rl/$run direct
done
# the SFT model and the embedded model (the anchored SepGRPO run), both modes
complete "results/shapeworld_sft/reasoning-no-think" || scripts/eval_shapeworld.sh runs/shapeworld/sft results/shapeworld_sft
complete "results/shapeworld/reasoning-no-think" || \
  scripts/eval_shapeworld.sh runs/shapeworld/dit_flow_grpo_after_anchor/final results/shapeworld
for run in thinker_grpo thinker_grpo_600 thinker_grpo_anchor thinker_grpo_anchor_600; do
  [ -f results/rl/$run/rewrites.txt ] || $PYTHON scripts/eval_thinker.py runs/shapeworld/$run/final \
    > results/rl/$run/rewrites.txt
done
$PYTHON scripts/plot_rl.py docs/rl_curves.png \
  "runs/shapeworld/thinker_grpo+runs/shapeworld/dit_flow_grpo=SepGRPO (stage 4: 300 steps, then stage 5)" \
  "runs/shapeworld/thinker_grpo_anchor_600+runs/shapeworld/dit_flow_grpo_after_anchor=embedded: anchored stage 4 (600), then stage 5" \
  "runs/shapeworld/dual_grpo=Dual-GRPO"
$PYTHON scripts/rl_table.py
