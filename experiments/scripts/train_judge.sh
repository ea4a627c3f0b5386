#!/usr/bin/env bash
# Judges for reflection taught on the embedded model's own drawings (docs/reflection.md). The
# embedded model draws train-split prompts (composition: 50 per tag; reasoning: 300) x 4 x (think,
# direct); the parser labels each drawing (right, or the edit that fixes it); the embedded seeing
# model's thinker learns those verdicts beside its own SFT mix: on the composition drawings
# (judge_sft.yaml) and on both (judge_sft_reasoning.yaml, the shipped judge). Each is exported as a
# thinker folder in half precision; ship with
#   python experiments/scripts/export_thinker.py runs/shapeworld/judge_sft_reasoning/final thinkgen/assets/shapeworld_judge
# Then: how often each judge agrees with the parser on the embedded model's test drawings,
# reflection rounds with each correction (the embedded model drawing and correcting), and the v2
# protocol on the seeing model with a judge's thinker (why the judge ships as a thinker alone).
# About 2 hours on 2 cores (drawing 6 + 6.5 min, each SFT 8, each reflection eval 5-10, the v2
# protocol 12), and 55 minutes more for session 16's judge and corrections (drawing 8, SFT 13,
# evals 5-6 each). Resumable: rerun after an interruption.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE
source scripts/stages.sh
E=thinkgen/assets/shapeworld
V=thinkgen/assets/shapeworld_vl
J=runs/shapeworld/judge              # taught on composition drawings
R=runs/shapeworld/judge_reasoning    # taught on composition and reasoning drawings (shipped)
JP=runs/shapeworld/judge_pipeline    # the seeing model with J's thinker: how its own scores move
OUT=results/reflection
mkdir -p $OUT
[ -s runs/shapeworld/drawn_reflection/rows.jsonl ] || \
  $PYTHON experiments/scripts/draw_reflection_data.py $E runs/shapeworld/drawn_reflection --items 50
[ -s runs/shapeworld/drawn_reflection_reasoning/rows.jsonl ] || $PYTHON experiments/scripts/draw_reflection_data.py $E \
  runs/shapeworld/drawn_reflection_reasoning --suite reasoning --items 300
run_stage experiments/configs/shapeworld/experiments/judge_sft.yaml
run_stage experiments/configs/shapeworld/experiments/judge_sft_reasoning.yaml
[ -f $J/thinker_config.json ] || $PYTHON experiments/scripts/export_thinker.py runs/shapeworld/judge_sft/final $J
[ -f $R/thinker_config.json ] || $PYTHON experiments/scripts/export_thinker.py runs/shapeworld/judge_sft_reasoning/final $R
[ -f $JP/model_index.json ] || $PYTHON scripts/export_embedded.py $V $JP --thinker runs/shapeworld/judge_sft/final
# the embedded model's test drawings (scripts/eval_shapeworld.sh thinkgen/assets/shapeworld results/latent/final)
for suite in composition reasoning; do
  complete results/latent/final/$suite-think || $THINKGEN eval --suite $suite --model $E --think \
    --n-per-prompt 4 --n-items 120 --out results/latent/final/$suite-think --overwrite > /dev/null
