"""Reward and CoT-length curves of RL runs (like ThinkGen's figure 5), from their rollouts.jsonl.

    python scripts/plot_rl.py OUT.png RUN_DIR[=label] [RUN_DIR[=label] ...] [--window 10]

Each run directory holds ``rollouts.jsonl`` (one line per step, written by the RL stages). Runs
chained one after the other (SepGRPO: stage 4 then stage 5) can be given with ``+``:
``runs/a+runs/b=SepGRPO`` plots b's steps after a's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(run: str) -> list[dict]:
    """Steps of one run, or of chained runs joined with '+'; a resumed run's repeats keep the last."""
    rows, offset = [], 0
    for part in run.split("+"):
        by_step = {}
        for line in (Path(part) / "rollouts.jsonl").read_text().splitlines():
            row = json.loads(line)
            by_step[row["step"]] = row
        steps = sorted(by_step)
        rows += [{**by_step[s], "step": s + offset} for s in steps]
        offset += (steps[-1] + 1) if steps else 0
    return rows


def smooth(values: list[float], window: int) -> list[float]:
    out = []
    for i in range(len(values)):
        chunk = [v for v in values[max(0, i - window + 1) : i + 1] if v is not None]
        out.append(sum(chunk) / len(chunk) if chunk else float("nan"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out")
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--window", type=int, default=10)
    args = parser.parse_args()
    figure, (reward_axis, length_axis) = plt.subplots(1, 2, figsize=(10, 3.6))
    for spec in args.runs:
        run, _, label = spec.partition("=")
        rows = read(run)
        steps = [r["step"] for r in rows]
        reward_axis.plot(steps, smooth([r.get("reward") for r in rows], args.window), label=label or run)
        length_axis.plot(steps, smooth([r.get("cot_length") for r in rows], args.window), label=label or run)
    reward_axis.set(xlabel="step", ylabel=f"mean reward (moving average, {args.window} steps)", title="reward")
    length_axis.set(xlabel="step", ylabel="reasoning tokens before </think>", title="CoT length")
    for axis in (reward_axis, length_axis):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
