"""ThinkGen's DiT and the release's conventions, on tiny random weights of the real classes."""

import dataclasses
import json
import math
import sys

import pytest
import torch
from accelerate import init_empty_weights
from PIL import Image
from safetensors.torch import load_file, save_file

from thinkgen import PipelineLoadError, ThinkGenPipeline
from thinkgen.generator import ThinkGenBackend, patchify
from thinkgen.models import ThinkGenTransformer2DModel
from thinkgen.models import thinkgen_dit as dit
from thinkgen.tiny import tiny_thinkgen_release

# the release's model_index.json: its own module paths, and the private _split_seq entry
RELEASE_INDEX = {"_class_name": "ThinkGenCoTPipeline", "_diffusers_version": "0.34.0", "_split_seq": ["torch", "Tensor"],
                 "mllm": ["transformers", "Qwen3VLForConditionalGeneration"],
                 "processor": ["transformers", "Qwen3VLProcessor"],
                 "scheduler": ["ThinkGen.schedulers.scheduling_flow_match_euler_discrete", "FlowMatchEulerDiscreteScheduler"],
                 "transformer": ["ThinkGen.models.transformers.transformer_thinkgen", "ThinkGenTransformer2DModel"],
                 "vae": ["diffusers", "AutoencoderKL"]}


def spec_shapes(D=2520, d=120, Hq=21, Hkv=7, F=10240, T=1024, P=64, K=4096, layers=32, refiners=2):
    """Every parameter of the release DiT, named and sized as the architecture description says."""
    shapes = {"x_embedder.weight": (D, P), "x_embedder.bias": (D,),
              "ref_image_patch_embedder.weight": (D, P), "ref_image_patch_embedder.bias": (D,),
              "time_caption_embed.timestep_embedder.linear_1.weight": (T, 256),
              "time_caption_embed.timestep_embedder.linear_1.bias": (T,),
              "time_caption_embed.timestep_embedder.linear_2.weight": (T, T),
              "time_caption_embed.timestep_embedder.linear_2.bias": (T,),
              "time_caption_embed.caption_embedder.0.weight": (2 * K,),
              "time_caption_embed.caption_embedder.1.weight": (D, 2 * K),
              "time_caption_embed.caption_embedder.1.bias": (D,),
              "prepad_embed": (1, 23, 8192), "image_index_embedding": (5, D),
              "norm_out.linear_1.weight": (D, T), "norm_out.linear_1.bias": (D,),
              "norm_out.linear_2.weight": (P, D), "norm_out.linear_2.bias": (P,)}
    blocks = [(f"noise_refiner.{i}", True) for i in range(refiners)] + [
        (f"ref_image_refiner.{i}", True) for i in range(refiners)] + [
        (f"context_refiner.{i}", False) for i in range(refiners)] + [(f"layers.{i}", True) for i in range(layers)]
    for b, modulated in blocks:
        shapes.update({f"{b}.attn.to_q.weight": (Hq * d, D), f"{b}.attn.to_k.weight": (Hkv * d, D),
                       f"{b}.attn.to_v.weight": (Hkv * d, D), f"{b}.attn.to_out.0.weight": (D, Hq * d),
                       f"{b}.attn.norm_q.weight": (d,), f"{b}.attn.norm_k.weight": (d,),
                       f"{b}.feed_forward.linear_1.weight": (F, D), f"{b}.feed_forward.linear_3.weight": (F, D),
                       f"{b}.feed_forward.linear_2.weight": (D, F),
                       f"{b}.ffn_norm1.weight": (D,), f"{b}.norm2.weight": (D,), f"{b}.ffn_norm2.weight": (D,)})
        if modulated:
            shapes.update({f"{b}.norm1.linear.weight": (4 * D, T), f"{b}.norm1.linear.bias": (4 * D,),
                           f"{b}.norm1.norm.weight": (D,)})
        else:
            shapes[f"{b}.norm1.weight"] = (D,)
    return shapes


