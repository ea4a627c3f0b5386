"""The T2G release's layout, a diffusers QwenImagePipeline folder, run by thinkgen exactly.

Tiny random components of the real classes are saved with diffusers' own ``save_pretrained``;
diffusers' ``QwenImagePipeline`` and thinkgen then draw from the same folder with the same seeds.
"""

import json

import numpy as np
import pytest
import torch
from diffusers import QwenImagePipeline

from thinkgen import ThinkGenPipeline
from thinkgen.conditioning.qwen_image import extract_rewrite
from thinkgen.tiny import tiny_qwen_image

PROMPTS = ["a red circle", "two blue squares left of a tall green tree", "x"]
NEGATIVES = ["blurry", " ", "low quality, ugly and dark"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    directory = tmp_path_factory.mktemp("qwen-image")
    QwenImagePipeline(**tiny_qwen_image()).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def pipelines(folder):
    loaded = {}
    for dtype in (torch.float32, torch.bfloat16):
        theirs = QwenImagePipeline.from_pretrained(folder, torch_dtype=dtype)
        theirs.set_progress_bar_config(disable=True)
        loaded[dtype] = (theirs, ThinkGenPipeline.from_pretrained(folder, torch_dtype=dtype))
    return loaded


def draw_both(pipelines, dtype, prompts, per_prompt, height, width, cfg, output_type, seed=11, steps=3,
              expand=True, negatives=NEGATIVES):
    """thinkgen's images (``per_prompt`` per prompt) and diffusers'. With ``expand`` diffusers gets each
    prompt repeated instead of ``num_images_per_prompt``: in diffusers 0.42.1 that argument pairs the
    text masks with the wrong prompts when prompt lengths differ (``[p0, p1, p0, p1]`` masks for
    ``[p0, p0, p1, p1]`` states; huggingface/diffusers#14147), and thinkgen draws the intended pictures."""
    theirs, ours = pipelines[dtype]
    negatives = negatives[: len(prompts)] if cfg > 1 else None
    generators = [torch.Generator().manual_seed(seed + i) for i in range(len(prompts) * per_prompt)]
    if expand:
        repeat = per_prompt
        a = theirs(prompt=[p for p in prompts for _ in range(repeat)], true_cfg_scale=cfg, height=height,
                   negative_prompt=None if negatives is None else [p for p in negatives for _ in range(repeat)],
                   width=width, num_inference_steps=steps, generator=generators, output_type=output_type).images
    else:
        a = theirs(prompt=prompts, negative_prompt=negatives, true_cfg_scale=cfg, height=height, width=width,
                   num_inference_steps=steps, num_images_per_prompt=per_prompt, generator=generators,
                   output_type=output_type).images
    b = ours(prompts, think=False, guidance_scale=cfg, negative_prompt=negatives, seed=seed, height=height,
             width=width, num_inference_steps=steps, num_images_per_prompt=per_prompt, output_type=output_type).images
    return a, b


CASES = [(prompts, n, size, cfg) for prompts, n in ((PROMPTS[:1], 1), (PROMPTS, 2))
         for size in ((32, 32), (48, 32)) for cfg in (1.0, 4.0)]


@pytest.mark.parametrize("prompts,per_prompt,size,cfg", CASES)
def test_fp32_pictures_equal_diffusers(pipelines, prompts, per_prompt, size, cfg):
    a, b = draw_both(pipelines, torch.float32, prompts, per_prompt, *size, cfg, "pt")
    assert a.shape == b.shape == (len(prompts) * per_prompt, 3, *size)
    assert (a.float() - b).abs().max() <= 1e-6


@pytest.mark.parametrize("prompts,per_prompt,size,cfg", CASES)
def test_bf16_pictures_equal_diffusers_to_the_level(pipelines, prompts, per_prompt, size, cfg):
    a, b = draw_both(pipelines, torch.bfloat16, prompts, per_prompt, *size, cfg, "pil")
    assert len(a) == len(b) == len(prompts) * per_prompt
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_images_per_prompt_equal_diffusers_when_its_masks_line_up(pipelines, dtype):
    """diffusers' own num_images_per_prompt path, where its mask order cannot matter (equal lengths)."""
    prompts = ["a red circle", "a tan circle"]  # the same number of tokens, and so are the negatives
    a, b = draw_both(pipelines, dtype, prompts, 2, 32, 32, 4.0, "pil", expand=False, negatives=["blurry", "poorly"])
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b, strict=True))


