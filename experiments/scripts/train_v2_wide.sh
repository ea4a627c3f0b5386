#!/usr/bin/env bash
# Embedded model v2 with the wide DiT (width 192; docs/dit_experiments.md): the v2 recipe's DiT
# stages on the same frozen thinker that sees (runs/shapeworld/v2/thinker_sft, from
# experiments/scripts/train_v2.sh), then the v2 evaluations (composition, reasoning, editing: think and
# direct; reflection verdicts) into results/v2_wide/. Each stage resumes from its newest
# checkpoint and finished evaluations are skipped: rerun the script after an interruption.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE
source scripts/stages.sh
[ -f runs/shapeworld/v2/thinker_sft/final/.done ] || { echo "error: run experiments/scripts/train_v2.sh first (the thinker)"; exit 1; }
run_stage configs/shapeworld/0_autoencoder.yaml
run_stage experiments/configs/shapeworld/v2_wide/3_dit_pretrain.yaml
run_stage experiments/configs/shapeworld/v2_wide/4_dit_finetune.yaml
echo "== evaluations ($(date +%T))"
evaluate_suites runs/shapeworld/v2_wide/dit_finetune/final results/v2_wide
echo "== done ($(date +%T))"
