# Sourced by the training and evaluation scripts, from the repository root (they cd there first).
THINKGEN=${THINKGEN:-.venv/bin/thinkgen}
PYTHON=${PYTHON:-.venv/bin/python}
export HF_HUB_OFFLINE=1
# output_dir CONFIG: the folder a stage config writes (read through its `base:` chain)
output_dir() {
  $PYTHON -c 'import sys
from thinkgen.train.config import ConfigError, load
try:
    print(load(sys.argv[1]).output_dir)
except ConfigError as error:
    sys.exit(f"error: {error}")' "$1"
}
# run_stage CONFIG trains one stage unless its final/.done marker exists, resuming from its newest
# checkpoint, then writes the marker.
run_stage() {
  local out
  out=$(output_dir "$1")
  if [ -f "$out/final/.done" ]; then echo "== $1: done already"; return; fi
  echo "== $1 ($(date +%T))"
  $THINKGEN train "$1" --resume
  touch "$out/final/.done"
}
# train_unless_final CONFIG: run it to its end (resuming) unless its final/ pipeline exists; for
# runs made before the .done markers of run_stage
train_unless_final() {
  local out
  out=$(output_dir "$1")
  [ -f "$out/final/model_index.json" ] || { echo "== $1 ($(date +%T))"; $THINKGEN train "$1" --resume; }
}
# complete OUT: an eval folder counts only when its scores.json says the run finished (not when
# the file exists)
complete() {
  ${PYTHON:-.venv/bin/python} -c 'import sys; from thinkgen.eval.shapeworld import is_complete; sys.exit(0 if is_complete(sys.argv[1]) else 1)' "$1"
}
# evaluate_rl MODEL OUT [direct]: the RL tables' protocol on reasoning and composition (test
# splits, 120 items x 4 images, think mode; with "direct", no-think too into OUT/SUITE-direct)
evaluate_rl() {
  for suite in reasoning composition; do
    complete "$2/$suite" || $THINKGEN eval --suite $suite --model "$1" --think --n-per-prompt 4 \
      --n-items 120 --out "$2/$suite" --overwrite > /dev/null
    if [ "${3:-}" = direct ]; then
      complete "$2/$suite-direct" || $THINKGEN eval --suite $suite --model "$1" --no-think \
        --n-per-prompt 4 --n-items 120 --out "$2/$suite-direct" --overwrite > /dev/null
    fi
  done
}
# evaluate_think MODEL OUT: composition and reasoning in think mode only (README protocol) into
# OUT/SUITE-think, each skipped once complete; for a conditioning that changes think mode alone
evaluate_think() {
  local suite
  for suite in composition reasoning; do
    complete "$2/$suite-think" || $THINKGEN eval --suite $suite --model "$1" --think --n-per-prompt 4 \
      --n-items 120 --out "$2/$suite-think" --overwrite > /dev/null
  done
}
# evaluate_suites MODEL OUT: the v2 tables' protocol, every suite a thinker that sees is trained
# for: composition, reasoning (4 images per item) and editing (1), think and direct, and the
# reflection verdicts (120 test items each), into OUT/SUITE-MODE
evaluate_suites() {
  local n suite mode
  for suite in composition reasoning editing; do
    for mode in think no-think; do
      n=4; [ $suite = editing ] && n=1
      complete "$2/$suite-$mode" || $THINKGEN eval --suite $suite --model "$1" --$mode --n-per-prompt $n \
        --n-items 120 --out "$2/$suite-$mode" --overwrite > /dev/null
    done
  done
  complete "$2/reflection-think" || $THINKGEN eval --suite reflection --model "$1" --think --n-items 120 \
    --out "$2/reflection-think" --overwrite > /dev/null
}
# evaluate_five_suites MODEL OUT: evaluate_suites, then the text suite (4 images per word) in both
# modes into OUT/text-MODE: every suite, for a model that draws scenes, edits and words
evaluate_five_suites() {
  local mode
  evaluate_suites "$1" "$2"
  for mode in think no-think; do
    complete "$2/text-$mode" || $THINKGEN eval --suite text --model "$1" --$mode --n-per-prompt 4 \
      --n-items 120 --out "$2/text-$mode" --overwrite > /dev/null
  done
}
# require_runs HINT RUN...: stop with one error line unless every RUN folder holds a pipeline
# (model_index.json); HINT says which script writes them
require_runs() {
  local hint=$1 run
  shift
  for run in "$@"; do
    [ -f "$run/model_index.json" ] || { echo "error: $run is missing: run $hint first" >&2; exit 1; }
  done
}
# reencoded MODEL COPY: COPY is MODEL with the thinkgen-reencode conditioning (scripts/set_conditioning.py),
# unless it exists
reencoded() {
  [ -f "$2/model_index.json" ] || $PYTHON scripts/set_conditioning.py "$1" "$2" thinkgen-reencode
}
