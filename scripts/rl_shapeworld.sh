#!/usr/bin/env bash
# Reinforcement learning on ShapeWorld from the embedded model, then the README's RL tables:
#   SepGRPO = stage 4 (thinker GRPO) then stage 5 (DiT Flow-GRPO); Dual-GRPO at a similar budget.
# Every run resumes where it stopped; finished runs and evaluations are skipped.
#   scripts/rl_shapeworld.sh            (~60 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
THINKGEN=${THINKGEN:-.venv/bin/thinkgen}
PYTHON=${PYTHON:-.venv/bin/python}
export HF_HUB_OFFLINE=1
evaluate() {  # MODEL OUT: the same protocol as the embedded model's README numbers
  for suite in reasoning composition; do
    [ -f "$2/$suite/scores.json" ] || $THINKGEN eval --suite $suite --model "$1" --think --n-per-prompt 4 \
      --n-items 120 --out "$2/$suite" > /dev/null
  done
}
for recipe in 5_thinker_grpo 6_dit_flow_grpo 7_dual_grpo; do
  out=$(grep '^output_dir:' configs/shapeworld/$recipe.yaml | awk '{print $2}')
  [ -f "$out/final/model_index.json" ] || $THINKGEN train configs/shapeworld/$recipe.yaml --resume
done
evaluate runs/shapeworld/thinker_grpo/final results/rl/thinker_grpo
evaluate runs/shapeworld/dit_flow_grpo/final results/rl/sep_grpo
evaluate runs/shapeworld/dual_grpo/final results/rl/dual_grpo
$PYTHON scripts/plot_rl.py docs/rl_curves.png \
  "runs/shapeworld/thinker_grpo+runs/shapeworld/dit_flow_grpo=SepGRPO (steps 0-299 stage 4, then stage 5)" \
  "runs/shapeworld/dual_grpo=Dual-GRPO"
$PYTHON scripts/rl_table.py
