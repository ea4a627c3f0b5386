#!/usr/bin/env bash
# Session 21 (docs/dit_experiments.md, "Session 21"): the same weights conditioned as T2G conditions
# Qwen-Image (conditioning thinkgen-reencode: think, then encode the rewrite alone in direct mode),
# for the shipped model and the 28,000-step model of experiments/scripts/train_longer_replay.sh. Think mode only
# (direct mode is the same strategy's), README protocol, into results/latent/reencode/{shipped,longer}/;
# the demo prompt over 16 seeds. Then the embedded seeing model, which ships with thinkgen-reencode
# since session 21, in think mode into results/v2/shipped_fp16_reencode/ (before:
# results/v2/shipped_fp16/, with thinkgen). About 30 minutes on 2 cores; each step is skipped once done.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
source scripts/stages.sh
R=runs/shapeworld/latent
require_runs experiments/scripts/train_longer_replay.sh $R/dit_longer_replay_right_finetune/final
for pair in shipped:thinkgen/assets/shapeworld longer:$R/dit_longer_replay_right_finetune/final; do
  name=${pair%%:*} model=${pair#*:}
  copy=runs/reencode/$name out=results/latent/reencode/$name
  reencoded $model $copy
  evaluate_think $copy $out
  [ -s $out/demo_seeds.txt ] || $PYTHON experiments/scripts/demo_seeds.py $copy 16 > $out/demo_seeds.txt
  # a second seed of think-mode reasoning, re-encoded and in context (and composition for the shipped model)
  suites="reasoning"; [ $name = shipped ] && suites="reasoning composition"
  for suite in $suites; do
    for way in reencode:$copy in-context:$model; do
      complete $out/seed1/${way%%:*}-$suite-think || $THINKGEN eval --suite $suite --model ${way#*:} --think \
        --seed 1 --n-per-prompt 4 --n-items 120 --out $out/seed1/${way%%:*}-$suite-think --overwrite > /dev/null
    done
  done
done
# the recipe with a plain stage 7 (no think-mode states: session 13's dit_continue_finetune.yaml,
# fp32), re-encoded: a recipe-compatible re-encoding model; its direct mode is results/latent/continue/
P=results/latent/reencode/plain
if [ -f $R/dit_continue_finetune/final/model_index.json ]; then
  reencoded $R/dit_continue_finetune/final runs/reencode/plain
  evaluate_think runs/reencode/plain $P
  complete $P/seed1/reasoning-no-think || $THINKGEN eval --suite reasoning --model runs/reencode/plain --no-think \
    --seed 1 --n-per-prompt 4 --n-items 120 --out $P/seed1/reasoning-no-think --overwrite > /dev/null
fi
V=results/v2/shipped_fp16_reencode
for suite in editing composition reasoning; do
  n=4; [ $suite = editing ] && n=1
  complete $V/$suite-think || $THINKGEN eval --suite $suite --model thinkgen/assets/shapeworld_vl --think \
    --n-per-prompt $n --n-items 120 --out $V/$suite-think --overwrite > /dev/null
done
echo "== done ($(date +%T))"
