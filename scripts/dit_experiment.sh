#!/usr/bin/env bash
# One DiT experiment of docs/dit_experiments.md: stage-2 pretraining from scratch on a fixed
# step budget (sized to about 15 minutes on 2 idle cores), then composition in direct mode
# (120 items x 4 images, so the DiT alone is measured), then a line in results/dit_experiments/.
#   scripts/dit_experiment.sh NAME STEPS [--set KEY=VALUE ...]
# The thinker whose states condition the DiT is the embedded model's, frozen, so runs compare
# the DiT recipe alone. Resumable: rerun the same line after an interruption.
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=$1; STEPS=$2; shift 2
THINKGEN=${THINKGEN:-.venv/bin/thinkgen}
export HF_HUB_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE
RUN=runs/dit_experiments/$NAME
OUT=results/dit_experiments/$NAME
start=$(date +%s)
$THINKGEN train configs/shapeworld/3_dit_pretrain.yaml --resume --set output_dir="$RUN" \
  --set thinker_dir=thinkgen/assets/shapeworld --set run.steps="$STEPS" --set run.save_every=500 \
  --set run.sample_every=500 --set run.log_every=50 "$@" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" > "$RUN.log" || true
[ -d "$RUN/final" ] || { echo "error: $NAME did not finish, see $RUN.log"; exit 1; }
trained=$(( $(date +%s) - start ))
$THINKGEN eval --suite composition --model "$RUN/final" --no-think --n-per-prompt 4 --n-items 120 \
  --out "$OUT" --overwrite > /dev/null
${PYTHON:-.venv/bin/python} - "$OUT" "$NAME" "$STEPS" "$trained" "$*" <<'PY'
import json, sys
out, name, steps, seconds, overrides = sys.argv[1:]
scores = json.load(open(f"{out}/scores.json"))
tags = " ".join(f"{k}={v:.3f}" for k, v in scores["categories"].items())
line = f"{name}\tsteps={steps}\ttrain_s={seconds}\tcomposition_direct={scores['overall']:.3f}\t{tags}\t{overrides}"
print(line)
with open("results/dit_experiments/summary.tsv", "a") as f:
    f.write(line + "\n")
PY
