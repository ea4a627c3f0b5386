"""Set the static shift of a pipeline folder's saved scheduler (``scheduler/scheduler_config.json``),
so that the folder samples with it: how the sampler-shift probes of docs/dit_experiments.md were made.

    python experiments/scripts/set_scheduler_shift.py PIPELINE_DIR SHIFT
"""

from __future__ import annotations

import sys
from pathlib import Path

from diffusers import FlowMatchEulerDiscreteScheduler


def main(folder: str, shift: str) -> None:
    path = Path(folder) / "scheduler"
    scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(path)
    scheduler.register_to_config(shift=float(shift))
    scheduler.save_pretrained(path)
    print(f"{path}: shift {scheduler.config.shift}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
