#!/usr/bin/env bash
# Embedded model v2 (issue 15), from nothing, on CPU: the ShapeWorld autoencoder, a thinker that
# sees (Qwen3-VL class: pretraining with scene descriptions, then SFT with edits and reflection
# verdicts), then the latent DiT on its states (pretrain + multi-object finetune, with edits);
# then the thinker's own scores and the ShapeWorld evaluations into results/v2/.
# Each stage resumes from its newest checkpoint: rerun the script after an interruption.
set -euo pipefail
cd "$(dirname "$0")/.."
THINKGEN=${THINKGEN:-.venv/bin/thinkgen}
PYTHON=${PYTHON:-.venv/bin/python}
export HF_HUB_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE
source scripts/stages.sh
V=configs/shapeworld/v2
mkdir -p results/v2
run_stage configs/shapeworld/0_autoencoder.yaml
run_stage $V/1_thinker_pretrain.yaml
run_stage $V/2_thinker_sft.yaml
[ -s results/v2/thinker.txt ] || $PYTHON scripts/eval_thinker.py runs/shapeworld/v2/thinker_sft/final \
  > results/v2/thinker.txt
run_stage $V/3_dit_pretrain.yaml
run_stage $V/4_dit_finetune.yaml
echo "== evaluations ($(date +%T))"
MODEL=runs/shapeworld/v2/dit_finetune/final
scripts/eval_shapeworld.sh $MODEL results/v2
for mode in think no-think; do
  $THINKGEN eval --suite editing --model $MODEL --$mode --n-per-prompt 1 --n-items 120 \
    --out results/v2/editing-$mode --overwrite > /dev/null
done
$THINKGEN eval --suite reflection --model $MODEL --think --n-items 120 --out results/v2/reflection-think \
  --overwrite > /dev/null
# one reflection round on every composition image: scores before and after, from the same seeds
$THINKGEN eval --suite composition --model $MODEL --think --n-per-prompt 4 --n-items 120 --reflect 1 \
  --out results/v2/composition-think-reflect1 --overwrite > /dev/null
echo "== done ($(date +%T))"
