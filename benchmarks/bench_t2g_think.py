"""T2G's think mode against thinkgen's, on one Qwen2.5-VL text encoder (random weights, CPU).

Both generate the same greedy reasoning and rewrite (the same tokens, checked); T2G's ``rewrite``
mode then re-encodes the rewrite with Qwen-Image's template, thinkgen's ``capture`` mode keeps
the states captured while generating. Printed: the median seconds per batch of each, interleaved
(A, B, A, B ...), their ratio, and how far apart the two conditionings are (they are different
text states by construction: what the difference does to pictures needs trained weights).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_t2g_think.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import harness  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from thinkgen.conditioning.qwen_image import QwenImageEncoding  # noqa: E402
from thinkgen.thinker import Thinker  # noqa: E402
from thinkgen.tiny import tiny_vl_thinker  # noqa: E402

PROMPTS = ["as many circles as a dog has legs", "the colour of a ripe banana, as a square",
           "a fruit that keeps the doctor away", "the animal on the Australian coat of arms"] * 2


def main(repeats: int = 7, width: int = 256, layers: int = 4, new_tokens: int = 48, threads: int = 2) -> None:
    print(harness.environment(threads))
    torch.manual_seed(0)
    model, processor = tiny_vl_thinker("qwen2_5_vl", hidden_size=width, num_layers=layers, think_tokens=False)
    thinker = Thinker(model, processor.tokenizer)
    modes = {m: QwenImageEncoding(thinker, think_mode=m, max_new_tokens=new_tokens, rewrite_marker="e")
             for m in ("rewrite", "capture")}
    out = {m: modes[m].encode(PROMPTS, think=True) for m in modes}  # the outputs, compared
    assert out["rewrite"].rewritten == out["capture"].rewritten, "the two modes generated different text"
    print(f"Qwen2.5-VL text encoder, width {width}, {layers} layers, batch {len(PROMPTS)}, up to {new_tokens} new tokens")
    _, idle = harness.measure({f"T2G {m}": (lambda m=m: modes[m].encode(PROMPTS, think=True)) for m in modes},
                              repeats, "T2G capture")
    a, b = out["rewrite"], out["capture"]
    print(f"  text states per prompt: rewrite {a.mask.sum(1).float().mean():.1f} (template + rewrite), "
          f"capture {b.mask.sum(1).float().mean():.1f} (rewrite tokens only)")
    print(f"  {idle}")


if __name__ == "__main__":
    main()
