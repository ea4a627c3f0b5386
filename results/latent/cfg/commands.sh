# Session 19: the shipped model's guidance scale in all four modes (120 test items x 4 images, seed 0,
# 20 Euler steps); CFG 3 (its default) is results/latent/final. Measured on 2 cores.
set -euo pipefail
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
for cfg in ${CFGS:-2}; do
  for suite in composition reasoning; do
    for mode in think no-think; do
      .venv/bin/thinkgen eval --suite $suite --model thinkgen/assets/shapeworld --$mode --n-per-prompt 4 \
        --n-items 120 --cfg $cfg --out results/latent/cfg/cfg$cfg/$suite-$mode --overwrite > /dev/null
    done
  done
  .venv/bin/python scripts/demo_seeds.py --cfg $cfg thinkgen/assets/shapeworld 16 > results/latent/cfg/cfg$cfg/demo_seeds.txt
done
