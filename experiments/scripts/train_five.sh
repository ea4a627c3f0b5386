#!/usr/bin/env bash
# A five-scenario model (issue 15, item 6), about 2 hours on 2 cores (116 min measured): the seeing
# thinker taught to copy words and to see 64 px images, a 64 px latent DiT that draws scenes, edits
# and words on it, then thinker GRPO mixing all five of ThinkGen's stage-4 scenarios (composition,
# reasoning, text, editing, reflection), each suite scored before and after RL into
# results/five/{sft,rl}/ (experiments/configs/shapeworld/five/). Needs the 64 px text autoencoder
# (experiments/configs/shapeworld/experiments/autoencoder_text64.yaml, 30 min; trained here if missing).
# Each stage resumes and finished evaluations are skipped: rerun after an interruption.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE
source scripts/stages.sh
F=experiments/configs/shapeworld/five
mkdir -p results/five
run_stage experiments/configs/shapeworld/experiments/autoencoder_text64.yaml
run_stage $F/1_thinker_sft.yaml
run_stage $F/2_dit_pretrain.yaml
run_stage $F/3_dit_finetune.yaml
echo "== evaluations before RL ($(date +%T))"
evaluate_five_suites runs/shapeworld/five/dit_finetune/final results/five/sft
run_stage $F/4_thinker_grpo.yaml
echo "== evaluations after RL ($(date +%T))"
evaluate_five_suites runs/shapeworld/five/thinker_grpo/final results/five/rl
echo "== done ($(date +%T))"
