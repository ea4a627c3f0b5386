"""One thinker-GRPO step: thinkgen's ``thinker_grpo`` stage against TRL's ``GRPOTrainer``.

    python benchmarks/bench_grpo.py [--steps 3]      # ~3 minutes on 2 CPU cores

Same tiny thinker (the embedded ShapeWorld model's), same prompts (reasoning ``rl`` split), same
G, temperature, completion budget, KL weight and reward: the frozen DiT draws every completion
from its prompt's noise and the ShapeWorld rule scores the image. TRL's reward closure only gets
text, so it re-encodes the rewrite (after ``</think>``) with the thinker to condition the DiT;
thinkgen reuses the states captured while generating. Each side runs one warm-up step, then
``--steps`` timed steps (generation + reward + loss + optimizer step); the medians are compared.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from thinkgen.flow import euler_sample  # noqa: E402
from thinkgen.pipeline import ThinkGenPipeline, _to_pil  # noqa: E402
from thinkgen.rewards import get_reward  # noqa: E402
from thinkgen.train import config as C  # noqa: E402
from thinkgen.train.loop import train  # noqa: E402
from thinkgen.train.rl_stage import RLStage  # noqa: E402
from thinkgen.world import suites  # noqa: E402

EMBEDDED = Path(__file__).resolve().parents[1] / "thinkgen" / "assets" / "shapeworld"


class StepTimer(TrainerCallback):
    """Wall time of each TRL optimizer step."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.last = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs) -> None:
        now = time.perf_counter()
        self.times.append(now - self.last)
        self.last = now


def ours(args, out: Path) -> list[float]:
    config = C.from_dict({
        "stage": "thinker_grpo", "output_dir": str(out), "init": str(EMBEDDED),
        "optim": {"lr": 1e-5, "warmup_steps": 1, "schedule": "constant"},
        "run": {"steps": args.steps + 2, "batch_size": args.prompts, "log_every": 1, "save_every": 10_000},
        "rl": {"scenarios": {"reasoning": 1.0}, "rewards": {"shapeworld": 1.0}, "num_generations": args.G,
               "beta": args.beta, "render_steps": args.render_steps, "guidance_scale": 1.0},
    })
    stage = RLStage(config)
    stamps: list[float] = []
    original = stage.batch

    def timed(step, start, size):  # from one rollout to the next = rollouts + loss + optimizer step
        stamps.append(time.perf_counter())
        return original(step, start, size)

    stage.batch = timed
    train(config, stage, progress=False)
    return [b - a for a, b in zip(stamps[:-1], stamps[1:], strict=True)]


def trl_run(args, out: Path) -> list[float]:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    pipe = ThinkGenPipeline.from_pretrained(EMBEDDED, torch_dtype=torch.float32)
    thinker = pipe.thinker
    items = suites.build("reasoning", 64, "rl")
    rule = get_reward("shapeworld")

    def render_reward(prompts, completions, item_index, **kwargs):
        texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
        rewrites = [t.split(thinker.config.think_close, 1)[-1].replace(thinker.end_token, "").strip() for t in texts]
        with torch.no_grad():
            thought = thinker.encode(rewrites, think=False)  # text only: the rewrite is encoded again
            text, mask = pipe.bridge(thought.states, thought.mask)
            grid = pipe.token_grid(32, 32)
            noise = pipe.initial_noise([int(i) for i in item_index], 32, 32)  # same noise per prompt
            x = euler_sample(pipe.guided_velocity(text, mask, grid, cfg=1.0), noise, pipe.sigmas(args.render_steps, grid))
        images = _to_pil(pipe.decode(x, 32, 32))
        return rule([items[int(i)] for i in item_index], images, rewrites)

    system = thinker.config.system_prompt
    data = Dataset.from_dict({
        "prompt": [[{"role": "system", "content": system}, {"role": "user", "content": item.prompt}] for item in items],
        "item_index": list(range(len(items))),
    })
    budget = thinker.config.max_think_tokens + thinker.config.max_rewrite_tokens + 3
    config = GRPOConfig(
        output_dir=str(out), per_device_train_batch_size=args.prompts * args.G, num_generations=args.G,
        max_completion_length=budget, temperature=1.0, beta=args.beta, learning_rate=1e-5,
        max_steps=args.steps + 1, logging_steps=1000, save_strategy="no", report_to=[], use_cpu=True,
        bf16=False, seed=0, shuffle_dataset=False, disable_tqdm=True,
    )
    timer = StepTimer()
    trainer = GRPOTrainer(model=thinker.model, reward_funcs=render_reward, args=config, train_dataset=data,
                          processing_class=thinker.tokenizer, callbacks=[timer])
    timer.last = time.perf_counter()
    trainer.train()
    return timer.times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--G", type=int, default=8)
    parser.add_argument("--beta", type=float, default=0.01)
    parser.add_argument("--render-steps", type=int, default=10)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        ours_times = ours(args, Path(tmp) / "ours")[1:]  # drop the warm-up step
        trl_times = trl_run(args, Path(tmp) / "trl")[1:]
    a, b = statistics.median(ours_times), statistics.median(trl_times)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}")
    print(f"{args.prompts} prompts x G={args.G}, {args.render_steps} render steps, beta {args.beta}")
    print(f"thinkgen thinker_grpo: {a:.2f} s/step  (steps: {', '.join(f'{t:.2f}' for t in ours_times)})")
    print(f"TRL GRPOTrainer:       {b:.2f} s/step  (steps: {', '.join(f'{t:.2f}' for t in trl_times)})")
    print(f"ratio TRL / thinkgen: {b / a:.2f}x")


if __name__ == "__main__":
    main()
