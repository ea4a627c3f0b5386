#!/usr/bin/env bash
# The session-13 and 14 DiT experiments on the latent recipe (docs/dit_experiments.md, "Continuing the
# shipped DiT"), each scored as the README tables are into results/latent/<name>/:
#   continue                   stage 6, then the plain multi-object finetune
#   continue_think_states      stage 6, then stage 7 (the finetune with think-mode states: shipped)
#   continue_captions_held_out stage 6 and the plain finetune with the test's statements held out of
#                              the captions only (data.held_out: captions)
#   continue_relations         stage 6, then stage 7 on relation scenes only
#   relations_finetune         stage 7's finetune on relation scenes, after stage 7
# and session 14's:
#   continue_multi_relations   stage 6, then stage 7 with every other scene a relation scene
#   continue_think_states_seed2  stage 7 again with another seed (how far two runs differ)
#   continue_relations_seed2   stage 7 on relation scenes with another seed
#   continue_relations_counting  stage 7 on relation scenes and one-shape counting scenes
# and session 17's:
#   continue_shift3            stage 7 with training sigmas shifted towards noise (data.timestep_shift 3),
#                              sampled with the scheduler's shift 1 and (continue_shift3_sampled3) 3
# Needs the recipe's stage-5 export (scripts/train_shapeworld_latent.sh writes it); the session-13
# runs read its copy that was shipped then.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
source scripts/stages.sh
L=configs/shapeworld/latent
E=$L/experiments
R=runs/shapeworld/latent
[ -f $R/final_direct_anchor/model_index.json ] || \
  { echo "error: $R/final_direct_anchor is missing: run scripts/train_shapeworld_latent.sh first" >&2; exit 1; }
evaluate() { complete "results/latent/$2/reasoning-no-think" || scripts/eval_shapeworld.sh "$1" "results/latent/$2"; }
run_stage $L/6_dit_continue.yaml
run_stage $E/dit_continue_finetune.yaml
evaluate $R/dit_continue_finetune/final continue
run_stage $L/7_dit_finetune.yaml
evaluate $R/dit_continue_finetune_think_states/final continue_think_states
run_stage $E/dit_continue_captions_held_out.yaml
run_stage $E/dit_continue_captions_held_out_finetune.yaml
evaluate $R/dit_continue_captions_held_out_finetune/final continue_captions_held_out
run_stage $E/dit_continue_relations_finetune.yaml
evaluate $R/dit_continue_relations_finetune/final continue_relations
[ -f $R/final/model_index.json ] || \
  $PYTHON scripts/export_embedded.py $R/dit_continue_finetune_think_states/final $R/final
run_stage $E/dit_relations_finetune.yaml
evaluate $R/dit_relations_finetune/final relations_finetune
run_stage $E/dit_continue_multi_relations_finetune.yaml
evaluate $R/dit_continue_multi_relations_finetune/final continue_multi_relations
run_stage $E/dit_continue_finetune_think_states_seed2.yaml
evaluate $R/dit_continue_finetune_think_states_seed2/final continue_think_states_seed2
run_stage $E/dit_continue_relations_finetune_seed2.yaml
evaluate $R/dit_continue_relations_finetune_seed2/final continue_relations_seed2
run_stage $E/dit_continue_relations_counting_finetune.yaml
evaluate $R/dit_continue_relations_counting_finetune/final continue_relations_counting
run_stage $E/dit_continue_finetune_shift3.yaml
evaluate $R/dit_continue_finetune_shift3/final continue_shift3
# the same weights sampled with the scheduler's shift 3 (a copy of the folder; only the scheduler differs)
[ -f $R/dit_continue_finetune_shift3_sampled3/model_index.json ] || {
  cp -r $R/dit_continue_finetune_shift3/final $R/dit_continue_finetune_shift3_sampled3
  $PYTHON experiments/scripts/set_scheduler_shift.py $R/dit_continue_finetune_shift3_sampled3 3; }
evaluate $R/dit_continue_finetune_shift3_sampled3 continue_shift3_sampled3
echo "== done ($(date +%T))"
