"""Real-size T2G (Qwen-Image) and ThinkGen-thinker measurements, for when a GPU is lent.

Random-initialised components at the released configs (``configs/real/``), in bf16, no weights
needed. Prints one table:

* think throughput: new tokens/s of ``generate`` at batch 1, 8 and 32, plain and with thinkgen's
  state capture (the ratio is the capture's overhead) — for T2G's Qwen2.5-VL-7B and ThinkGen's
  Qwen3-VL-8B;
* one 1024x1024 sampling step of Qwen-Image's 20B MMDiT (true CFG: two transformer calls) and of
  ThinkGen's 3.98B DiT (CFG: two calls);
* peak accelerator memory of a whole 1024x1024 generation of each system (encode, 2 steps, VAE
  decode), with everything resident and with ``enable_model_cpu_offload``;
* one training step per shipped real training config (``configs/real/train``), layers cut to fit
  one GPU (``gpu_train_steps.py``).

    python benchmarks/gpu_real_scale.py                 # on a GPU, about 5 minutes
    python benchmarks/gpu_real_scale.py --tiny --device cpu   # smoke run at tiny sizes (unit suite)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from thinkgen.hidden_states import capture_last_layers  # noqa: E402


def random_model(build, device: str, dtype: torch.dtype) -> torch.nn.Module:
    """Build on the meta device, allocate on ``device`` in ``dtype``, fill with N(0, 0.02): a
    20B model is never materialised in fp32 or on the CPU."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        model = build()
    model = model.to_empty(device=device).to(dtype)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and p.dim() == 1:
                p.fill_(1.0)
            else:
                p.normal_(0, 0.02)
    return model.eval()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def think_rate(model, device: str, batch: int, prompt: int, new: int, capture: bool) -> float:
    ids = torch.randint(0, 256, (batch, prompt), device=device)  # byte-level ids: in every vocabulary here
    kwargs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "max_new_tokens": new,
              "min_new_tokens": new, "do_sample": False, "pad_token_id": 0}
    model.generate(**{**kwargs, "max_new_tokens": 2, "min_new_tokens": 2})  # warm-up
    sync(device)
    start = time.perf_counter()
    if capture:
        with capture_last_layers(model, 2):
            model.generate(**kwargs)
    else:
        model.generate(**kwargs)
    sync(device)
    return batch * new / (time.perf_counter() - start)


def t2g_components(tiny: bool, device: str, dtype: torch.dtype) -> dict:
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageTransformer2DModel,
    )
    from transformers import AutoConfig, Qwen2_5_VLForConditionalGeneration

    if tiny:
        from thinkgen.tiny import tiny_qwen_image

        parts = tiny_qwen_image()
        return {k: (v.to(device, dtype) if isinstance(v, torch.nn.Module) else v) for k, v in parts.items()}
    folder = ROOT / "configs" / "real" / "t2g"
    text_config = AutoConfig.from_pretrained(folder / "text_encoder")
    from thinkgen.tiny import tiny_vl_thinker

    _, processor = tiny_vl_thinker("qwen2_5_vl", think_tokens=False)  # byte tokenizer: ids < 300
    return {
        "text_encoder": random_model(lambda: Qwen2_5_VLForConditionalGeneration._from_config(text_config), device, dtype),
        "tokenizer": processor.tokenizer,
        "transformer": random_model(lambda: QwenImageTransformer2DModel.from_config(
            QwenImageTransformer2DModel.load_config(folder / "transformer")), device, dtype),
        "vae": random_model(lambda: AutoencoderKLQwenImage.from_config(
            AutoencoderKLQwenImage.load_config(folder / "vae")), device, dtype),
        "scheduler": FlowMatchEulerDiscreteScheduler.from_pretrained(folder / "scheduler"),
    }


