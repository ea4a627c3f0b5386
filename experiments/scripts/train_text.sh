#!/usr/bin/env bash
# The text suite (docs/dit_experiments.md, "Text rendering"), from nothing, about 75 minutes on 2
# cores: a 64 px autoencoder with half of its scenes words (30 min), a latent DiT on the text
# suite's train words (dit.patch 2: 8 x 8 tokens; 4,000 steps, 26 min) conditioned on the
# embedded model's frozen thinker, then Flow-GRPO on it with the text reward, and the text suite
# after RL (120 test words x 4 images, direct mode) into results/text/. Each stage resumes and
# finished evaluations are skipped: rerun the script after an interruption.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE
source scripts/stages.sh
run_stage experiments/configs/shapeworld/experiments/autoencoder_text64.yaml
complete results/dit_experiments/text_latent64_raw || SUITE=text experiments/scripts/dit_experiment.sh \
  text_latent64 4000 --set dit.resolution=64 --set dit.patch=2 \
  --set dit.autoencoder=runs/shapeworld/autoencoder_text64/final --set data.text_fraction=1.0 --set run.compile=true
run_stage experiments/configs/shapeworld/experiments/text_flow_grpo.yaml
echo "== evaluation ($(date +%T))"  # before RL: results/dit_experiments/text_latent64_raw, same protocol
complete results/text/flow_grpo || $THINKGEN eval --suite text --model runs/shapeworld/text_flow_grpo/final \
  --no-think --n-per-prompt 4 --n-items 120 --out results/text/flow_grpo --overwrite > /dev/null
echo "== done ($(date +%T))"