def test_release_config_has_the_specified_parameters():
    with init_empty_weights():
        model = ThinkGenTransformer2DModel.from_config(
            ThinkGenTransformer2DModel.load_config("configs/real/thinkgen/transformer"))
    params = {k: tuple(v.shape) for k, v in model.named_parameters()}
    assert params == spec_shapes()
    assert {k: tuple(v.shape) for k, v in model.named_buffers()} == {"prepad_mask": (1, 23)}
    assert sum(v.numel() for v in model.parameters()) == pytest.approx(3.983e9, abs=5e5)


@pytest.fixture(scope="module")
def release():
    return tiny_thinkgen_release()


def draw(pipe, **kwargs):
    return pipe(["a red circle", "two blue squares"], seed=2, output_type="pt", **kwargs).images


def test_round_trip_through_the_release_layout(release, tmp_path):
    release.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert {"mllm", "processor", "transformer", "vae", "scheduler"} <= set(index)
    (tmp_path / "model_index.json").write_text(json.dumps(RELEASE_INDEX))  # the release's own module paths
    (tmp_path / "scheduler" / "scheduler_config.json").write_text(json.dumps(
        {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "dynamic_time_shift": True}))
    loaded = ThinkGenPipeline.from_pretrained(tmp_path)
    assert not any(name == "ThinkGen" or name.startswith("ThinkGen.") for name in sys.modules)
    assert loaded.conditioning.name == "thinkgen-release" and isinstance(loaded.backend, ThinkGenBackend)
    ours, theirs = release.transformer.state_dict(), loaded.transformer.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    settings = {"negative_prompt": "", "num_inference_steps": 4, "height": 32, "width": 32}
    assert torch.equal(draw(loaded, think=False, **settings), draw(release, think=False, **settings))


@pytest.mark.parametrize("damage", ["rename", "reshape"])
def test_strict_loading_names_the_bad_key(release, tmp_path, damage):
    release.save_pretrained(tmp_path)
    file = next((tmp_path / "transformer").glob("*.safetensors"))
    weights = load_file(file)
    if damage == "rename":
        weights["layers.0.attn.to_qq.weight"] = weights.pop("layers.0.attn.to_q.weight")
    else:
        weights["prepad_embed"] = weights["prepad_embed"][:, :2]
    save_file(weights, file)
    with pytest.raises(PipelineLoadError, match="to_q.weight" if damage == "rename" else "prepad_embed"):
        ThinkGenPipeline.from_pretrained(tmp_path)


# ----------------------------------------------------------------------------- conventions
def test_patch_order_is_p1_p2_c():
    latent = torch.arange(3 * 4 * 6, dtype=torch.float32).view(3, 4, 6)  # (C, H, W)
    tokens = dit.patchify(latent, 2)  # (H/2 * W/2, 2 * 2 * C)
    for row, col, p1, p2, c in [(0, 0, 0, 1, 2), (1, 2, 1, 0, 1), (0, 1, 1, 1, 0)]:
        token, feature = row * 3 + col, (p1 * 2 + p2) * 3 + c
        assert tokens[token, feature] == latent[c, row * 2 + p1, col * 2 + p2]
    assert torch.equal(dit.unpatchify(tokens, 4, 6, 2), latent)


def test_rope_in_float64_and_omni_positions(release):
    model = release.transformer
    ids = torch.tensor([[3, 1, 2]])
    rotation = model.rotations(ids)
    assert rotation.dtype == torch.complex128 and rotation.shape == (1, 12)  # d/2 = (8 + 8 + 8) / 2
    expected = [torch.polar(torch.tensor(1.0, dtype=torch.float64),
                            torch.tensor(pos * 10000 ** (-2 * i / 8), dtype=torch.float64))
                for pos in (3, 1, 2) for i in range(4)]
    torch.testing.assert_close(rotation[0], torch.stack(expected))
    seen = []
    original = model.rotations
    model.rotations = lambda ids: seen.append(ids.clone()) or original(ids)
    try:
        text = torch.randn(1, 5, 128)
        mask = torch.tensor([[1, 1, 1, 0, 0]])
        refs = [[torch.randn(4, 4, 8)]]  # a 2 x 4 token reference image
        model(torch.randn(1, 4, 4, 4), torch.tensor([0.3]), text, mask, refs)
    finally:
        model.rotations = original
    cap = 3 + 3  # 3 prepadding states + 3 valid text tokens
    joint = seen[-1][0]  # [text | reference | noise]
    assert joint[:cap].tolist() == [[k, k, k] for k in range(cap)]
    assert joint[cap : cap + 8].tolist() == [[cap, r, c] for r in range(2) for c in range(4)]
    assert joint[cap + 8 : cap + 12].tolist() == [[cap + 4, r, c] for r in range(2) for c in range(2)]  # +max(2, 4)


