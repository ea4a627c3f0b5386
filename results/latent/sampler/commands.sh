# The embedded model's sampler, composition direct (120 test items x 4 images); measured 2026-11-30
# on 2 cores. base = the defaults (20 Euler steps, CFG 3).
for v in "base:--cfg 3" "cfg2:--cfg 2" "cfg5:--cfg 5" "steps50:--steps 50"; do
  .venv/bin/thinkgen eval --suite composition --no-think --n-per-prompt 4 --n-items 120 ${v#*:} \
    --out results/latent/sampler/${v%%:*} --overwrite
done

# Session 17: the scheduler's static shift (a copy of the embedded model with only
# scheduler/scheduler_config.json changed), composition direct; shift 1 and 3 again with --seed 1,
# and shift 3 in the other three modes.
for s in 0.5 2 3; do
  cp -r thinkgen/assets/shapeworld runs/shapeworld/latent/shift_probe/shift$s
  .venv/bin/python scripts/set_scheduler_shift.py runs/shapeworld/latent/shift_probe/shift$s $s
  .venv/bin/thinkgen eval --suite composition --no-think --model runs/shapeworld/latent/shift_probe/shift$s \
    --n-per-prompt 4 --n-items 120 --out results/latent/sampler/shift$s-composition-no-think --overwrite
done
.venv/bin/thinkgen eval --suite composition --no-think --seed 1 --n-per-prompt 4 --n-items 120 \
  --out results/latent/sampler/shift1-seed1-composition-no-think --overwrite
.venv/bin/thinkgen eval --suite composition --no-think --seed 1 --model runs/shapeworld/latent/shift_probe/shift3 \
  --n-per-prompt 4 --n-items 120 --out results/latent/sampler/shift3-seed1-composition-no-think --overwrite
for run in composition-think reasoning-think reasoning-no-think; do
  suite=${run%%-*}; mode=${run#*-}
  .venv/bin/thinkgen eval --suite $suite --$mode --model runs/shapeworld/latent/shift_probe/shift3 \
    --n-per-prompt 4 --n-items 120 --out results/latent/sampler/shift3-$run --overwrite
done
