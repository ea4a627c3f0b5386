"""How far RL moved what the DiT reads: the relative squared drift of the thinker's conditioning
states (the rewrite span's last layers), trained vs reference thinker, on the same tokens.

    python experiments/scripts/state_drift.py runs/shapeworld/thinker_grpo/final [--reference runs/shapeworld/sft]

The trained thinker writes (think mode, greedy) for 16 test prompts per suite; both thinkers then
read those sequences teacher-forced. The same quantity as the ``thinker/state_drift`` metric that
``rl.state_beta`` weights.
"""

from __future__ import annotations

import argparse

import torch

from thinkgen import ThinkGenPipeline
from thinkgen.hidden_states import capture_last_layers
from thinkgen.rl.grpo import completion_logprobs
from thinkgen.train.rl_stage import conditioning_states, relative_drift
from thinkgen.world import suites


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("--reference", default="runs/shapeworld/sft")
    parser.add_argument("--n", type=int, default=16)
    args = parser.parse_args()
    trained = ThinkGenPipeline.from_pretrained(args.model, torch_dtype=torch.float32).thinker
    reference = ThinkGenPipeline.from_pretrained(args.reference, torch_dtype=torch.float32).thinker
    for suite in ("reasoning", "composition"):
        items = suites.build(suite, args.n, "test")
        thought = trained.encode([item.prompt for item in items], think=True)
        states = []
        for thinker in (trained, reference):
            with torch.no_grad(), capture_last_layers(thinker.model, thinker.config.num_layers) as records:
                completion_logprobs(thinker.model, thought.sequences, thought.prompt_lengths, thinker.pad_id)
            states.append(conditioning_states(records, thought.sequences, thought.prompt_lengths, thinker))
        print(f"{suite}: relative state drift {float(relative_drift(*states)):.2e}")


if __name__ == "__main__":
    main()
