#!/usr/bin/env bash
# Embedded model v2 (issue 15), from nothing, on CPU: the ShapeWorld autoencoder, a thinker that
# sees (Qwen3-VL class: pretraining with scene descriptions, then SFT with edits and reflection
# verdicts), then the latent DiT on its states (pretrain + multi-object finetune, with edits);
# then the thinker's own scores and the ShapeWorld evaluations into results/v2/; then thinker
# GRPO over four scenarios (5_thinker_grpo) and the same evaluations into results/v2/rl/.
# Each stage resumes from its newest checkpoint and finished evaluations are skipped: rerun the
# script after an interruption.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE
source scripts/stages.sh
evaluate() {  # MODEL OUT: evaluate_suites, then one reflection round on composition
  evaluate_suites "$1" "$2"
  complete "$2/composition-think-reflect1" || $THINKGEN eval --suite composition --model "$1" --think \
    --n-per-prompt 4 --n-items 120 --reflect 1 --out "$2/composition-think-reflect1" --overwrite > /dev/null
}
V=experiments/configs/shapeworld/v2
mkdir -p results/v2
run_stage configs/shapeworld/0_autoencoder.yaml
run_stage $V/1_thinker_pretrain.yaml
run_stage $V/2_thinker_sft.yaml
[ -s results/v2/thinker.txt ] || $PYTHON scripts/eval_thinker.py runs/shapeworld/v2/thinker_sft/final \
  > results/v2/thinker.txt
run_stage $V/3_dit_pretrain.yaml
run_stage $V/4_dit_finetune.yaml
echo "== evaluations ($(date +%T))"
evaluate runs/shapeworld/v2/dit_finetune/final results/v2
run_stage $V/5_thinker_grpo.yaml
echo "== evaluations after RL ($(date +%T))"
mkdir -p results/v2/rl
[ -s results/v2/rl/thinker.txt ] || $PYTHON scripts/eval_thinker.py runs/shapeworld/v2/thinker_grpo/final \
  > results/v2/rl/thinker.txt
evaluate runs/shapeworld/v2/thinker_grpo/final results/v2/rl
echo "== done ($(date +%T))"