def test_references_are_refined_together_and_padding_is_masked(release):
    """All references of a batch go through the reference refiner as one padded batch (the
    release's numerics); a sample's output does not depend on the padding its neighbours bring."""
    model = release.transformer
    torch.manual_seed(0)
    latents, text = torch.randn(2, 4, 4, 4), torch.randn(2, 5, 128)
    mask, t = torch.ones(2, 5, dtype=torch.long), torch.tensor([0.3, 0.3])
    own = [torch.randn(4, 4, 8), torch.randn(4, 4, 4)]  # 8 and 4 tokens
    neighbour = [torch.randn(4, 8, 8)]  # 16 tokens: the other two are padded to 16 in the refiner
    calls = []
    block = model.ref_image_refiner[0]
    hook = block.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape))
    try:
        with torch.no_grad():
            alone = model(latents[:1], t[:1], text[:1], mask[:1], [own])
            together = model(latents, t, text, mask, [own, neighbour])
    finally:
        hook.remove()
    assert calls == [(2, 8, 48), (3, 16, 48)]  # one refiner call per forward, over every reference
    torch.testing.assert_close(together[:1], alone, atol=1e-5, rtol=1e-5)


def test_timestep_and_velocity_conventions(release):
    """The DiT takes t = 1 - sigma and returns data - noise; the backend hands the pipeline noise - data."""
    model, backend = release.transformer, release.backend
    latents, sigma = torch.randn(1, 4, 8, 8), torch.tensor([0.3])
    text, mask = torch.randn(1, 4, 128), torch.ones(1, 4, dtype=torch.long)
    tokens = patchify(latents, 2)
    expected = -model(latents, torch.tensor([0.7]), text, mask)
    torch.testing.assert_close(backend(tokens, sigma, text, mask, (4, 4)), patchify(expected, 2))


def test_static_resolution_shift_and_release_step(release):
    sigmas = release.sigmas(6, (16, 16))  # latent 32 x 32 -> m = sqrt(32 * 32) / 40 = 0.8
    m = math.sqrt(32 * 32) / 40
    t = torch.arange(6, dtype=torch.float64) / 6
    torch.testing.assert_close(1 - sigmas[:-1], t / (m - m * t + t), atol=1e-7, rtol=0)  # t' = t / (m - m t + t)
    assert sigmas[0] == 1 and sigmas[-1] == 0 and sigmas.dtype == torch.float64
    # the step works in the release's t: the sample in fp32, (t_next - t) in fp32, the result in v's dtype
    x, v = torch.randn(2, 3).bfloat16(), torch.randn(2, 3).bfloat16()
    t0, t1 = (1 - sigmas[1]).float(), (1 - sigmas[2]).float()
    expected = (x.float() + (t1 - t0) * -v).to(torch.bfloat16)
    assert torch.equal(release.euler_step(sigmas)(x, v, 1), expected)


def test_flux_vae_shift_and_scale(release):
    from thinkgen.generator import decode_latents, encode_images

    vae = release.vae
    images = torch.rand(1, 3, 16, 16) * 2 - 1
    z = vae.encode(images).latent_dist.mode()
    torch.testing.assert_close(encode_images(vae, images), (z - 0.1159) * 0.3611)
    latents = torch.randn(1, 4, 8, 8)
    torch.testing.assert_close(decode_latents(vae, latents), vae.decode(latents / 0.3611 + 0.1159).sample.clamp(-1, 1))