def thinkgen_components(tiny: bool, device: str, dtype: torch.dtype) -> dict:
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler
    from transformers import AutoConfig, Qwen3VLForConditionalGeneration

    from thinkgen.models import ThinkGenTransformer2DModel
    from thinkgen.tiny import tiny_thinkgen_release, tiny_vl_thinker

    if tiny:
        pipe = tiny_thinkgen_release()
        return {"mllm": pipe.thinker.model.to(device, dtype), "processor": pipe.thinker.processor,
                "transformer": pipe.transformer.to(device, dtype), "vae": pipe.vae.to(device, dtype),
                "scheduler": FlowMatchEulerDiscreteScheduler()}
    folder = ROOT / "configs" / "real" / "thinkgen"
    config = AutoConfig.from_pretrained(folder / "mllm")
    _, processor = tiny_vl_thinker("qwen3_vl")  # byte tokenizer with think tokens: ids < 300
    return {
        "mllm": random_model(lambda: Qwen3VLForConditionalGeneration._from_config(config), device, dtype),
        "processor": processor,
        "transformer": random_model(lambda: ThinkGenTransformer2DModel.from_config(
            ThinkGenTransformer2DModel.load_config(folder / "transformer")), device, dtype),
        "vae": random_model(lambda: AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae")), device, dtype),
        "scheduler": FlowMatchEulerDiscreteScheduler(),
    }


def timed(velocity, x: torch.Tensor, device: str) -> float:
    """Seconds for one call of ``velocity`` at sigma 1, after a warm-up call."""
    sigma = torch.ones(1, device=device)
    velocity(x, sigma)  # warm-up
    sync(device)
    start = time.perf_counter()
    velocity(x, sigma)
    sync(device)
    return time.perf_counter() - start


def one_step(pipe, device: str, size: int) -> float:
    """Seconds for one guided velocity (two transformer calls) at ``size`` x ``size``."""
    condition = pipe.conditioning.encode(["a red apple on a wooden table, in soft morning light"], think=False)
    text, mask = condition.text.to(device), condition.mask.to(device)
    grid = pipe.token_grid(size, size)
    velocity = pipe.guided_velocity(text, mask, grid, cfg=4.0, null=pipe.conditioning.negative(None, 1))
    return timed(velocity, pipe.initial_noise([0], size, size), device)


def edit_step(pipe, device: str, size: int) -> float:
    """Seconds for one guided velocity of an edit at ``size`` x ``size``: text CFG 4 and image CFG 2,
    three transformer calls, two of them with the source's tokens in the sequence."""
    from PIL import Image

    source = Image.new("RGB", (size, size), (200, 60, 40))
    condition = pipe.conditioning.encode(["make the apple green"], think=False, images=[[source]])
    text, mask = condition.text.to(device), condition.mask.to(device)
    reference = pipe.reference([source], size, size, seed=0)
    velocity = pipe.guided_velocity(text, mask, reference.grid, reference, cfg=4.0, image_cfg=2.0,
                                    null=pipe.conditioning.negative(None, 1))
    return timed(velocity, pipe.initial_noise([0], size, size), device)


def peak_generation(pipe, device: str, size: int) -> float:
    """GiB of accelerator memory at the peak of one generation (CPU runs report 0)."""
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    pipe(["a red apple on a wooden table"], think=False, height=size, width=size, num_inference_steps=2,
         output_type="pt")
    sync(device)
    return torch.cuda.max_memory_allocated() / 1024**3 if device.startswith("cuda") else 0.0


def main(argv: list[str] | None = None) -> list[tuple[str, str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny random configs (a smoke run)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--new-tokens", type=int, default=128)
    args = parser.parse_args(argv)
    device, dtype = args.device, torch.bfloat16
    size = 32 if args.tiny else 1024
    new = 4 if args.tiny else args.new_tokens
    rows: list[tuple[str, str]] = []

    def report(name: str, value: str) -> None:
        rows.append((name, value))
        print(f"{name:<58} {value}", flush=True)

    print(f"device {device} ({torch.cuda.get_device_name() if device.startswith('cuda') else 'cpu'}), "
          f"bf16, {'tiny' if args.tiny else 'real'} sizes, torch {torch.__version__}")
    from thinkgen import ThinkGenPipeline
    from thinkgen.thinker import Thinker

    parts = t2g_components(args.tiny, device, dtype)
    release = thinkgen_components(args.tiny, device, dtype)
    for label, model in (("T2G Qwen2.5-VL-7B", parts["text_encoder"]), ("ThinkGen Qwen3-VL-8B", release["mllm"])):
        for batch in (int(b) for b in args.batches.split(",")):
            plain = think_rate(model, device, batch, 64, new, capture=False)
            captured = think_rate(model, device, batch, 64, new, capture=True)
            report(f"think {label}, batch {batch}: tokens/s plain | capture", f"{plain:9.1f} | {captured:9.1f}"
                   f"  (capture costs {plain / captured:.3f}x)")
    systems = {
        "T2G (Qwen-Image MMDiT)": ThinkGenPipeline(Thinker(parts["text_encoder"], parts["tokenizer"]), None,
                                                       parts["transformer"], parts["vae"], parts["scheduler"],
                                                       conditioning="qwen-image"),
        "ThinkGen (OmniGen2-style DiT)": ThinkGenPipeline(Thinker(release["mllm"], processor=release["processor"]),
                                                             None, release["transformer"], release["vae"],
                                                             release["scheduler"], conditioning="thinkgen-release"),
    }
    for label, pipe in systems.items():
        report(f"{label}: one {size}x{size} step, CFG (2 calls)", f"{one_step(pipe, device, size):9.3f} s")
        if label.startswith("ThinkGen"):  # T2G's release draws, it does not edit
            report(f"{label}: one {size}x{size} edit step, text and image CFG (3 calls)",
                   f"{edit_step(pipe, device, size):9.3f} s")
        report(f"{label}: peak memory of a {size}x{size} generation, resident",
               f"{peak_generation(pipe, device, size):9.2f} GiB")
    if device.startswith("cuda"):
        for label, pipe in systems.items():  # offload moves every component to the CPU first
            pipe.enable_model_cpu_offload(device)
            report(f"{label}: peak memory of a {size}x{size} generation, model offload",
                   f"{peak_generation(pipe, device, size):9.2f} GiB")
    del systems, parts, release  # the training steps need the memory
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_train_steps import rows as train_rows

    for name, value in train_rows(device, args.tiny):
        report(name, value)
    return rows


if __name__ == "__main__":
    main()
