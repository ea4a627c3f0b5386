#!/usr/bin/env bash
# the embedded model's generate, beside two busy processes, threads spinning (ACTIVE) vs sleeping (default now)
cd /work/main
python3 -c "while True: pass" & B1=$!
python3 -c "while True: pass" & B2=$!
for rep in 1 2 3 4 5 6; do
  for policy in ACTIVE default; do
    if [ $policy = ACTIVE ]; then export OMP_WAIT_POLICY=ACTIVE; else unset OMP_WAIT_POLICY; fi
    start=$(date +%s.%N)
    .venv/bin/thinkgen generate "a red circle" -o /tmp/busy.png --seed $rep > /tmp/busy.out 2> /tmp/busy.err
    end=$(date +%s.%N)
    rate=$(tr '\r' '\n' < /tmp/busy.err | grep -o "[0-9.]*\(it/s\|s/it\)" | tail -1)
    echo "$rep $policy wall $(echo "$end - $start" | bc) s, sampling $rate"
  done
done
kill $B1 $B2
