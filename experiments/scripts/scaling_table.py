"""How the embedded model's scores grow with DiT training, and what the composition goal would cost.

    python experiments/scripts/scaling_table.py [results]

The latent recipe's DiT and its continuations, all on the final (RL) thinker, by the DiT steps
behind each (batch 32): stages 3-4 (10,000), + stages 6-7 (14,000, the shipped model), + stages
6-7 again (21,000, sessions 19-20), + a third cycle (28,000, session 21). Each row is read from
its eval folder (README protocol: test splits, 120 items x 4 images); a missing or unfinished
folder is left out and named on stderr. The fit is least squares of score against log2(steps)
over the rows marked "fit" (one per step count: the replaying chain where there is one); the
extrapolation assumes the trend holds, which the table can only test where it has rows.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from thinkgen.eval.shapeworld import is_complete

# (label, cumulative DiT steps, eval folder under results/, used in the fit)
CHAIN = [
    ("recipe to stage 5 (stages 3-4)", 10_000, "latent/direct_anchor", True),
    ("shipped (stages 3-7)", 14_000, "latent/final", True),
    ("+ stages 6-7 again (session 19)", 21_000, "latent/long_continue", False),
    ("+ stages 6-7 again, replaying riddles (session 20)", 21_000, "latent/long_replay_right", True),
    ("+ a third cycle, replaying riddles (session 21)", 28_000, "latent/longer_replay", True),
]
STEPS_PER_MINUTE = 6_000 / 42.4  # compiled stage 6, batch 32, 2 cores: dit_long_replay.yaml (session 20)
GOAL = 0.80
COLUMNS = [("composition-think", None), ("composition-no-think", None), ("composition-think", "counting"),
           ("composition-think", "position"), ("composition-think", "color_attr"), ("reasoning-think", None),
           ("reasoning-no-think", None)]


def score(folder: Path, run: str, tag: str | None) -> float | None:
    if not is_complete(folder / run):
        return None
    data = json.loads((folder / run / "scores.json").read_text())
    return data["overall"] if tag is None else data["categories"].get(tag)


def trend(steps: list[int], scores: list[float], goal: float = GOAL) -> tuple[float, float, float | None]:
    """Least squares of score against log2(steps): (gain per doubling, largest residual, the steps at
    which the line reaches ``goal``; None when it does not rise)."""
    x = np.log2(np.asarray(steps, dtype=float))
    y = np.asarray(scores, dtype=float)
    slope, intercept = np.polyfit(x, y, 1)
    residual = float(np.max(np.abs(y - (slope * x + intercept))))
    return float(slope), residual, (float(2 ** ((goal - intercept) / slope)) if slope > 0 else None)


def main(results: Path) -> None:
    rows = []
    for label, steps, folder, fit in CHAIN:
        values = [score(results / folder, run, tag) for run, tag in COLUMNS]
        if any(v is None for v in values):
            print(f"not measured: {results / folder}", file=sys.stderr)
            continue
        rows.append((label, steps, values, fit))
    print("| model | DiT steps | composition think | direct | counting | position | color_attr | reasoning think | direct |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, steps, values, _ in rows:
        print(f"| {label} | {steps:,} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    fitted = [(steps, values) for _, steps, values, fit in rows if fit]
    if len(fitted) < 2:
        return
    print()
    for index, name in ((0, "composition, think"), (1, "composition, direct")):
        slope, residual, needed = trend([steps for steps, _ in fitted], [values[index] for _, values in fitted])
        line = f"{name}: {slope:+.3f} per doubling of DiT steps (largest residual {residual:.3f})"
        if needed is not None:
            line += (f"; {GOAL:.2f} at about {needed:,.0f} steps if the trend held, "
                     f"{needed / STEPS_PER_MINUTE / 60:.1f} h of DiT training on 2 cores "
                     f"(the recipe trains its DiT {14_000 / STEPS_PER_MINUTE / 60:.1f} h)")
        print(line)
    print(f"\nDiT steps per minute: {STEPS_PER_MINUTE:.0f} (measured, session 20)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("results"))
