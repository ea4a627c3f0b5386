# Sourced by the training scripts: run_stage CONFIG trains one stage unless its final/.done marker
# exists, resuming from its newest checkpoint, then writes the marker.
run_stage() {
  local out
  out=$(grep '^output_dir:' "$1" | awk '{print $2}')
  if [ -f "$out/final/.done" ]; then echo "== $1: done already"; return; fi
  echo "== $1 ($(date +%T))"
  $THINKGEN train "$1" --resume
  touch "$out/final/.done"
}
