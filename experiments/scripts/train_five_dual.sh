#!/usr/bin/env bash
# Dual-GRPO over the five scenarios on the five-scenario model (experiments/configs/shapeworld/five/5_dual_grpo.yaml,
# 60 steps, 19 minutes on 2 cores), then every suite into results/five/dual/ (the protocol of
# results/five/sft/, which experiments/scripts/train_five.sh writes first). Resumable: rerun after an interruption.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE
source scripts/stages.sh
require_runs experiments/scripts/train_five.sh runs/shapeworld/five/dit_finetune/final
run_stage experiments/configs/shapeworld/five/5_dual_grpo.yaml
echo "== evaluations after Dual-GRPO ($(date +%T))"
evaluate_five_suites runs/shapeworld/five/dual_grpo/final results/five/dual
echo "== done ($(date +%T))"
