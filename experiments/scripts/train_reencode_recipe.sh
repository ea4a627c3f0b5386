#!/usr/bin/env bash
# Session 21 (docs/dit_experiments.md, "Session 21"): a stage 7 for a re-encoding embedded model
# that fits the 3-hour recipe. The stage-6 model (runs/shapeworld/latent/dit_continue/final) draws 600
# train riddles x 4 in direct mode (about 6 min); the plain multi-object finetune replays them
# (dit_continue_replay_finetune.yaml, about 8 min, in place of stage 7); scored with think mode
# re-encoded (thinkgen-reencode) and direct mode as it is, into results/latent/reencode/replay/.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
source scripts/stages.sh
R=runs/shapeworld/latent
require_runs scripts/train_shapeworld_latent.sh $R/dit_continue/final
D=runs/replay/stage6_reasoning_train_direct_600
complete $D || $THINKGEN eval --suite reasoning --model $R/dit_continue/final --no-think --split train \
  --n-per-prompt 4 --n-items 600 --out $D --overwrite > /dev/null
run_stage experiments/configs/shapeworld/latent/experiments/dit_continue_replay_finetune.yaml
M=$R/dit_continue_replay_finetune/final
reencoded $M runs/reencode/replay
O=results/latent/reencode/replay
for suite in composition reasoning; do
  complete $O/$suite-think || $THINKGEN eval --suite $suite --model runs/reencode/replay --think \
    --n-per-prompt 4 --n-items 120 --out $O/$suite-think --overwrite > /dev/null
  complete $O/$suite-no-think || $THINKGEN eval --suite $suite --model $M --no-think \
    --n-per-prompt 4 --n-items 120 --out $O/$suite-no-think --overwrite > /dev/null
done
echo "== done ($(date +%T))"
