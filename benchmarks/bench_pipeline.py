"""Two speed ratios, each measured against its baseline in the same run.

(a) Think-mode overhead: thinkgen captures the conditioning states *during* generation (forward
    hooks, no extra pass). Baselines: generate, then
      - re-run one forward pass over prompt + reasoning + rewrite to get the same states, or
      - re-encode the rewritten text alone in the pseudo-CoT template, as T2G's script does.
(b) Sampling loop: thinkgen's Euler loop (flow.euler_sample) vs diffusers'
    FlowMatchEulerDiscreteScheduler loop, same transformer, same guided velocity, same sigmas.

    python benchmarks/bench_pipeline.py            # about a minute on 2 CPU cores
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from diffusers import FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel  # noqa: E402

from thinkgen import flow  # noqa: E402
from thinkgen.bridge import Bridge  # noqa: E402
from thinkgen.generator import backend_for  # noqa: E402
from thinkgen.thinker import Thinker, ThinkerConfig  # noqa: E402
from thinkgen.tiny import byte_tokenizer, tiny_qwen3  # noqa: E402


def best_of(fn, repeats: int) -> float:
    """Median wall time of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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

    def refeed_full():  # a second full forward pass over prompt + completion, per sample
        with torch.no_grad():
            for sequence in captured.sequences:
                model(sequence[None], output_hidden_states=True)

    def reencode_rewrite():  # T2G: encode the rewritten text again in a fresh template
        thinker.encode(captured.rewritten, think=False)

    t_ours = best_of(lambda: thinker.encode(prompts, think=True), args.repeats)
    t_plain = best_of(plain_generate, args.repeats)
    t_full = best_of(refeed_full, args.repeats)
    t_t2g = best_of(reencode_rewrite, args.repeats)
    print(f"    plain generate, no states (reference)      {t_plain:7.3f} s   {t_plain / t_ours:.2f}x of ours")
    print(f"    ours: generate + capture in hooks          {t_ours:7.3f} s   1.00x")
    print(f"    generate + full re-forward (same states)   {t_plain + t_full:7.3f} s   "
          f"{(t_plain + t_full) / t_ours:.2f}x of ours  (extra pass {t_full:.3f} s)")
    print(f"    generate + T2G re-encode of the rewrite    {t_plain + t_t2g:7.3f} s   "
          f"{(t_plain + t_t2g) / t_ours:.2f}x of ours  (extra pass {t_t2g:.3f} s)")


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

    def velocity(x, sigma):  # CFG, cond and uncond in one batched call
        v = backend(x.repeat(2, 1, 1), sigma.repeat(2), text, mask, (8, 8))
        v_cond, v_uncond = v.chunk(2)
        return flow.guide(v_cond, v_uncond, 4.0)

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
    t_ours = best_of(ours, args.repeats)
    t_diffusers = best_of(diffusers_loop, args.repeats)
    print(f"    diffusers FlowMatchEulerDiscreteScheduler loop {t_diffusers:7.3f} s   1.00x")
    print(f"    thinkgen flow.euler_sample                     {t_ours:7.3f} s   "
          f"{t_diffusers / t_ours:.2f}x speed  (max |difference| of results {difference:.1e})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--thinker-width", type=int, default=512)
    parser.add_argument("--thinker-layers", type=int, default=8)
    parser.add_argument("--think-tokens", type=int, default=192)
    parser.add_argument("--rewrite-tokens", type=int, default=48)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {args.threads} threads")
    bench_think(args)
    bench_sampler(args)


if __name__ == "__main__":
    main()