def test_pictures_differ_between_seeds_and_guidance(pipelines):
    """The equality above is not vacuous: the pictures depend on the seed and on the guidance."""
    _, ours = pipelines[torch.float32]
    base = ours(PROMPTS[:1], think=False, seed=1, height=32, width=32, num_inference_steps=3, output_type="pt").images
    other = ours(PROMPTS[:1], think=False, seed=2, height=32, width=32, num_inference_steps=3, output_type="pt").images
    unguided = ours(PROMPTS[:1], think=False, seed=1, height=32, width=32, num_inference_steps=3, guidance_scale=1.0,
                    output_type="pt").images
    assert (base - other).abs().max() > 1e-3 and (base - unguided).abs().max() > 1e-4


def test_layout_and_defaults_are_recorded(folder, tmp_path, pipelines):
    _, ours = pipelines[torch.float32]
    assert ours.conditioning.name == "qwen-image" and ours.bridge is None
    assert ours.defaults["negative_prompt"] == " " and ours.defaults["guidance_scale"] == 4.0
    ours.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == "QwenImagePipeline" and index["_thinkgen"]["conditioning"]["name"] == "qwen-image"
    assert index["text_encoder"] == ["transformers", "Qwen2_5_VLForConditionalGeneration"]
    # diffusers reads thinkgen's folder back (the private _thinkgen key is ignored), and so does thinkgen
    QwenImagePipeline.from_pretrained(tmp_path)
    again = ThinkGenPipeline.from_pretrained(tmp_path)
    assert again.conditioning.settings() == ours.conditioning.settings()


def test_extract_rewrite_follows_t2g():
    assert extract_rewrite("because ...\nRevised Prompt:\nA red apple.\n", "Revised Prompt:") == (
        "because ...", "A red apple.")
    assert extract_rewrite("x Revised Prompt: an owl", "Revised Prompt:") == ("x", "an owl")
    assert extract_rewrite("no marker here ", "Revised Prompt:") == ("", "no marker here")


def test_t2g_think_mode_draws_diffusers_picture_of_the_rewrite(folder, pipelines):
    """Think mode with a tokenizer that has no think tokens: reasoning and rewrite come back, and
    the picture is diffusers' picture of that rewrite (T2G's own inference: rewrite, re-encode)."""
    theirs, _ = pipelines[torch.float32]
    ours = ThinkGenPipeline.from_pretrained(folder)
    assert ours.thinker.close_id is None  # no </think> token in this vocabulary
    ours.conditioning.max_new_tokens = 24
    texts, _ = ours.conditioning.think(PROMPTS[:2])
    # The random model writes no "Revised Prompt:"; a piece of what it wrote serves as the marker.
    ours.conditioning.rewrite_marker = marker = texts[0][6:9]
    out = ours(PROMPTS[:2], think=True, seed=3, height=32, width=32, num_inference_steps=3, output_type="pt")
    assert (out.reasoning[0], out.rewritten[0]) == extract_rewrite(texts[0], marker)
    assert out.rewritten[0] and out.reasoning[0] == texts[0][: texts[0].find(marker)].strip()
    generators = [torch.Generator().manual_seed(3 + i) for i in range(2)]
    reference = theirs(prompt=out.rewritten, negative_prompt=[" ", " "], true_cfg_scale=4.0, height=32,
                       width=32, num_inference_steps=3, generator=generators, output_type="pt").images
    assert (reference.float() - out.images).abs().max() <= 1e-6


def test_capture_think_mode_conditions_on_the_generated_states(folder):
    """thinkgen's way for the same model: the rewrite tokens' states, captured while generating,
    condition the DiT directly (no re-encoding), and they differ from the re-encoded rewrite."""
    ours = ThinkGenPipeline.from_pretrained(folder)
    ours.conditioning.max_new_tokens = 24
    texts, _ = ours.conditioning.think(PROMPTS[:1])
    ours.conditioning.rewrite_marker = texts[0][6:9]
    _, captured = ours.conditioning.think(PROMPTS[:1])
    rewrite = ours.conditioning.encode(PROMPTS[:1], think=True)
    ours.conditioning.think_mode = "capture"
    condition = ours.conditioning.encode(PROMPTS[:1], think=True)
    assert 0 < captured[0].shape[0] < 24 + 1  # the tokens after the marker (and the end token, if fed)
    torch.testing.assert_close(condition.text[0], captured[0])
    assert condition.rewritten == rewrite.rewritten and condition.text.shape != rewrite.text.shape
