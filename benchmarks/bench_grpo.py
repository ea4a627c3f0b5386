"""One thinker-GRPO step: thinkgen's ``thinker_grpo`` stage against TRL's ``GRPOTrainer``.

    python benchmarks/bench_grpo.py [--steps 5]      # ~4 minutes on 2 CPU cores

Same tiny thinker (the embedded ShapeWorld model's), same reasoning ``rl`` prompts, same
G, temperature, completion budget, KL weight and reward, and the same prompts step by step, each
drawn from the same noise: the frozen DiT draws every completion from its prompt's noise and the
ShapeWorld rule scores the image. TRL's reward closure only gets
text, so it re-encodes the rewrite (after ``</think>``) with the thinker to condition the DiT;
thinkgen reuses the states captured while generating.

TRL runs twice, with gradient checkpointing off and on (TRL's default is on; thinkgen's is off).
The three trainers run in threads that take turns one step at a time (thinkgen, TRL, TRL with
checkpointing, thinkgen, …), so a change in load hits all three alike; each step (generation +
reward + loss + optimizer step) is timed, the first (warm-up) step dropped, and the medians,
spreads and per-round ratios printed with an idle check. The share of prompt groups whose G
rewards are all equal (no gradient from the reward) is printed for each, from its own logs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import harness  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads)
import torch
from transformers import PrinterCallback, TrainerCallback

from thinkgen.flow import euler_sample
from thinkgen.pipeline import ThinkGenPipeline, to_pil
from thinkgen.rewards import get_reward
from thinkgen.train import config as C
from thinkgen.train.loop import train
from thinkgen.train.rl_stage import RLStage, _seed
from thinkgen.world import suites

SPEED_GOAL = 0.7  # issue 14: a thinkgen step at most 0.7x TRL's, checkpointing off on both
EMBEDDED = Path(__file__).resolve().parents[1] / "thinkgen" / "assets" / "shapeworld"


class Turns:
    """Training loops in threads taking turns one step at a time; each step's wall time is kept."""

    def __init__(self, names: list[str]) -> None:
        self.order, self.turn = list(names), 0
        self.times: dict[str, list[float]] = {name: [] for name in names}
        self.started: dict[str, float] = {}
        self.condition = threading.Condition()

    def begin(self, name: str) -> None:
        """Wait for ``name``'s turn, then start its clock."""
        with self.condition:
            self.condition.wait_for(lambda: self.order[self.turn] == name)
        self.started[name] = time.perf_counter()

    def step_done(self, name: str) -> None:
        """Record the step, hand over to the next loop and wait for the next turn."""
        self.times[name].append(time.perf_counter() - self.started[name])
        with self.condition:
            self.turn = (self.turn + 1) % len(self.order)
            self.condition.notify_all()
        self.begin(name)

    def leave(self, name: str) -> None:
        with self.condition:
            current = self.order[self.turn]
            self.order.remove(name)
            if self.order:
                self.turn = self.order.index(current) if current != name else self.turn % len(self.order)
            self.condition.notify_all()


class TakeTurns(TrainerCallback):
    def __init__(self, turns: Turns, name: str) -> None:
        self.turns, self.name = turns, name

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        self.turns.begin(self.name)

    def on_step_end(self, args, state, control, **kwargs) -> None:
        self.turns.step_done(self.name)


def ours(args, out: Path, turns: Turns, name: str, share_drawings: bool = True):
    """A ready-to-run thinkgen ``thinker_grpo`` loop and its per-step metrics. Without
    ``share_drawings`` every rollout is drawn, even one identical to another of its group."""
    config = C.from_dict({
        "stage": "thinker_grpo", "output_dir": str(out), "init": str(EMBEDDED),
        "optim": {"lr": 1e-5, "warmup_steps": 1, "schedule": "constant"},
        "run": {"steps": args.steps + 2, "batch_size": args.prompts, "log_every": 1, "save_every": 10_000},
        "rl": {"scenarios": {"reasoning": 1.0}, "rewards": {"shapeworld": 1.0}, "num_generations": args.G,
               "beta": args.beta, "render_steps": args.render_steps, "guidance_scale": 1.0},
    })
    stage = RLStage(config)
    if not share_drawings:
        stage._draw_key = lambda *inputs: (object(),)  # never equal to another
    original = stage.batch
    metrics: list[dict[str, float]] = []  # per step, as the rollouts are scored

    def timed(step, start, size):  # called as each step begins: the previous step has ended
        turns.step_done(name) if metrics else turns.begin(name)
        batch = original(step, start, size)
        metrics.append(dict(stage.metrics))
        return batch

    stage.batch = timed
    return (lambda: train(config, stage, progress=False)), metrics, stage


def prompt_schedule(stage: RLStage, steps: int) -> list[tuple[suites.Item, int]]:
    """The (item, noise seed) of every prompt thinkgen's stage draws, step by step: TRL is given
    the same prompts in the same order, drawn from the same noise."""
    seed = stage.config.run.seed
    return [(item, _seed(seed, "noise", step, p)) for step in range(steps)
            for p, item in enumerate(stage._items(step))]


