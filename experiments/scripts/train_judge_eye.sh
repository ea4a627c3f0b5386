#!/usr/bin/env bash
# A judge with a larger eye (docs/reflection.md, session 18): the shipped judge's recipe (the seeing
# thinker's pretraining and SFT, then the judge SFT on the embedded model's drawings) with a vision
# tower of 4 layers x 128 instead of 2 x 64; then how often it agrees with the parser on the embedded
# model's test drawings, one reflection round, and the demo prompt. Needs the drawings of
# experiments/scripts/train_judge.sh (runs/shapeworld/drawn_reflection{,_reasoning}) and the embedded model's
# test drawings (results/latent/final). About 55 min of training and 35 of evaluation on 2 cores.
# Resumable: rerun after an interruption.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE
source scripts/stages.sh
E=thinkgen/assets/shapeworld
J=runs/shapeworld/judge_eye/judge    # the judge, exported as a thinker folder
OUT=results/reflection
run_stage experiments/configs/shapeworld/experiments/judge_eye_pretrain.yaml
run_stage experiments/configs/shapeworld/experiments/judge_eye_sft.yaml
run_stage experiments/configs/shapeworld/experiments/judge_eye_judge.yaml
[ -f $J/thinker_config.json ] || $PYTHON experiments/scripts/export_thinker.py runs/shapeworld/judge_eye/judge_sft/final $J
for suite in composition reasoning; do
  name=judge_accuracy_judge_eye$([ $suite = reasoning ] && echo _on_reasoning || true).txt
  [ -s $OUT/$name ] || $PYTHON experiments/scripts/judge_accuracy.py $J results/latent/final/$suite-think > $OUT/$name
done
reflect() {  # NAME SUITE CORRECTION ROUNDS [more eval options]
  complete $OUT/$1 || $THINKGEN eval --suite $2 --model $E --judge $J --reflect $4 --correct $3 \
    --n-per-prompt 4 --n-items 120 --out $OUT/$1 --overwrite "${@:5}" > /dev/null
}
reflect embedded_judge_eye_edit1 composition edit 1
[ -s $OUT/breakdown_judge_eye_edit1.txt ] || $PYTHON experiments/scripts/reflection_breakdown.py \
  $OUT/embedded_judge_eye_edit1 results/latent/final/composition-think > $OUT/breakdown_judge_eye_edit1.txt
[ -s $OUT/demo_seeds_judge_eye_retry8-edit1.txt ] || $PYTHON experiments/scripts/demo_seeds.py $E 16 1 retry-edit 8 \
  prompt $J > $OUT/demo_seeds_judge_eye_retry8-edit1.txt
reflect embedded_judge_eye_retry8-edit1 composition retry-edit 1 --tries 8
tail -n 3 $OUT/judge_accuracy_judge_eye*.txt
grep -H "before reflection\|overall\|wrong →" $OUT/*judge_eye*/scores.md
