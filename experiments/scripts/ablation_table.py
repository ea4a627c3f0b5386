"""The README's ablation table from results/ablations (written by experiments/scripts/ablate_shapeworld.sh).

    python experiments/scripts/ablation_table.py

Besides the benchmark scores it reports each variant's training loss, averaged over its last 500
steps (from TensorBoard): a less noisy signal than 480 sampled images at this budget.
"""

from __future__ import annotations

import json
from pathlib import Path

VARIANTS = [("k23_cut_linear", "K = 23, CUT, linear (ThinkGen)"), ("k0_cut_linear", "K = 0 (no prepadding)"),
            ("k23_all_linear", "ALL states instead of CUT"), ("k23_cut_mlp", "MLP connector instead of linear")]


def final_loss(run: Path, last: int = 500) -> float | None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    if "train/loss" not in events.Tags()["scalars"]:
        return None
    scalars = events.Scalars("train/loss")
    end = scalars[-1].step
    values = [s.value for s in scalars if s.step > end - last]
    return sum(values) / len(values)


def main() -> None:
    print("| variant (3,000 DiT steps each) | composition | reasoning (all) | reasoning (supervised) "
          "| reasoning (held-out) | train loss, last 500 steps |\n|---|---|---|---|---|---|")
    for name, label in VARIANTS:
        folder = Path("results/ablations") / name
        if not (folder / "reasoning" / "scores.json").exists():
            print(f"| {label} | - | - | - | - | - |")
            continue
        c = json.loads((folder / "composition" / "scores.json").read_text())
        r = json.loads((folder / "reasoning" / "scores.json").read_text())
        loss = final_loss(Path("runs/ablations") / name)
        loss_text = "-" if loss is None else f"{loss:.4f}"
        print(f"| {label} | {c['overall']:.3f} | {r['overall']:.3f} | {r['supervised']['overall']:.3f} "
              f"| {r['held_out']['overall']:.3f} | {loss_text} |")


if __name__ == "__main__":
    main()
