"""The README's RL tables from results/ (written by scripts/rl_shapeworld.sh and eval_shapeworld.sh),
as first measured (with the parser's square rule before 2026-11-30).

    python scripts/rl_table.py
"""

from __future__ import annotations

import json
from pathlib import Path

ROWS = [("SFT only (runs/shapeworld/sft)", "results/shapeworld_sft/{suite}-think"),
        ("+ thinker GRPO, 300 steps (stage 4)", "results/rl/thinker_grpo/{suite}"),
        ("+ thinker GRPO, 600 steps", "results/rl/thinker_grpo_600/{suite}"),
        ("+ thinker GRPO, 300 steps, state anchor", "results/rl/thinker_grpo_anchor/{suite}"),
        ("+ thinker GRPO, 600 steps, state anchor", "results/rl/thinker_grpo_anchor_600/{suite}"),
        ("SepGRPO: 300-step stage 4 + Flow-GRPO v1", "results/rl/sep_grpo_v1/{suite}"),
        ("SepGRPO: + Flow-GRPO early window", "results/rl/sep_grpo_early/{suite}"),
        ("SepGRPO: + Flow-GRPO (6_dit_flow_grpo)", "results/rl/sep_grpo/{suite}"),
        ("SepGRPO: anchored 600-step stage 4 + Flow-GRPO = embedded model", "results/shapeworld/{suite}-think"),
        ("Dual-GRPO", "results/rl/dual_grpo/{suite}")]

# candidates for the embedded model: think and direct mode on both suites
CANDIDATES = [("SFT only", "results/shapeworld_sft/{suite}-think", "results/shapeworld_sft/{suite}-no-think"),
              ("thinker GRPO 300, state anchor", "results/rl/thinker_grpo_anchor/{suite}",
               "results/rl/thinker_grpo_anchor/{suite}-direct"),
              ("thinker GRPO 600, state anchor", "results/rl/thinker_grpo_anchor_600/{suite}",
               "results/rl/thinker_grpo_anchor_600/{suite}-direct"),
              ("SepGRPO: anchored 600 + Flow-GRPO (embedded)", "results/shapeworld/{suite}-think",
               "results/shapeworld/{suite}-no-think"),
              ("Dual-GRPO", "results/rl/dual_grpo/{suite}", "results/rl/dual_grpo/{suite}-direct")]


# the rows measured again after the Flow-GRPO step fix (experiments/scripts/remeasure_sep_grpo.sh): the
# results from before the fix moved to results/rl_before_step_fix/
REMEASURED = [("SepGRPO: 300-step stage 4 + Flow-GRPO v1", "sep_grpo_v1"),
              ("SepGRPO: + Flow-GRPO early window", "sep_grpo_early"),
              ("SepGRPO: + Flow-GRPO (6_dit_flow_grpo)", "sep_grpo"),
              ("Dual-GRPO", "dual_grpo")]


def load(pattern: str, suite: str) -> dict | None:
    """A folder's scores as first measured: these tables were made with the parser's old square
    rule, and folders rescored since (thinkgen rescore) keep those scores under before_rescore.
    docs/parser_rescore.md has the rescored values."""
    path = Path(pattern.format(suite=suite)) / "scores.json"
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    return {**summary, **summary.get("before_rescore", {})}


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
        tags = list(c["categories"])
        print("\n| composition tags | " + " | ".join(tags) + " |\n" + "|---" * (len(tags) + 1) + "|")
        for name, pattern in ROWS:
            v = load(pattern, "composition")
            if v:
                print(f"| {name} | " + " | ".join(f"{v['categories'][t]:.3f}" for t in tags) + " |")
    print("\n| candidate | composition think | composition direct | reasoning think | reasoning direct |\n"
          "|---|---|---|---|---|")
    for name, think, direct in CANDIDATES:
        cells = []
        for suite in ("composition", "reasoning"):
            for pattern in (think, direct):
                v = load(pattern, suite)
                cells.append(f"{v['overall']:.3f}" if v else "-")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\n| Flow-GRPO step: before the fix -> corrected | reasoning think | composition think |\n|---|---|---|")
    for name, run in REMEASURED:
        cells = []
        for suite in ("reasoning", "composition"):
            old, new = load(f"results/rl_before_step_fix/{run}/{{suite}}", suite), load(f"results/rl/{run}/{{suite}}", suite)
            cells.append(f"{old['overall']:.3f} -> {new['overall']:.3f}" if old and new else "-")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