def test_direct_template_and_states(release):
    conditioning, tokenizer = release.conditioning, release.thinker.tokenizer
    assert conditioning.direct_text("a cat").endswith("<|im_start|>assistant\n<think>\n</think>a cat")
    text, mask = conditioning.direct(["a cat"])
    ids = tokenizer(conditioning.direct_text("a cat"), return_tensors="pt").input_ids
    hidden = release.thinker.model(input_ids=ids, output_hidden_states=True).hidden_states
    prompt_tokens = len(tokenizer("a cat", add_special_tokens=False).input_ids)
    assert int(mask.sum()) == prompt_tokens and text.shape[-1] == 2 * 64  # last two layers, no end token
    torch.testing.assert_close(text[0], torch.cat([hidden[-2], hidden[-1]], -1)[0, -prompt_tokens:])


def test_empty_negative_keeps_the_whole_templated_sequence(release):
    text, mask = release.conditioning.negative([""], 1)
    length = len(release.thinker.tokenizer(release.conditioning.direct_text(""), add_special_tokens=False).input_ids)
    assert int(mask.sum()) == length  # </think> is the last token: the release's fallback keeps everything


def test_think_mode_excludes_the_final_token(release):
    conditioning, tokenizer = release.conditioning, release.thinker.tokenizer
    close = tokenizer.convert_tokens_to_ids("</think>")
    calls = []
    original = release.thinker.model.generate

    def scripted(**kwargs):  # a model that thinks, closes, rewrites and ends: 2 + 1 + 2 + 1 tokens
        calls.append(kwargs)
        prompt = kwargs["input_ids"]
        end = release.thinker.end_ids[0]
        completion = torch.tensor([[70, 71, close, 72, 73, end]] * prompt.shape[0])
        sequences = torch.cat([prompt, completion], dim=1)
        release.thinker.model(input_ids=sequences[:, :-1])  # feed all but the last, as generate does
        return sequences

    release.thinker.model.generate = scripted
    try:
        condition = conditioning.encode(["a cat"], think=True)
    finally:
        release.thinker.model.generate = original
    assert int(condition.mask.sum()) == 2  # the rewrite's two tokens; not </think>, not the end token
    assert condition.rewritten == [tokenizer.decode([72, 73])]


def test_bf16_model_draws_bf16_noise(release, tmp_path):
    release.save_pretrained(tmp_path)
    half = ThinkGenPipeline.from_pretrained(tmp_path, torch_dtype=torch.bfloat16)
    assert half.initial_noise([0], 32, 32).dtype == torch.bfloat16
    assert draw(half, think=False, num_inference_steps=2).isfinite().all()


# ----------------------------------------------------------------------------- editing (release conventions)
def source_image(seed: int, height: int = 70, width: int = 50):
    from PIL import Image

    return Image.fromarray(torch.randint(0, 256, (height, width, 3), generator=torch.Generator().manual_seed(seed),
                                         dtype=torch.uint8).numpy())


def test_edit_text_puts_the_placeholder_before_the_instruction_twice(release):
    conditioning, tokenizer = release.conditioning, release.thinker.tokenizer
    placeholder = "<|vision_start|><|image_pad|><|vision_end|>"
    text = conditioning.direct_text("make it blue", 1)
    assert text.count(placeholder + "make it blue") == 2 and text.endswith("</think>" + placeholder + "make it blue")
    assert conditioning.think_text("make it blue", 2).count(placeholder * 2 + "make it blue") == 1
    # direct mode: the text alone, the placeholder's three tokens among the states after </think>
    _, plain = conditioning.direct(["make it blue"])
    _, edit = conditioning.direct(["make it blue"], [[source_image(0)]])
    assert int(edit.sum()) == int(plain.sum()) + len(tokenizer(placeholder, add_special_tokens=False).input_ids) == \
        int(plain.sum()) + 3


def test_edit_in_think_mode_shows_the_thinker_the_image(release):
    calls = []
    original = release.thinker.model.generate

    def recorded(**kwargs):
        calls.append(kwargs)
        return original(**kwargs)

    release.thinker.model.generate = recorded
    try:
        a = release.conditioning.encode(["make it blue"], think=True, images=[[source_image(0)]], seed=0)
        b = release.conditioning.encode(["make it blue"], think=True, images=[[source_image(1)]], seed=0)
    finally:
        release.thinker.model.generate = original
    assert "pixel_values" in calls[0] and "image_grid_thw" in calls[0]
    pad = release.thinker.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((calls[0]["input_ids"] == pad).sum()) > 1  # the processor expanded the placeholder
    assert not torch.equal(a.text, b.text)  # the states depend on what the thinker saw


