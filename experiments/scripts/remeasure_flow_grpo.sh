#!/usr/bin/env bash
# Issue 14: Flow-GRPO before and after the step fix, from the same starting point (the embedded
# model), same recipe (rl_variants/dit_flow_grpo_from_embedded.yaml), then both evaluated with
# scripts/eval_shapeworld.sh. The old step is the code of commit 6cd7c12 (the parent of the fix),
# checked out in a temporary worktree. Resumable: rerun to continue. About an hour on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
export HF_HUB_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE
ROOT=$PWD
CONFIG=configs/shapeworld/rl_variants/dit_flow_grpo_from_embedded.yaml
NEW=runs/shapeworld/dit_flow_grpo_from_embedded
OLD=runs/shapeworld/dit_flow_grpo_from_embedded_oldstep
if [ ! -f $NEW/final/.done ]; then
  echo "== fixed step $(date +%T)"; .venv/bin/thinkgen train $CONFIG --resume; touch $NEW/final/.done
fi
if [ ! -f $OLD/final/.done ]; then
  echo "== step before the fix $(date +%T)"
  WORKTREE=$(mktemp -d)
  git worktree add --detach "$WORKTREE" 6cd7c12 > /dev/null
  sed -e "s|^output_dir: .*|output_dir: $ROOT/$OLD|" -e "s|^init: .*|init: $ROOT/thinkgen/assets/shapeworld|" \
    $CONFIG > "$WORKTREE/old.yaml"
  (cd "$WORKTREE" && PYTHONPATH="$WORKTREE" "$ROOT/.venv/bin/python" -m thinkgen.cli train old.yaml --resume)
  git worktree remove --force "$WORKTREE"
  touch $OLD/final/.done
fi
for run in $NEW $OLD; do
  out=results/remeasure/$(basename $run)
  [ -f $out/reasoning-no-think/scores.json ] && continue
  echo "== eval $run $(date +%T)"; scripts/eval_shapeworld.sh $run/final $out
done
echo "== done $(date +%T)"
