#!/usr/bin/env bash
# Issue 14: re-run the README's Flow-GRPO rows that start from the 300-step stage 4 (SepGRPO v1,
# early window, 6_dit_flow_grpo) and Dual-GRPO with the corrected SDE step, log-prob and KL.
# They start from the SFT model those rows were measured from. That model is the embedded model
# of commit af1182a (exported in fp16 from stages 1-4), so it is taken from git history rather than
# retrained (stages 1-4 with today's code would give a different model). The earlier results move
# to results/rl_before_step_fix/ (`git mv`, done by hand once) so both stay side by side.
# Resumable: finished runs and evaluations are skipped. About 115 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE
source scripts/stages.sh
if [ ! -f runs/shapeworld/sft/model_index.json ]; then
  echo "== the SFT model from git history (af1182a:thinkgen/assets/shapeworld) -> runs/shapeworld/sft"
  tmp=$(mktemp -d)
  git archive af1182a thinkgen/assets/shapeworld | tar -x -C "$tmp"
  mkdir -p runs/shapeworld
  mv "$tmp/thinkgen/assets/shapeworld" runs/shapeworld/sft
  rm -rf "$tmp"
fi
# a reproduction check first: the restored SFT model on composition (README: 0.342)
complete results/remeasure_sep/sft_composition || $THINKGEN eval --suite composition --model runs/shapeworld/sft \
  --think --n-per-prompt 4 --n-items 120 --out results/remeasure_sep/sft_composition --overwrite > /dev/null
V=configs/shapeworld/rl_variants
train_unless_final configs/shapeworld/5_thinker_grpo.yaml
evaluate_rl runs/shapeworld/thinker_grpo/final results/remeasure_sep/thinker_grpo  # README: 0.464 / 0.321
for config in configs/shapeworld/6_dit_flow_grpo.yaml $V/dit_flow_grpo_v1.yaml $V/dit_flow_grpo_early.yaml \
              configs/shapeworld/7_dual_grpo.yaml; do
  train_unless_final $config
done
evaluate_rl runs/shapeworld/dit_flow_grpo/final results/rl/sep_grpo
evaluate_rl runs/shapeworld/dit_flow_grpo_v1/final results/rl/sep_grpo_v1
evaluate_rl runs/shapeworld/dit_flow_grpo_early/final results/rl/sep_grpo_early
evaluate_rl runs/shapeworld/dual_grpo/final results/rl/dual_grpo direct
echo "== done $(date +%T)"