def test_edit_is_drawn_at_the_source_size_from_a_posterior_sample(release):
    def edit(source, seed=3, **kwargs):
        group = source if isinstance(source, list) else [source]
        return release(["make it blue"], think=False, images=[group], seed=seed, output_type="pt",
                       **kwargs).images

    a = edit(source_image(0))  # 50 x 70: floored to 48 x 68 (multiples of twice the VAE's factor 2)
    assert a.shape[-2:] == (68, 48)
    assert torch.equal(a, edit(source_image(0)))
    assert not torch.equal(a, edit(source_image(1)))  # the edit depends on the source
    # the reference latents: a sample of the posterior, drawn from the seed (not its mode)
    first = release.conditioning.reference_latents(release.vae, [source_image(0)], 32, 32, seed=3)
    again = release.conditioning.reference_latents(release.vae, [source_image(0)], 32, 32, seed=3)
    other = release.conditioning.reference_latents(release.vae, [source_image(0)], 32, 32, seed=4)
    assert len(first) == 1 and first[0].shape == (4, 34, 24)
    assert torch.equal(first[0], again[0]) and not torch.equal(first[0], other[0])
    # large sources are scaled down to max_pixels, never up
    release.conditioning.max_pixels = 32 * 32
    try:
        assert edit(source_image(0, 128, 64)).shape[-2:] == (44, 20)
    finally:
        release.conditioning.max_pixels = 1024 * 1024
    assert release.conditioning.reference_size(10, 12, 16) == (0, 0)
    with pytest.raises(ValueError, match="too small"):
        edit(source_image(0, 3, 3))
    limits = release.limits  # the pipeline's limits apply to the size the edit takes from its source
    release.limits = dataclasses.replace(limits, max_pixels=40 * 40)
    try:
        with pytest.raises(ValueError, match="48x68 is 3,264 pixels, above the limit"):
            edit(source_image(0))
    finally:
        release.limits = limits


def test_edit_from_several_source_images(release):
    """The release's DiT takes several source images per prompt: each reaches it, in order, at its
    own size; the edit is drawn at the requested size (not a source's); the posterior samples come
    prompt by prompt, image by image, from the call's seed."""
    seen = []
    forward = release.transformer.forward

    def spy(*args, **kwargs):
        seen.append(args[4])  # the per-sample lists of reference latents (or None)
        return forward(*args, **kwargs)

    def edit(groups, **kwargs):
        return release(["make it blue"] * len(groups), think=False, images=groups, seed=3, height=32, width=32,
                       output_type="pt", num_inference_steps=2, **kwargs).images

    a, b, c = source_image(0), source_image(1, 40, 24), source_image(2, 40, 24)
    release.transformer.forward = spy
    try:
        two = edit([[a, b]])
    finally:
        release.transformer.forward = forward
    assert two.shape[-2:] == (32, 32)  # the requested size, not the first source's 68 x 48
    refs = next(r for r in seen if r is not None)
    assert [tuple(z.shape[-2:]) for z in refs[0]] == [(34, 24), (20, 12)]  # both, in order, each its own size
    latents = release.conditioning.reference_latents(release.vae, [a, b], 32, 32, seed=3)
    assert torch.equal(refs[0][0], latents[0]) and torch.equal(refs[0][1], latents[1])
    assert torch.equal(two, edit([[a, b]]))
    assert not torch.equal(two, edit([[a, c]]))  # the second source matters
    assert not torch.equal(two, edit([[b, a]]))  # and the order (each slot has its own index embedding)
    # two prompts of two sources each: the first prompt's edit is the one above (up to the rounding
    # of a batch of two), the second prompt's samples follow the first's
    pair = edit([[a, b], [a, c]])
    assert torch.allclose(pair[0], two[0], atol=1e-5) and not torch.allclose(pair[1], two[0], atol=1e-2)
    with pytest.raises(ValueError, match="same number of source images"):
        edit([[a, b], [a]])
    with pytest.raises(ValueError, match="source image 2 of each prompt must have one size"):
        edit([[a, b], [a, source_image(2)]])
    most = release.transformer.config.max_reference_images
    with pytest.raises(ValueError, match=f"at most {most} source images per prompt, got {most + 1}"):
        edit([[a] * (most + 1)])


