"""Ctrl-C against a real `thinkgen train` process, N rounds (issue 44's goal: honoured 10 of 10).

    python experiments/scripts/ctrl_c_rounds.py [--rounds 10]

Each round trains a tiny random pipeline (a checkpoint every step, so a Ctrl-C often lands in a
save), sends SIGINT at a random moment after the first checkpoint, and in every second round a
second SIGINT 50 ms later. A round is honoured when the process exits 130 within 60 s, says
"interrupted at step", and leaves a complete newest checkpoint.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from thinkgen.train.loop import is_complete, latest_checkpoint

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    thinkgen = str(Path(sys.executable).parent / "thinkgen")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    rng = random.Random(0)
    honoured = 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        subprocess.run([thinkgen, "init", str(root / "tiny")], check=True, capture_output=True, env=env)
        for round_number in range(args.rounds):
            out = root / f"run{round_number}"
            config = {"stage": "dit_pretrain", "output_dir": str(out), "init": str(root / "tiny"),
                      "run": {"steps": 100000, "batch_size": 2, "save_every": 1, "keep_last": 2},
                      "data": {"cache_size": 4}}
            path = root / f"c{round_number}.yaml"
            path.write_text(yaml.safe_dump(config))
            process = subprocess.Popen([thinkgen, "train", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       text=True, env=env)
            deadline = time.monotonic() + 120
            while not list((out / "checkpoints").glob("step-*")) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(rng.uniform(0, 0.5))
            twice = round_number % 2 == 1
            process.send_signal(signal.SIGINT)
            if twice:
                time.sleep(0.05)
                process.send_signal(signal.SIGINT)
            try:
                output, _ = process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                output, _ = process.communicate()
            newest = latest_checkpoint(out / "checkpoints", warn=lambda message: None)
            ok = (process.returncode == 130 and "interrupted at step" in output
                  and newest is not None and is_complete(newest))
            honoured += ok
            print(f"round {round_number + 1}: {'twice' if twice else 'once '} exit {process.returncode}, "
                  f"newest {newest.name if newest else None}: {'honoured' if ok else 'NOT honoured'}", flush=True)
    print(f"honoured {honoured} of {args.rounds}")


if __name__ == "__main__":
    main()
