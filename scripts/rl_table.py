"""The README's RL tables from results/ (written by scripts/rl_shapeworld.sh).

    python scripts/rl_table.py
"""

from __future__ import annotations

import json
from pathlib import Path

ROWS = [("SFT only (embedded model)", "results/shapeworld/{suite}-think"),
        ("+ thinker GRPO (stage 4)", "results/rl/thinker_grpo/{suite}"),
        ("+ DiT Flow-GRPO = SepGRPO (stage 4 + 5)", "results/rl/sep_grpo/{suite}"),
        ("Dual-GRPO", "results/rl/dual_grpo/{suite}")]


def load(pattern: str, suite: str) -> dict | None:
    path = Path(pattern.format(suite=suite)) / "scores.json"
    return json.loads(path.read_text()) if path.exists() else None


def main() -> None:
    print("| model (think mode) | reasoning: held-out facts | reasoning: supervised facts | reasoning: all "
          "| composition |\n|---|---|---|---|---|")
    for name, pattern in ROWS:
        r, c = load(pattern, "reasoning"), load(pattern, "composition")
        cells = [f"{r['held_out']['overall']:.3f}", f"{r['supervised']['overall']:.3f}", f"{r['overall']:.3f}"] \
            if r else ["-"] * 3
        cells.append(f"{c['overall']:.3f}" if c else "-")
        print(f"| {name} | " + " | ".join(cells) + " |")
    c = load(ROWS[0][1], "composition")
    if c:
        print("\n| composition tag | " + " | ".join(n for n, _ in ROWS) + " |")
        print("|---" * (len(ROWS) + 1) + "|")
        for tag in c["categories"]:
            values = [load(p, "composition") for _, p in ROWS]
            print(f"| {tag} | " + " | ".join(f"{v['categories'][tag]:.3f}" if v else "-" for v in values) + " |")


if __name__ == "__main__":
    main()
