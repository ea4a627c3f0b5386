#!/usr/bin/env bash
# One DiT experiment of docs/dit_experiments.md: stage-2 pretraining from scratch on a fixed
# step budget (sized to about 15 minutes on 2 idle cores), then composition in direct mode
# (120 items x 4 images, so the DiT alone is measured), then a line in results/dit_experiments/.
#   experiments/scripts/dit_experiment.sh NAME STEPS [--set KEY=VALUE ...]
# SUITE=text measures the text suite instead (at its own 64 px; word accuracy). CONFIG names the stage
# config to start from (default: the pixel recipe's stage 2; configs/shapeworld/latent/3_dit_pretrain.yaml
# for the latent recipe's, whose --set dit.autoencoder must then name an autoencoder folder).
# Two lines are written: NAME (the EMA weights the stage saves) and NAME/raw (the last step's raw
# weights), because at a budget this short an EMA of decay 0.999 still averages in early weights.
# The thinker whose states condition the DiT is the embedded model's, frozen, so runs compare
# the DiT recipe alone. Resumable: rerun the same line after an interruption.
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=$1; STEPS=$2; shift 2
THINKGEN=${THINKGEN:-.venv/bin/thinkgen}
PYTHON=${PYTHON:-.venv/bin/python}
SUITE=${SUITE:-composition}
CONFIG=${CONFIG:-configs/shapeworld/3_dit_pretrain.yaml}
export HF_HUB_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE
RUN=runs/dit_experiments/$NAME
OUT=results/dit_experiments/$NAME
mkdir -p "$(dirname "$RUN")" "$(dirname "$OUT")"  # a fresh clone has no runs/
start=$(date +%s)
$THINKGEN train "$CONFIG" --resume --set output_dir="$RUN" \
  --set thinker_dir=thinkgen/assets/shapeworld --set run.steps="$STEPS" --set run.save_every=500 \
  --set run.sample_every=500 --set run.log_every=50 "$@" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" > "$RUN.log" || true
[ -d "$RUN/final" ] || { echo "error: $NAME did not finish, see $RUN.log"; exit 1; }
trained=$(( $(date +%s) - start ))
last=$(ls -d "$RUN"/checkpoints/step-* | sort | tail -1)
$PYTHON experiments/scripts/export_raw_weights.py "$RUN/final" "$last" "$RUN/final_raw" > /dev/null
for weights in final final_raw; do
  out=$OUT; label=$NAME
  [ "$weights" = final_raw ] && { out=${OUT}_raw; label=$NAME/raw; }
  $THINKGEN eval --suite "$SUITE" --model "$RUN/$weights" --no-think --n-per-prompt 4 --n-items 120 \
    --out "$out" --overwrite > /dev/null
  $PYTHON - "$out" "$label" "$STEPS" "$trained" "$SUITE" "$*" <<'PY'
import json, sys
out, name, steps, seconds, suite, overrides = sys.argv[1:]
scores = json.load(open(f"{out}/scores.json"))
tags = " ".join(f"{k}={v:.3f}" for k, v in scores["categories"].items())
tags += "".join(f" {k}={scores[k]:.3f}" for k in ("ned",) if k in scores)  # text: edit-distance similarity
line = f"{name}\tsteps={steps}\ttrain_s={seconds}\t{suite}_direct={scores['overall']:.3f}\t{tags}\t{overrides}"
print(line)
with open("results/dit_experiments/summary.tsv", "a") as f:
    f.write(line + "\n")
PY
done
