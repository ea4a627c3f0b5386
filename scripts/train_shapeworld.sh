#!/usr/bin/env bash
# Train the embedded ShapeWorld model from nothing, on CPU (2 cores: about 75 minutes),
# then write it to thinkgen/assets/shapeworld (half precision) for `make demo`.
# Each stage resumes from its newest checkpoint if interrupted: rerun the script.
set -euo pipefail
cd "$(dirname "$0")/.."
THINKGEN=${THINKGEN:-.venv/bin/thinkgen}
export HF_HUB_OFFLINE=1
for stage in 1_thinker_pretrain 2_thinker_sft 3_dit_pretrain 4_dit_finetune; do
  out=$(grep '^output_dir:' configs/shapeworld/$stage.yaml | awk '{print $2}')
  if [ -f "$out/final/.done" ]; then echo "== $stage: done already"; continue; fi
  echo "== $stage"
  $THINKGEN train configs/shapeworld/$stage.yaml --resume
  touch "$out/final/.done"
done
${PYTHON:-.venv/bin/python} scripts/export_embedded.py runs/shapeworld/dit_finetune/final thinkgen/assets/shapeworld