done
for judge in shapeworld_vl:$V judge:$J judge_reasoning:$R; do
  name=${judge%%:*}; folder=${judge#*:}
  [ -s $OUT/judge_accuracy_$name.txt ] || $PYTHON experiments/scripts/judge_accuracy.py $folder \
    results/latent/final/composition-think > $OUT/judge_accuracy_$name.txt
  [ -s $OUT/judge_accuracy_${name}_on_reasoning.txt ] || $PYTHON experiments/scripts/judge_accuracy.py $folder \
    results/latent/final/reasoning-think > $OUT/judge_accuracy_${name}_on_reasoning.txt
done
# reflect OUT_NAME SUITE JUDGE_DIR CORRECTION ROUNDS: think mode, the embedded model drawing and correcting
reflect() {  # NAME SUITE JUDGE CORRECTION ROUNDS [more eval options]
  complete $OUT/$1 || $THINKGEN eval --suite $2 --model $E --judge $3 --reflect $5 --correct $4 \
    --n-per-prompt 4 --n-items 120 --out $OUT/$1 --overwrite "${@:6}" > /dev/null
}
for correct in edit redraw; do
  reflect embedded_shapeworld_vl_${correct}1 composition $V $correct 1
  reflect embedded_judge_${correct}1 composition $J $correct 1
done
reflect embedded_judge_checked-edit1 composition $J checked-edit 1
reflect embedded_judge_edit2 composition $J edit 2
reflect embedded_judge_checked-edit2 composition $J checked-edit 2
reflect embedded_judge_reasoning_edit1 composition $R edit 1
reflect embedded_judge_reasoning_edit2 composition $R edit 2
reflect reasoning_judge_edit1 reasoning $J edit 1
reflect reasoning_judge_reasoning_edit1 reasoning $R edit 1
# the seeing model with J's thinker: its own drawings, edits and reflection-suite verdicts
evaluate_suites $JP $OUT/judge_pipeline
# session 16: a judge taught on 3,200 more multi-object drawings, twice as long (judge_sft_multi.yaml)
M=runs/shapeworld/judge_multi
[ -s runs/shapeworld/drawn_reflection_multi/rows.jsonl ] || $PYTHON experiments/scripts/draw_reflection_data.py $E \
  runs/shapeworld/drawn_reflection_multi --items 100 --tags two_object,counting,position,color_attr --seed 1
run_stage experiments/configs/shapeworld/experiments/judge_sft_multi.yaml
[ -f $M/thinker_config.json ] || $PYTHON experiments/scripts/export_thinker.py runs/shapeworld/judge_sft_multi/final $M
[ -s $OUT/judge_accuracy_judge_multi.txt ] || $PYTHON experiments/scripts/judge_accuracy.py $M \
  results/latent/final/composition-think > $OUT/judge_accuracy_judge_multi.txt
[ -s $OUT/judge_accuracy_judge_multi_on_reasoning.txt ] || $PYTHON experiments/scripts/judge_accuracy.py $M \
  results/latent/final/reasoning-think > $OUT/judge_accuracy_judge_multi_on_reasoning.txt
reflect embedded_judge_multi_edit1 composition $M edit 1
reflect reasoning_judge_multi_edit1 reasoning $M edit 1
# up to four judged edits in the round (retry-edit), with each judge
reflect embedded_judge_multi_retry-edit1 composition $M retry-edit 1
reflect embedded_judge_reasoning_retry-edit1 composition $R retry-edit 1
reflect reasoning_judge_reasoning_retry-edit1 reasoning $R retry-edit 1
# session 17: up to eight judged edits; up to four judged redraws; the demo prompt after a round
reflect embedded_judge_reasoning_retry8-edit1 composition $R retry-edit 1 --tries 8
reflect embedded_judge_reasoning_retry8-edit1_seed1 composition $R retry-edit 1 --tries 8 --seed 1
reflect embedded_judge_reasoning_retry-redraw1 composition $R retry-redraw 1
reflect reasoning_judge_reasoning_retry8-edit1 reasoning $R retry-edit 1 --tries 8
# ... and the judge checking against the thinker's rewrite instead of the prompt
reflect embedded_judge_reasoning_edit1_rewrite composition $R edit 1 --judge-against rewrite
reflect reasoning_judge_reasoning_edit1_rewrite reasoning $R edit 1 --judge-against rewrite
[ -s $OUT/demo_seeds_edit1_rewrite.txt ] || $PYTHON experiments/scripts/demo_seeds.py $E 16 1 edit - rewrite \
  > $OUT/demo_seeds_edit1_rewrite.txt
[ -s $OUT/demo_seeds_retry8-edit1.txt ] || $PYTHON experiments/scripts/demo_seeds.py $E 16 1 retry-edit 8 \
  > $OUT/demo_seeds_retry8-edit1.txt
tail -n 3 $OUT/judge_accuracy_*.txt
grep -H "before reflection\|overall\|wrong →" $OUT/*/scores.md
