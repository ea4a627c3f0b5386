"""T2G's think mode against thinkgen's, on one Qwen2.5-VL text encoder (random weights, CPU).

Both generate the same greedy reasoning and rewrite (the same tokens, checked); T2G's ``rewrite``
mode then re-encodes the rewrite with Qwen-Image's template, thinkgen's ``capture`` mode keeps
the states captured while generating. Printed: the median seconds per batch of each, interleaved
(A, B, A, B ...), their ratio, and how far apart the two conditionings are (they are different
text states by construction: what the difference does to pictures needs trained weights).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_t2g_think.py
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from thinkgen.conditioning.qwen_image import QwenImageEncoding  # noqa: E402
from thinkgen.thinker import Thinker  # noqa: E402
from thinkgen.tiny import tiny_vl_thinker  # noqa: E402

PROMPTS = ["as many circles as a dog has legs", "the colour of a ripe banana, as a square",
           "a fruit that keeps the doctor away", "the animal on the Australian coat of arms"] * 2


def main(repeats: int = 5, width: int = 256, layers: int = 4, new_tokens: int = 48) -> None:
    torch.manual_seed(0)
    model, processor = tiny_vl_thinker("qwen2_5_vl", hidden_size=width, num_layers=layers, think_tokens=False)
    thinker = Thinker(model, processor.tokenizer)
    modes = {m: QwenImageEncoding(thinker, think_mode=m, max_new_tokens=new_tokens, rewrite_marker="e")
             for m in ("rewrite", "capture")}
    out = {m: modes[m].encode(PROMPTS, think=True) for m in modes}  # warm-up, and the outputs
    assert out["rewrite"].rewritten == out["capture"].rewritten, "the two modes generated different text"
    times = {m: [] for m in modes}
    for _ in range(repeats):
        for mode in modes:  # interleaved
            start = time.perf_counter()
            modes[mode].encode(PROMPTS, think=True)
            times[mode].append(time.perf_counter() - start)
    print(f"Qwen2.5-VL text encoder, width {width}, {layers} layers, batch {len(PROMPTS)}, up to {new_tokens} new "
          f"tokens; torch threads {torch.get_num_threads()}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
          f"load average {os.getloadavg()[0]:.2f}")
    for mode in modes:
        t = times[mode]
        print(f"  {mode:<8} median {statistics.median(t):.3f} s  (min {min(t):.3f}, max {max(t):.3f}, {repeats} runs)")
    ratio = statistics.median(times["rewrite"]) / statistics.median(times["capture"])
    print(f"  rewrite / capture: {ratio:.3f}x")
    a, b = out["rewrite"], out["capture"]
    print(f"  text states per prompt: rewrite {a.mask.sum(1).float().mean():.1f} (template + rewrite), "
          f"capture {b.mask.sum(1).float().mean():.1f} (rewrite tokens only)")


if __name__ == "__main__":
    main()
