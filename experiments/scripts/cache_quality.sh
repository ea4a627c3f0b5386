#!/usr/bin/env bash
# The price of step caching in exact quality: the embedded model's ShapeWorld composition (test
# split, 120 items x 4 images, README protocol) without a cache and with each setting, direct mode
# first, then think mode. Scores go to results/cache/SETTING/composition-MODE/scores.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
for mode in no-think think; do
  for setting in none first_block:threshold=0.1 taylorseer:cache_interval=2 first_block:threshold=0.2 \
                 first_block:threshold=0.05 taylorseer:cache_interval=3; do
    name=${setting//[:=]/_}
    out=results/cache/$name/composition-$mode
    [ -f "$out/scores.json" ] && continue
    cache=(); [ "$setting" = none ] || cache=(--cache "$setting")
    start=$(date +%s)
    .venv/bin/thinkgen eval --suite composition --$mode --n-per-prompt 4 --n-items 120 "${cache[@]}" \
      --out "$out" --overwrite > /dev/null
    echo "$mode $setting: $(python3 -c "import json; print(round(json.load(open('$out/scores.json'))['overall'], 3))") ($(( $(date +%s) - start )) s)"
  done
done
