"""Two speed ratios, each measured against its baseline in the same run, interleaved.

(a) Think-mode overhead: thinkgen captures the conditioning states *during* generation (forward
    hooks, no extra pass). Baselines: plain generation with no states at all, and generation
    followed by
      - one batched forward pass over prompt + reasoning + rewrite to get the same states (and,
        as a second baseline, the same pass one sample at a time), or
      - a re-encode of the rewritten text alone in the pseudo-CoT template, as T2G's script does.
(b) Sampling loop: thinkgen's Euler loop (flow.euler_sample) vs diffusers'
    FlowMatchEulerDiscreteScheduler loop, same transformer, same guided velocity, same sigmas.

Each case runs once to warm up, then ``--repeats`` rounds with the order rotated each round;
medians, spreads and per-round ratios are printed with an idle check.

    python benchmarks/bench_pipeline.py            # about two minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import statistics
import time

import harness  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads)
import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel

from thinkgen import flow
from thinkgen.bridge import Bridge
from thinkgen.generator import backend_for
from thinkgen.thinker import Thinker, ThinkerConfig
from thinkgen.tiny import byte_tokenizer, tiny_qwen3

CAPTURE_GOAL = 1.05  # issue 14: capture costs at most 5 % over plain generation
LOOP_GOAL = 1.0  # and the sampling loop is no slower than diffusers'


def bench_think(args) -> None:
    tokenizer = byte_tokenizer()
    model = tiny_qwen3(len(tokenizer), hidden_size=args.thinker_width, num_layers=args.thinker_layers,
                       num_heads=8, eos_token_id=tokenizer.eos_token_id)
    config = ThinkerConfig(max_think_tokens=args.think_tokens, max_rewrite_tokens=args.rewrite_tokens)
    thinker = Thinker(model, tokenizer, config=config)
    prompts = [f"as many squares as a tricycle has wheels, in the colour of a ripe banana #{i}"
               for i in range(args.batch)]
    params = sum(p.numel() for p in model.parameters())
    print(f"(a) thinker: Qwen3ForCausalLM {params / 1e6:.1f}M params, batch {args.batch}, "
          f"{args.think_tokens} think + {args.rewrite_tokens} rewrite tokens (forced budgets), greedy")

    captured = thinker.encode(prompts, think=True)
    texts = [thinker.chat_prompt(p) for p in prompts]
    batch = thinker._tokenize(texts, None)
    length = batch["input_ids"].shape[1]

    def plain_generate():  # the same generation (same budgets, same tokens), no capture hooks
        with torch.no_grad():
            return thinker.generate(batch)

    plain = plain_generate()
    for row, (seq, start) in enumerate(zip(captured.sequences, captured.prompt_lengths, strict=True)):
        first = length - start  # left padding
        assert torch.equal(plain[row, first : first + len(seq)], seq), "baseline generated other tokens"

    pad = thinker.pad_id

    def refeed_batched():  # one batched forward over prompt + completion (right-padded, masked)
        longest = max(len(seq) for seq in captured.sequences)
        ids = torch.full((len(captured.sequences), longest), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, seq in enumerate(captured.sequences):
            ids[row, : len(seq)], mask[row, : len(seq)] = seq, 1
        with torch.no_grad():
            model(input_ids=ids, attention_mask=mask, output_hidden_states=True)

    def refeed_each():  # the same pass, one sample at a time
        with torch.no_grad():
            for sequence in captured.sequences:
                model(sequence[None], output_hidden_states=True)

    def reencode_rewrite():  # T2G: encode the rewritten text again in a fresh template
        thinker.encode(captured.rewritten, think=False)

    cases = {
        "plain generate, no states": plain_generate,
        "ours: generate + capture in hooks": lambda: thinker.encode(prompts, think=True),
        "generate + batched full re-forward": lambda: (plain_generate(), refeed_batched()),
        "generate + per-sample full re-forward": lambda: (plain_generate(), refeed_each()),
        "generate + T2G re-encode of the rewrite": lambda: (plain_generate(), reencode_rewrite()),
    }
    times, idle = harness.measure(cases, args.repeats, "ours: generate + capture in hooks")
    ratio = harness.paired_ratio(times, "ours: generate + capture in hooks", "plain generate, no states")[0]
    print(f"  {harness.goal('capture / plain generate', ratio, CAPTURE_GOAL)}")
    print(f"  {idle}")


def bench_sampler(args) -> None:
    torch.manual_seed(0)
    transformer = QwenImageTransformer2DModel(
        patch_size=1, in_channels=48, out_channels=48, num_layers=6, attention_head_dim=32,
        num_attention_heads=4, joint_attention_dim=64, axes_dims_rope=(8, 12, 12)).eval()
    backend = backend_for(transformer)
    bridge = Bridge(128, 64).eval()
    b = args.batch
    with torch.no_grad():
        text, mask = bridge(torch.randn(2 * b, 12, 128), torch.ones(2 * b, 12, dtype=torch.long))
    noise = torch.randn(b, 64, 48, generator=torch.Generator().manual_seed(0))

    inside = [0.0]  # seconds spent in the transformer + guidance, the rest is the loop's own

    def velocity(x, sigma):  # CFG, cond and uncond in one batched call
        start = time.perf_counter()
        v = backend(x.repeat(2, 1, 1), sigma.repeat(2), text, mask, (8, 8))
        v_cond, v_uncond = v.chunk(2)
        guided = flow.guide(v_cond, v_uncond, 4.0)
        inside[0] += time.perf_counter() - start
        return guided

    steps = args.steps
    params = sum(p.numel() for p in transformer.parameters())
    print(f"(b) sampler: QwenImageTransformer2DModel {params / 1e6:.1f}M params, batch {b}, "
          f"64 tokens, {steps} steps, CFG 4 (2 x batch per call)")

    def ours():
        return flow.euler_sample(velocity, noise, flow.sigma_schedule(steps, shift=3.0))

    def diffusers_loop():
        scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps))
        x = noise
        with torch.no_grad():
            for t in scheduler.timesteps:
                sigma = (t / 1000).expand(b)
                x = scheduler.step(velocity(x, sigma), t, x).prev_sample
        return x

    difference = (ours() - diffusers_loop()).abs().max().item()
    overhead: dict[str, list[float]] = {"diffusers": [], "thinkgen": []}

    def loop_only(name, fn):  # the case, recording the time spent outside the velocity calls
        def run():
            inside[0], start = 0.0, time.perf_counter()
            fn()
            overhead[name].append(time.perf_counter() - start - inside[0])
        return run

    cases = {"diffusers FlowMatchEulerDiscreteScheduler loop": loop_only("diffusers", diffusers_loop),
             "thinkgen flow.euler_sample": loop_only("thinkgen", ours)}
    baseline = "diffusers FlowMatchEulerDiscreteScheduler loop"
    times, idle = harness.measure(cases, args.repeats, baseline)
    ratio = harness.paired_ratio(times, "thinkgen flow.euler_sample", baseline)[0]
    print(f"  max |difference| of the two results {difference:.1e}; "
          f"{harness.goal('ours / diffusers time', ratio, LOOP_GOAL)}")
    print("  the loop's own time (outside the transformer calls), median per sample: "
          + ", ".join(f"{name} {statistics.median(t) * 1000:.1f} ms" for name, t in overhead.items()))
    print(f"  {idle}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--thinker-width", type=int, default=512)
    parser.add_argument("--thinker-layers", type=int, default=8)
    parser.add_argument("--think-tokens", type=int, default=192)
    parser.add_argument("--rewrite-tokens", type=int, default=48)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(harness.environment(args.threads))
    bench_think(args)
    bench_sampler(args)


if __name__ == "__main__":
    main()