def trl_run(args, out: Path, turns: Turns, name: str, checkpointing: bool, schedule: list[tuple[suites.Item, int]]):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    pipe = ThinkGenPipeline.from_pretrained(EMBEDDED, torch_dtype=torch.float32)
    thinker = pipe.thinker
    items, seeds = [item for item, _ in schedule], [seed for _, seed in schedule]
    rule = get_reward("shapeworld")

    def rewrite_of(ids: list[int]) -> str:
        # From the token ids: TRL's `completions` are decoded without special tokens, and this
        # thinker's </think> is one, so the text alone cannot be split where the rewrite begins.
        close = ids.index(thinker.close_id) if thinker.close_id in ids else -1
        rest = ids[close + 1 :]
        end = next((i for i, token in enumerate(rest) if token in thinker.end_ids), len(rest))
        return thinker.tokenizer.decode(rest[:end], skip_special_tokens=True).strip()

    def render_reward(prompts, completions, completion_ids, item_index, **kwargs):
        rewrites = [rewrite_of(list(ids)) for ids in completion_ids]
        with torch.no_grad():
            thought = thinker.encode(rewrites, think=False)  # text only: the rewrite is encoded again
            text, mask = pipe.bridge(thought.states, thought.mask)
            grid = pipe.token_grid(32, 32)
            noise = pipe.initial_noise([seeds[int(i)] for i in item_index], 32, 32)  # as thinkgen's
            x = euler_sample(pipe.guided_velocity(text, mask, grid, cfg=1.0), noise, pipe.sigmas(args.render_steps, grid))
        images = to_pil(pipe.decode(x, 32, 32))
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
        max_steps=args.steps + 1, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
        bf16=False, seed=0, shuffle_dataset=False, disable_tqdm=True, gradient_checkpointing=checkpointing,
    )
    trainer = GRPOTrainer(model=thinker.model, reward_funcs=render_reward, args=config, train_dataset=data,
                          processing_class=thinker.tokenizer, callbacks=[TakeTurns(turns, name)])
    trainer.remove_callback(PrinterCallback)  # logging_steps=1 is for frac_reward_zero_std, not the console
    return trainer.train, trainer


def mean_of_timed(values: list[float], rounds: int) -> float:
    """The mean over the timed steps (the warm-up step and any untimed last step left out)."""
    timed = values[1 : 1 + rounds]
    return statistics.mean(timed) if timed else float("nan")


def trl_metric(trainer, key: str) -> list[float]:
    return [row[key] for row in trainer.state.log_history if key in row]


def ours_metric(metrics: list[dict[str, float]], key: str) -> list[float]:
    return [row.get(key, float("nan")) for row in metrics]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--G", type=int, default=8)
    parser.add_argument("--beta", type=float, default=0.01)
    parser.add_argument("--render-steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(harness.environment(args.threads))
    print(f"{args.prompts} prompts x G={args.G}, {args.render_steps} render steps, beta {args.beta}")
    torch.manual_seed(0)
    names = ["thinkgen thinker_grpo", "thinkgen, every rollout drawn", "TRL GRPOTrainer, checkpointing off",
             "TRL GRPOTrainer, checkpointing on"]
    turns = Turns(names)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        runs[names[0]], ours_metrics, stage = ours(args, Path(tmp) / "ours", turns, names[0])
        runs[names[1]], ours_all_metrics, _ = ours(args, Path(tmp) / "ours_all", turns, names[1], share_drawings=False)
        schedule = prompt_schedule(stage, args.steps + 2)
        runs[names[2]], trl_off = trl_run(args, Path(tmp) / "trl_off", turns, names[2], checkpointing=False, schedule=schedule)
        runs[names[3]], trl_on = trl_run(args, Path(tmp) / "trl_on", turns, names[3], checkpointing=True, schedule=schedule)
        errors: list[BaseException] = []

        def run(name: str) -> None:
            try:
                runs[name]()
            except BaseException as error:  # reported by the main thread
                errors.append(error)
            finally:
                turns.leave(name)

        threads = [threading.Thread(target=run, args=(name,)) for name in names]
        with harness.IdleCheck() as idle:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        if errors:
            raise errors[0]
        metric_lists = {"reward": [ours_metric(ours_metrics, "reward"), ours_metric(ours_all_metrics, "reward"),
                                   trl_metric(trl_off, "reward"), trl_metric(trl_on, "reward")],
                        "zero_std": [ours_metric(ours_metrics, "thinker/frac_reward_zero_std"),
                                     ours_metric(ours_all_metrics, "thinker/frac_reward_zero_std"),
                                     trl_metric(trl_off, "frac_reward_zero_std"), trl_metric(trl_on, "frac_reward_zero_std")],
                        "unique": [ours_metric(ours_metrics, "render/unique_share")]}
    rounds = min(len(t) for t in turns.times.values()) - 1
    rewards, zero_std, (unique,) = ([mean_of_timed(v, rounds) for v in metric_lists[key]]
                                    for key in ("reward", "zero_std", "unique"))
    times = {name: turns.times[name][1 : 1 + rounds] for name in names}  # drop the warm-up step
    print(f"one step (generation + reward + loss + AdamW), {rounds} interleaved rounds after a warm-up:")
    print("\n".join(harness.report(times, names[0])))
    ratio = harness.paired_ratio(times, names[0], names[2])[0]
    print(f"  {harness.goal('thinkgen / TRL step time, checkpointing off on both', ratio, SPEED_GOAL)}")
    print(f"  thinkgen drew {unique:.0%} of its rollouts (the rest repeated another of their group exactly)")
    for name, reward, share in zip(names, rewards, zero_std, strict=True):
        print(f"  {name:<36} mean reward {reward:.3f}, groups whose G rewards are all equal {share:.0%}")
    print(f"  {idle}")


if __name__ == "__main__":
    main()
