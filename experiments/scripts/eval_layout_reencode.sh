#!/usr/bin/env bash
# A layout recipe's final model (experiments/scripts/train_shapeworld_latent_layout.sh VARIANT) with the
# thinkgen-reencode conditioning (think, then encode the rewrite alone, as T2G conditions
# Qwen-Image; README, "Since session 21"), scored in think mode as the README protocol scores the
# embedded model (direct mode is the same as with thinkgen: results/VARIANT/final/*-no-think), and
# the demo prompt over 16 seeds. Into results/VARIANT/final/reencode/; each step is skipped once done.
#   experiments/scripts/eval_layout_reencode.sh [VARIANT]     (default latent_layout; about 5 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
source scripts/stages.sh
VARIANT=${1:-latent_layout}
MODEL=runs/shapeworld/$VARIANT/final
require_runs "experiments/scripts/train_shapeworld_latent_layout.sh $VARIANT" $MODEL
COPY=runs/reencode/${VARIANT}_final
OUT=results/$VARIANT/final/reencode
reencoded $MODEL $COPY
evaluate_think $COPY $OUT
[ -s $OUT/demo_seeds.txt ] || $PYTHON experiments/scripts/demo_seeds.py $COPY 16 > $OUT/demo_seeds.txt
$PYTHON - "$OUT" <<'PY'
import json, sys
for suite in ("composition", "reasoning"):
    print(f"{suite}, think mode, thinkgen-reencode: {json.load(open(f'{sys.argv[1]}/{suite}-think/scores.json'))['overall']:.3f}")
PY
grep "seeds right" $OUT/demo_seeds.txt
