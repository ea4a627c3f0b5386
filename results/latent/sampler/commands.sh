# The embedded model's sampler, composition direct (120 test items x 4 images); measured 2026-11-30
# on 2 cores. base = the defaults (20 Euler steps, CFG 3).
for v in "base:--cfg 3" "cfg2:--cfg 2" "cfg5:--cfg 5" "steps50:--steps 50"; do
  .venv/bin/thinkgen eval --suite composition --no-think --n-per-prompt 4 --n-items 120 ${v#*:} \
    --out results/latent/sampler/${v%%:*} --overwrite
done
