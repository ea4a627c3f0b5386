#!/usr/bin/env bash
# Score a pipeline on the ShapeWorld test splits, think vs direct, and print the README table.
#   scripts/eval_shapeworld.sh [MODEL_DIR] [OUT_DIR]     (default: the embedded model, results/shapeworld)
set -euo pipefail
cd "$(dirname "$0")/.."
THINKGEN=${THINKGEN:-.venv/bin/thinkgen}
MODEL=${1:-thinkgen/assets/shapeworld}
OUT=${2:-results/shapeworld}
export HF_HUB_OFFLINE=1
for suite in composition reasoning; do
  for mode in think no-think; do
    $THINKGEN eval --suite "$suite" --model "$MODEL" --"$mode" --n-per-prompt 4 --n-items 120 \
      --out "$OUT/$suite-$mode" --overwrite > /dev/null
  done
done
${PYTHON:-.venv/bin/python} - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
def load(name):
    return json.load(open(f"{out}/{name}/scores.json"))
c_t, c_d = load("composition-think"), load("composition-no-think")
print("| composition (GenEval tags) | think | direct |\n|---|---|---|")
for tag in c_t["categories"]:
    print(f"| {tag} | {c_t['categories'][tag]:.3f} | {c_d['categories'][tag]:.3f} |")
print(f"| **overall** | **{c_t['overall']:.3f}** | **{c_d['overall']:.3f}** |\n")
r_t, r_d = load("reasoning-think"), load("reasoning-no-think")
print("| reasoning (WISE-weighted) | think | direct |\n|---|---|---|")
for group in ("supervised", "held_out"):
    print(f"| {group} facts | {r_t[group]['overall']:.3f} | {r_d[group]['overall']:.3f} |")
print(f"| all | {r_t['overall']:.3f} | {r_d['overall']:.3f} |")
PY
