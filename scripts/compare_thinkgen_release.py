"""Check thinkgen's ThinkGen DiT and pipeline against the release's own code, on the same tiny weights.

Needs a checkout of the ThinkGen release (github.com/jiaosiyuu/ThinkGen) and ``einops`` (which the
release imports; thinkgen does not). Nothing of the release is copied into thinkgen: this script
imports it from the path you give, builds both models at a tiny config, copies thinkgen's weights
into the release's class with ``load_state_dict(strict=True)``, and prints the largest output
difference in fp32 and bf16, with and without reference images. Then it runs the release's
``ThinkGenCoTPipeline`` and thinkgen's pipeline (``thinkgen-release`` conditioning) on the same
tiny Qwen3-VL, DiT and VAE, with the release's system prompt, and compares the pictures (direct
mode, text CFG 4 with the release's empty negative prompt, 4 steps), edits of one source image
(text CFG 4, image CFG 1 and 2), an edit of two source images, and a prompt and edits of one and
two source images in think mode.

    pip install einops --target /tmp/extra
    PYTHONPATH=/tmp/extra python scripts/compare_thinkgen_release.py --release /path/to/ThinkGen
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", required=True, help="a checkout of the ThinkGen release")
    args = parser.parse_args()
    sys.path.insert(0, args.release)
    from ThinkGen.models.transformers import ThinkGenTransformer2DModel as Release
    from ThinkGen.models.transformers.repo import ThinkGenRotaryPosEmbed

    from thinkgen.models import ThinkGenTransformer2DModel

    # the release hard-codes 23 prepadding states of width 8192, hence text_feat_dim 4096
    config = dict(patch_size=2, in_channels=4, hidden_size=48, num_layers=2, num_refiner_layers=1,
                  num_attention_heads=2, num_kv_heads=1, multiple_of=16, axes_dim_rope=(8, 8, 8),
                  axes_lens=(1024, 1024, 1024), text_feat_dim=4096, timestep_scale=1000.0)
    torch.manual_seed(0)
    ours = ThinkGenTransformer2DModel(**config).eval()
    for p in ours.parameters():  # away from the zero start, so every path matters
        p.data.normal_(0, 0.05) if p.dim() > 1 else p.data.uniform_(0.5, 1.5)
    release = Release(**config).eval()
    release.load_state_dict(ours.state_dict(), strict=True)
    freqs = ThinkGenRotaryPosEmbed.get_freqs_cis(config["axes_dim_rope"], config["axes_lens"], theta=10000)
    print(f"{'dtype':<10}{'references':<12}max |thinkgen - release|")
    for dtype in (torch.float32, torch.bfloat16):
        a_model, b_model = ours.to(dtype), release.to(dtype)
        torch.manual_seed(1)
        latents = torch.randn(2, 4, 8, 12, dtype=dtype)
        text = torch.randn(2, 7, 8192, dtype=dtype)
        mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])  # two caption lengths in one batch
        t = torch.tensor([0.3, 0.3]).to(dtype)
        refs = [[torch.randn(4, 4, 8, dtype=dtype)], [torch.randn(4, 8, 4, dtype=dtype), torch.randn(4, 4, 4, dtype=dtype)]]
        for references in (None, refs):
            with torch.no_grad():
                a = a_model(latents, t, text, mask, references)
                b = b_model(latents, t, text, freqs, mask, ref_image_hidden_states=references)
            print(f"{str(dtype).removeprefix('torch.'):<10}{'yes' if references else 'no':<12}"
                  f"{(a.float() - b.float()).abs().max().item():.3g}")
    compare_pipelines(Release)


def compare_pipelines(release_class: type) -> None:
    from diffusers import AutoencoderKL
    from ThinkGen.pipelines.pipeline_thinkgen import ThinkGenCoTPipeline
    from ThinkGen.schedulers.scheduling_flow_match_euler_discrete import (
        FlowMatchEulerDiscreteScheduler as ReleaseScheduler,
    )

    from thinkgen import ThinkGenPipeline
    from thinkgen.models import ThinkGenTransformer2DModel
    from thinkgen.thinker import Thinker
    from thinkgen.tiny import tiny_vl_thinker

    width = 64  # the tiny thinker's width: the DiT reads 2 x 64 channels
    # axes_lens 8192: a think-mode trace of the random thinker runs to a few thousand tokens
    config = dict(patch_size=2, in_channels=4, hidden_size=48, num_layers=2, num_refiner_layers=1,
                  num_attention_heads=2, num_kv_heads=1, multiple_of=16, axes_dim_rope=(8, 8, 8),
                  axes_lens=(8192, 8192, 8192), text_feat_dim=width, timestep_scale=1000.0)
    print(f"\n{'dtype':<10}max |thinkgen - release| of the pictures (pipelines, direct, CFG 4)")
    for dtype in (torch.float32, torch.bfloat16):
        mllm, processor = tiny_vl_thinker("qwen3_vl", hidden_size=width, seed=0)
        torch.manual_seed(2)
        ours_dit = ThinkGenTransformer2DModel(**config, num_prepadding=23, prepad_dim=2 * width).eval()
        for p in ours_dit.parameters():
            p.data.normal_(0, 0.05) if p.dim() > 1 else p.data.uniform_(0.5, 1.5)
        theirs_dit = release_class(**config).eval()
        theirs_dit.prepad_embed = torch.nn.Parameter(torch.zeros(1, 23, 2 * width))  # its width is hard-coded
        theirs_dit.load_state_dict(ours_dit.state_dict(), strict=True)
        vae = AutoencoderKL(latent_channels=4, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
                            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                            scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False)
        mllm, ours_dit, theirs_dit, vae = (m.to(dtype) for m in (mllm, ours_dit, theirs_dit, vae))
        theirs = ThinkGenCoTPipeline(transformer=theirs_dit, vae=vae, scheduler=ReleaseScheduler(dynamic_time_shift=True),
                                     mllm=mllm, processor=processor)
        theirs.set_progress_bar_config(disable=True)
        # the release hard-codes Qwen3's </think> id (151668); the tiny vocabulary has its own
        theirs._split_seq = torch.tensor([processor.tokenizer.convert_tokens_to_ids("</think>")])
        ours = ThinkGenPipeline(Thinker(mllm, processor=processor), None, ours_dit, vae, None,
                                conditioning="thinkgen-release",
                                conditioning_settings={"system_prompt": theirs.SYSPROMPT})
        for prompt in ("a red circle", "two blue squares left of a tall green tree"):
            a = theirs(prompt=prompt, height=32, width=32, num_inference_steps=4, text_guidance_scale=4.0,
                       generator=torch.Generator().manual_seed(7), output_type="pt").images
            b = ours([prompt], think=False, guidance_scale=4.0, negative_prompt="", seed=7, height=32, width=32,
                     num_inference_steps=4, output_type="pt").images
            print(f"{str(dtype).removeprefix('torch.'):<10}{(a.float() - b).abs().max().item():.3g}  ({prompt!r})")
        # above max_pixels: the release draws at most max_pixels (sides floored to 16) and resizes back;
        # thinkgen does so with release_resolution (here max_pixels 32 x 32, a 64 x 48 request)
        ours.conditioning.max_pixels, ours.conditioning.release_resolution = 32 * 32, True
        a = theirs(prompt="a red circle", height=64, width=48, max_pixels=32 * 32, num_inference_steps=4,
                   text_guidance_scale=4.0, generator=torch.Generator().manual_seed(7), output_type="pt").images
        b = ours(["a red circle"], think=False, guidance_scale=4.0, negative_prompt="", seed=7, height=64, width=48,
                 num_inference_steps=4, output_type="pt").images
        print(f"{str(dtype).removeprefix('torch.'):<10}{(a.float() - b).abs().max().item():.3g}  "
              f"(release_resolution, 64 x 48 drawn at {ours.conditioning.draw_size(64, 48)}, {tuple(a.shape[-2:])} vs "
              f"{tuple(b.shape[-2:])})")
        ours.conditioning.max_pixels, ours.conditioning.release_resolution = 1024 * 1024, False
        # editing, direct: a source image of a size that must be resized (50 x 70 -> 48 x 68), the
        # edit drawn at the source's size; text CFG 4 alone (the negative branch without the image),
        # then with image CFG 2 (three calls). The release samples the VAE posterior from torch's
        # global generator, thinkgen from the call's seed: both seeded alike.
        source = Image.fromarray(np.random.default_rng(3).integers(0, 256, (70, 50, 3), dtype=np.uint8))
        for image_cfg in (1.0, 2.0):
            torch.manual_seed(7)
            a = theirs(prompt="make the circle blue", input_images=[source], num_inference_steps=4,
                       text_guidance_scale=4.0, image_guidance_scale=image_cfg,
                       generator=torch.Generator().manual_seed(7), output_type="pt").images
            b = ours(["make the circle blue"], think=False, images=[[source]], guidance_scale=4.0,
                     image_guidance_scale=image_cfg, negative_prompt="", seed=7, num_inference_steps=4,
                     output_type="pt").images
            print(f"{str(dtype).removeprefix('torch.'):<10}{(a.float() - b).abs().max().item():.3g}  "
                  f"(edit, image CFG {image_cfg:g}, {tuple(a.shape[-2:])} vs {tuple(b.shape[-2:])})")
        # editing from two source images of different sizes: drawn at the requested size (64 x 48),
        # each source resized and sampled in turn; image CFG 2 (three calls)
        second = Image.fromarray(np.random.default_rng(4).integers(0, 256, (40, 24, 3), dtype=np.uint8))
        torch.manual_seed(7)
        a = theirs(prompt="put the circle on the square", input_images=[source, second], height=64, width=48,
                   num_inference_steps=4, text_guidance_scale=4.0, image_guidance_scale=2.0,
                   generator=torch.Generator().manual_seed(7), output_type="pt").images
        b = ours(["put the circle on the square"], think=False, images=[[source, second]], guidance_scale=4.0,
                 image_guidance_scale=2.0, negative_prompt="", seed=7, height=64, width=48, num_inference_steps=4,
                 output_type="pt").images
        print(f"{str(dtype).removeprefix('torch.'):<10}{(a.float() - b).abs().max().item():.3g}  "
              f"(edit of two sources, image CFG 2, {tuple(a.shape[-2:])} vs {tuple(b.shape[-2:])})")
        # think mode, a prompt and an edit (the thinker sees the source): generation's sequence_bias,
        # which both pipelines' generate() read from the model, makes the random thinker write
        # </think> after its first token, so the states are cut after it as with a real thinker
        close = processor.tokenizer.convert_tokens_to_ids("</think>")
        mllm.generation_config.sequence_bias = {
            (first_token(ours, mllm, processor, images), close): 100.0 for images in ([], [source], [source, second])}
        for images in (None, [source], [source, second]):
            torch.manual_seed(7)
            a = theirs(prompt="make the circle blue", input_images=images, height=32, width=32, num_inference_steps=2,
                       text_guidance_scale=4.0, image_guidance_scale=2.0, generator=torch.Generator().manual_seed(7),
                       output_type="pt", think=True)
            b = ours(["make the circle blue"], think=True, images=None if images is None else [images],
                     guidance_scale=4.0, image_guidance_scale=2.0, negative_prompt="", seed=7, height=32, width=32,
                     num_inference_steps=2, output_type="pt")
            assert "</think>" in a.prompt_cot[0]
            kind = f"edit of {len(images)} source{'s' * (len(images) > 1)}" if images else "prompt"
            print(f"{str(dtype).removeprefix('torch.'):<10}{(a.images.float() - b.images).abs().max().item():.3g}  "
                  f"(think, {kind}; rewrite of {len(b.rewritten[0])} characters)")


def first_token(ours, mllm, processor, images) -> int:
    """The random thinker's first token in think mode (greedy), for a prompt or an edit of ``images``."""
    conditioning = ours.conditioning
    if not images:
        batch = processor.tokenizer([conditioning.think_text("make the circle blue")], return_tensors="pt")
    else:
        batch = processor(text=[conditioning.think_text("make the circle blue", len(images))], images=images,
                          return_tensors="pt", size={"longest_edge": conditioning.thinker_max_pixels,
                                                     "shortest_edge": processor.image_processor.size["shortest_edge"]})
    return int(mllm.generate(**batch, max_new_tokens=1)[0, -1])


if __name__ == "__main__":
    main()
