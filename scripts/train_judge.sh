#!/usr/bin/env bash
# A judge for reflection taught on the embedded model's own drawings (docs/reflection.md): the
# embedded model draws 300 train-split composition prompts x 4 x (think, direct), the parser labels
# each drawing (right, or the edit that fixes it), the embedded seeing model's thinker learns those
# verdicts beside its own SFT mix (configs/shapeworld/experiments/judge_sft.yaml), and the result is
# exported as a thinker folder in half precision (ship it with
# `python scripts/export_thinker.py runs/shapeworld/judge_sft/final thinkgen/assets/shapeworld_judge`).
# Then: how often each judge agrees with the parser on the embedded model's test drawings,
# reflection rounds on composition (think mode) with each correction, and the v2 protocol on the
# seeing model with the judge's thinker (why the judge ships as a thinker alone). About 85 minutes on
# 2 cores (drawing 6, SFT 8, each reflection eval 5-10, the v2 protocol 12). Resumable: rerun after
# an interruption.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
source scripts/stages.sh
E=thinkgen/assets/shapeworld
V=thinkgen/assets/shapeworld_vl
J=runs/shapeworld/judge            # the judge: a thinker folder (shipped as thinkgen/assets/shapeworld_judge)
JP=runs/shapeworld/judge_pipeline  # the seeing model with the judge's thinker: how its own scores move
OUT=results/reflection
mkdir -p $OUT
[ -s runs/shapeworld/drawn_reflection/rows.jsonl ] || \
  $PYTHON scripts/draw_reflection_data.py $E runs/shapeworld/drawn_reflection --items 50
run_stage configs/shapeworld/experiments/judge_sft.yaml
[ -f $J/thinker_config.json ] || $PYTHON scripts/export_thinker.py runs/shapeworld/judge_sft/final $J
[ -f $JP/model_index.json ] || $PYTHON scripts/export_embedded.py $V $JP --thinker runs/shapeworld/judge_sft/final
# the embedded model's test drawings (scripts/eval_shapeworld.sh thinkgen/assets/shapeworld results/latent/final)
complete results/latent/final/composition-think || $THINKGEN eval --suite composition --model $E --think \
  --n-per-prompt 4 --n-items 120 --out results/latent/final/composition-think --overwrite > /dev/null
# reflect OUT_NAME JUDGE_DIR CORRECTION ROUNDS: composition, think mode, the embedded model drawing
reflect() {
  complete $OUT/$1 || $THINKGEN eval --suite composition --model $E --judge $2 --reflect $4 --correct $3 \
    --n-per-prompt 4 --n-items 120 --out $OUT/$1 --overwrite > /dev/null
}
for judge in shapeworld_vl:$V judge:$J; do
  name=${judge%%:*}; folder=${judge#*:}
  [ -s $OUT/judge_accuracy_$name.txt ] || $PYTHON scripts/judge_accuracy.py $folder \
    results/latent/final/composition-think > $OUT/judge_accuracy_$name.txt
  for correct in edit redraw; do reflect embedded_${name}_${correct}1 $folder $correct 1; done
done
reflect embedded_judge_checked-edit1 $J checked-edit 1
reflect embedded_judge_edit2 $J edit 2
reflect embedded_judge_checked-edit2 $J checked-edit 2
# the judge pipeline as the seeing model: its own drawings, edits and reflection-suite verdicts
evaluate_suites $JP $OUT/judge_pipeline
tail -n 4 $OUT/judge_accuracy_*.txt
grep -H "before reflection\|overall\|wrong →" $OUT/embedded_*/scores.md
