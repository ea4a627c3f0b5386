#!/usr/bin/env bash
# Ablations at one fixed budget (papers' tables 7, 12, 13): prepadding K=0 vs 23, CUT vs ALL states,
# linear vs MLP connector. Each variant is a short DiT stage-2 run from the trained thinker, then
# scored on the ShapeWorld composition and reasoning test splits (think mode).
#   experiments/scripts/ablate_shapeworld.sh [STEPS]        (default 3000 steps, ~17 min each on 2 cores, ~29 for ALL)
set -euo pipefail
cd "$(dirname "$0")/../.."
STEPS=${1:-3000}
source scripts/stages.sh
declare -A VARIANTS=(
  [k23_cut_linear]="dit.num_prepadding=23 dit.extract=cut dit.connector=linear"
  [k0_cut_linear]="dit.num_prepadding=0 dit.extract=cut dit.connector=linear"
  [k23_all_linear]="dit.num_prepadding=23 dit.extract=all dit.connector=linear"
  [k23_cut_mlp]="dit.num_prepadding=23 dit.extract=cut dit.connector=mlp"
)
for name in k23_cut_linear k0_cut_linear k23_all_linear k23_cut_mlp; do
  out=runs/ablations/$name
  sets=(--set "output_dir=$out" --set "run.steps=$STEPS" --set run.sample_every=0 --set run.save_every=1000)
  for kv in ${VARIANTS[$name]}; do sets+=(--set "$kv"); done
  [ -f "$out/final/model_index.json" ] || $THINKGEN train configs/shapeworld/3_dit_pretrain.yaml --resume "${sets[@]}"
  for suite in composition reasoning; do
    complete "results/ablations/$name/$suite" || \
      $THINKGEN eval --suite $suite --model "$out/final" --think --n-per-prompt 4 --out "results/ablations/$name/$suite" --overwrite > /dev/null
  done
done
${PYTHON:-.venv/bin/python} experiments/scripts/ablation_table.py
