#!/usr/bin/env bash
# The text suite in think mode (docs/dit_experiments.md, "Text rendering"), about 60 minutes (88 with the baseline) on 2
# cores: the 64 px text autoencoder (shared with experiments/scripts/train_text.sh), the embedded thinker taught
# to copy words (text_thinker_sft_v2.yaml), then the text DiT of experiments/scripts/train_text.sh on that
# thinker with half of its captions' states read in think mode (data.think_states 0.5, as the latent
# recipe's stage 7), scored in direct and think mode (raw weights: results/dit_experiments/
# text_latent64_think_states_raw{,_think}), and the same DiT without them (text_latent64_v2_thinker,
# 29 min more; wall times measured here). Resumable: rerun after an interruption.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE
source scripts/stages.sh
run_stage experiments/configs/shapeworld/experiments/autoencoder_text64.yaml
run_stage experiments/configs/shapeworld/experiments/text_thinker_sft_v2.yaml
[ -s results/text/thinker_sft_v2.txt ] || \
  { $PYTHON scripts/eval_thinker.py runs/shapeworld/text_thinker_sft_v2/final > results/text/thinker_sft_v2.tmp && \
    mv results/text/thinker_sft_v2.tmp results/text/thinker_sft_v2.txt; }
complete results/dit_experiments/text_latent64_think_states_raw || SUITE=text experiments/scripts/dit_experiment.sh \
  text_latent64_think_states 4000 --set dit.resolution=64 --set dit.patch=2 \
  --set dit.autoencoder=runs/shapeworld/autoencoder_text64/final --set data.text_fraction=1.0 --set run.compile=true \
  --set thinker_dir=runs/shapeworld/text_thinker_sft_v2/final --set data.think_states=0.5
# the same DiT without think-mode states (the baseline: which of the thinker and the states did it)
complete results/dit_experiments/text_latent64_v2_thinker_raw || SUITE=text experiments/scripts/dit_experiment.sh \
  text_latent64_v2_thinker 4000 --set dit.resolution=64 --set dit.patch=2 \
  --set dit.autoencoder=runs/shapeworld/autoencoder_text64/final --set data.text_fraction=1.0 --set run.compile=true \
  --set thinker_dir=runs/shapeworld/text_thinker_sft_v2/final
for name in text_latent64_think_states text_latent64_v2_thinker; do
  out=results/dit_experiments/${name}_raw_think
  complete $out || $THINKGEN eval --suite text --model runs/dit_experiments/$name/final_raw \
    --think --n-per-prompt 4 --n-items 120 --out $out --overwrite > /dev/null
done
echo "== done ($(date +%T))"
