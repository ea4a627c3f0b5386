#!/usr/bin/env bash
# Two checks on the judge of a reflection round (docs/reflection.md, "Session 23"), with the shipped
# judge and the embedded model drawing and editing, one round of retry-edit --tries 8:
# - votes: the judge reads each drawing 8 times, sampling, and faults it only when 6 readings do.
#   The quorum is read off the train split's drawings (votes8_train.txt: faulting votes on right
#   and wrong images; 6 is the smallest that faults under a tenth of the right ones), not the test's;
# - --reading-check: a fault the judge's own trace contradicts is taken back. What it does to the
#   rounds run before is computed from their folders (reading_check.txt), and one round runs with it.
# About 2 hours on 2 cores (drawings 1.5 min each, vote tables 1 min each, rounds 20-30 min each).
# Resumable: finished evals are skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE
source scripts/stages.sh
E=thinkgen/assets/shapeworld
J=thinkgen/assets/shapeworld_judge
OUT=results/reflection
mkdir -p $OUT
drawn() { [ -d "$1/images" ] && complete "$1"; }  # images are not committed: drawn again on a fresh clone
for split in train test; do
  D=$OUT/drawings_composition_$split
  drawn $D || $THINKGEN eval --suite composition --model $E --think --split $split --n-per-prompt 4 \
    --n-items 120 --out $D --overwrite > /dev/null
  [ -s $OUT/votes8_$split.txt ] || $PYTHON experiments/scripts/judge_accuracy.py $J $D --votes 8 2>/dev/null > $OUT/votes8_$split.txt
done
# reflect OUT_NAME [eval options]: one round on the composition test split, think mode
reflect() {
  complete $OUT/$1 || $THINKGEN eval --suite composition --model $E --judge $J --reflect 1 --n-per-prompt 4 \
    --n-items 120 --out $OUT/$1 --overwrite --correct retry-edit --tries 8 "${@:2}" > /dev/null
}
reflect votes8_q6_keep1_retry8-edit1 --votes 8 --quorum 6 --keep-quorum 1   # kept when no vote faults it
reflect votes8_q6_keep2_retry8-edit1 --votes 8 --quorum 6 --keep-quorum 2   # ... when at most one does
reflect votes8_q6_check_retry8-edit1 --votes 8 --quorum 6 --reading-check   # kept by the greedy reading
reflect check_retry8-edit1 --reading-check
$PYTHON experiments/scripts/reading_check_table.py $OUT/embedded_judge_reasoning_{retry8-edit1,retry8-edit1_seed1,edit1,retry-edit1,retry-redraw1} \
  $OUT/reasoning_judge_reasoning_{edit1,retry8-edit1} $OUT/votes8_q6_keep{1,2}_retry8-edit1 > $OUT/reading_check.txt