def test_cli_edits_from_several_source_images(release, tmp_path, capsys):
    """`thinkgen edit A "..." --and-image B`: both sources reach the release's DiT, so the second
    changes the picture; a model that takes one source is one error line."""
    import numpy as np

    from thinkgen.cli import main

    release.save_pretrained(tmp_path / "release")
    for seed in range(3):
        source_image(seed, 40, 24).save(tmp_path / f"{seed}.png")
    drawn = []
    for second in ("1.png", "2.png"):
        target = tmp_path / f"with-{second}"
        assert main(["edit", str(tmp_path / "0.png"), "put it on the square", "--and-image", str(tmp_path / second),
                     "--model", str(tmp_path / "release"), "--no-think", "--steps", "2", "--height", "32",
                     "--width", "32", "-o", str(target)]) == 0
        drawn.append(np.asarray(Image.open(target)))
    assert drawn[0].shape == (32, 32, 3) and not np.array_equal(*drawn)
    assert main(["init", str(tmp_path / "tiny")]) == 0
    capsys.readouterr()
    assert main(["edit", str(tmp_path / "0.png"), "x", "--and-image", str(tmp_path / "1.png"),
                 "--model", str(tmp_path / "tiny"), "-o", str(tmp_path / "no.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["thinkgen: error: this model takes at most 1 source image per prompt, got 2"]
    assert not (tmp_path / "no.png").exists()


def test_edit_guidance_calls_three_branches_with_an_image_scale(release):
    seen = []

    class Spy:
        def __init__(self, backend):
            self.backend = backend

        def __call__(self, tokens, sigma, text, text_mask, grid, reference=None):
            seen.append(reference is not None)
            return self.backend(tokens, sigma, text, text_mask, grid, reference)

    backend, release.backend = release.backend, Spy(release.backend)
    try:
        for image_cfg in (1.0, 2.0):
            release(["make it blue"], think=False, images=[[source_image(0)]], image_guidance_scale=image_cfg,
                    num_inference_steps=1, output_type="pt")
    finally:
        release.backend = backend
    # image scale 1: [text + image, negative]; image scale 2: [text + image, negative, negative + image]
    assert seen == [True, False, True, False, True]


def test_the_release_resolution_rule_draws_within_max_pixels_and_resizes_back():
    """``release_resolution``: above ``max_pixels`` the release draws smaller (sides floored to 16) and
    resizes the picture back bilinearly before the clamp; off (thinkgen's default) it draws the request."""

    pipe = tiny_thinkgen_release()
    pipe.conditioning.max_pixels = 32 * 32
    seen = {}

    def keep(step, latents):
        seen["x"] = latents.clone()

    native = pipe("a red circle", think=False, seed=1, height=64, width=64, num_inference_steps=2,
                  output_type="pt", step_callback=keep).images
    assert native.shape[-2:] == (64, 64) and seen["x"].shape[1] == pipe.token_grid(64, 64)[0] * pipe.token_grid(64, 64)[1]
    pipe.conditioning.release_resolution = True
    assert pipe.conditioning.draw_size(64, 64) == (32, 32) and pipe.conditioning.draw_size(32, 48) == (16, 32)
    resized = pipe("a red circle", think=False, seed=1, height=64, width=64, num_inference_steps=2,
                   output_type="pt", step_callback=keep).images
    grid = pipe.token_grid(32, 32)
    assert resized.shape[-2:] == (64, 64) and seen["x"].shape[1] == grid[0] * grid[1]
    assert torch.equal(resized, pipe.decode(seen["x"], 32, 32, (64, 64)).cpu())
    assert pipe.conditioning.settings()["release_resolution"] is True
    with pytest.raises(ValueError, match="under 16 pixels"):
        pipe.conditioning.draw_size(16, 16384)
