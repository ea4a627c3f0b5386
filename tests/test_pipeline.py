import json

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from PIL import Image

from thinkgen import Bridge, PipelineLoadError, ThinkGenPipeline, tiny_pipeline
from thinkgen.generator import spatial_factor

from .test_generator import tiny_dit, tiny_kl


def images_of(pipe, prompts, **kwargs):
    options = {"num_inference_steps": 3, "seed": 5, "output_type": "pt"}
    return pipe(prompts, **{**options, **kwargs})


@pytest.mark.parametrize("think", [True, False])
def test_save_load_round_trip(pipe, tmp_path, think):
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["thinker"] == ["transformers", "Qwen3ForCausalLM"]
    assert index["transformer"] == ["diffusers", "QwenImageTransformer2DModel"]
    assert index["bridge"] == ["thinkgen", "Bridge"]
    for folder in ("thinker", "bridge", "transformer", "vae"):
        assert list((tmp_path / folder).glob("*.safetensors")), folder
        assert not list((tmp_path / folder).glob("*.bin")) and not list((tmp_path / folder).glob("*.pt"))
    assert (tmp_path / "tokenizer" / "tokenizer.json").exists()
    loaded = ThinkGenPipeline.from_pretrained(tmp_path)
    for name, module in pipe.components.items():
        if isinstance(module, torch.nn.Module):
            theirs = loaded.components[name].state_dict()
            assert all(torch.equal(v, theirs[k]) for k, v in module.state_dict().items()), name
    assert loaded.thinker.config == pipe.thinker.config and loaded.defaults == pipe.defaults
    a, b = images_of(pipe, ["a red circle"], think=think), images_of(loaded, ["a red circle"], think=think)
    assert torch.equal(a.images, b.images)
    assert a.reasoning == b.reasoning and a.rewritten == b.rewritten


def test_outputs(pipe):
    out = pipe(["a red circle", "a star"], num_inference_steps=2, num_images_per_prompt=3, seed=1)
    assert len(out.images) == 6 and all(isinstance(im, Image.Image) for im in out.images)
    assert out.images[0].size == (32, 32)
    assert len(out.reasoning) == len(out.rewritten) == 6
    wide = images_of(pipe, ["x"], height=16, width=48)
    assert wide.images.shape == (1, 3, 16, 48)
    assert wide.images.min() >= 0 and wide.images.max() <= 1


def test_seeds_and_batch_independence(pipe):
    one = images_of(pipe, ["a red circle"], seed=3).images
    again = images_of(pipe, ["a red circle"], seed=3).images
    other = images_of(pipe, ["a red circle"], seed=4).images
    assert torch.equal(one, again) and not torch.allclose(one, other)
    # image i of a call uses seed + i, so a batch holds the same pictures as single calls
    both = images_of(pipe, ["a red circle", "a blue square"], seed=3, think=False).images
    second = images_of(pipe, ["a blue square"], seed=4, think=False).images
    torch.testing.assert_close(both[0], images_of(pipe, ["a red circle"], seed=3, think=False).images[0],
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(both[1], second[0], atol=1e-5, rtol=0)


def test_prompt_and_guidance_matter(pipe):
    base = images_of(pipe, ["a red circle"], think=False).images
    assert not torch.allclose(base, images_of(pipe, ["a green star"], think=False).images)
    assert not torch.allclose(base, images_of(pipe, ["a red circle"], think=False, guidance_scale=1.0).images)


def test_reference_image_path(pipe):
    source = Image.new("RGB", (32, 32), (255, 0, 0))
    plain = images_of(pipe, ["make it blue"]).images
    edited = images_of(pipe, ["make it blue"], images=[[source]]).images
    assert edited.shape == plain.shape and not torch.allclose(edited, plain)
    two_way = images_of(pipe, ["make it blue"], images=[[source]], image_guidance_scale=1.0).images
    assert not torch.allclose(edited, two_way)  # the image-CFG branch changes the result
    with pytest.raises(ValueError, match="at most 1 source image per prompt, got 2"):
        pipe(["make it blue"], images=[[source, source]])  # only the ThinkGen release's DiT takes several


def test_bad_arguments(pipe):
    for size in ({"height": 30}, {"width": 0}, {"height": -4}):
        with pytest.raises(ValueError, match="multiple of 4"):
            pipe(["x"], **size)
    with pytest.raises(ValueError):
        pipe(["x"], num_images_per_prompt=0)
    with pytest.raises(ValueError):
        pipe(["x"], output_type="latent")


def test_component_mismatch_is_reported(pipe):
    with pytest.raises(ValueError, match="bridge expects"):
        ThinkGenPipeline(pipe.thinker, Bridge(7, 32), pipe.transformer, pipe.vae, pipe.scheduler)


def test_autoencoder_kl_pipeline(pipe, tmp_path):
    """Any diffusers AutoencoderKL works: 4 latent channels, factor 2, packed 2x2 like Qwen-Image."""
    vae = tiny_kl()
    bridge = Bridge(pipe.thinker.state_dim, 16, num_prepadding=4)
    kl_pipe = ThinkGenPipeline(pipe.thinker, bridge, tiny_dit(in_channels=16, text=16), vae,
                               FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True))
    assert kl_pipe.patch == 2 and kl_pipe.multiple == 4 == spatial_factor(vae) * 2
    out = images_of(kl_pipe, ["a red circle"], height=16, width=24)
    assert out.images.shape == (1, 3, 16, 24)
    kl_pipe.save_pretrained(tmp_path)
    loaded = ThinkGenPipeline.from_pretrained(tmp_path)
    assert type(loaded.vae).__name__ == "AutoencoderKL"
    assert torch.equal(images_of(loaded, ["a red circle"], height=16, width=24).images, out.images)


def test_broken_folders(pipe, tmp_path):
    with pytest.raises(PipelineLoadError, match="not found"):
        ThinkGenPipeline.from_pretrained(tmp_path / "missing")
    with pytest.raises(PipelineLoadError, match="no model_index.json"):
        ThinkGenPipeline.from_pretrained(tmp_path)
    folder = tmp_path / "pipe"
    pipe.save_pretrained(folder)
    index = json.loads((folder / "model_index.json").read_text())

    (folder / "model_index.json").write_text("{not json")
    with pytest.raises(PipelineLoadError, match="not valid JSON"):
        ThinkGenPipeline.from_pretrained(folder)

    # only transformers, diffusers and thinkgen classes may be instantiated
    (folder / "model_index.json").write_text(json.dumps({**index, "vae": ["os", "system"]}))
    with pytest.raises(PipelineLoadError, match="unsupported class"):
        ThinkGenPipeline.from_pretrained(folder)

    (folder / "model_index.json").write_text(json.dumps(index))
    weights = next((folder / "transformer").glob("*.safetensors"))
    weights.write_bytes(b"\x00garbage")
    with pytest.raises(PipelineLoadError, match="transformer/diffusion_pytorch_model.safetensors: not a safetensors file"):
        ThinkGenPipeline.from_pretrained(folder)

    del index["bridge"]
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(PipelineLoadError, match="lacks components"):
        ThinkGenPipeline.from_pretrained(folder)


def test_tiny_options():
    ablation = tiny_pipeline(num_prepadding=0, connector="mlp", extract="all")
    assert ablation.bridge.num_prepadding == 0 and ablation.thinker.config.extract == "all"
    assert images_of(ablation, ["x"]).images.shape == (1, 3, 32, 32)


def test_reencode_conditioning_reads_the_rewrite_alone(tmp_path):
    """``thinkgen-reencode``: think mode conditions on the rewrite encoded again in direct mode
    (T2G's reason, rewrite, re-encode); direct mode is ``thinkgen``'s; the name survives a save."""
    from thinkgen.conditioning import build_conditioning

    pipe = tiny_pipeline(seed=0)
    reencode = build_conditioning("thinkgen-reencode", pipe.thinker, pipe.bridge)
    prompts = ["a red circle", "two blue squares"]
    cond = reencode.encode(prompts, think=True, seed=3)
    thought = pipe.thinker.encode(prompts, think=True, seed=3)
    assert cond.reasoning == thought.reasoning and cond.rewritten == thought.rewritten
    reread = pipe.conditioning.encode(thought.rewritten, think=False, seed=3)
    assert torch.equal(cond.text, reread.text) and torch.equal(cond.mask, reread.mask)
    in_context = pipe.conditioning.encode(prompts, think=True, seed=3)  # the states after </think>
    assert cond.text.shape != in_context.text.shape or not torch.allclose(cond.text, in_context.text)
    direct = reencode.encode(prompts, think=False, seed=3)
    assert torch.equal(direct.text, pipe.conditioning.encode(prompts, think=False, seed=3).text)
    pipe.conditioning = reencode
    pipe.save_pretrained(tmp_path)
    loaded = ThinkGenPipeline.from_pretrained(tmp_path)
    assert loaded.conditioning.name == "thinkgen-reencode"
    a, b = images_of(pipe, prompts, think=True), images_of(loaded, prompts, think=True)
    assert torch.equal(a.images, b.images)


def test_the_noise_is_drawn_where_generator_device_says(pipe):
    """The CPU by default; naming it changes nothing; a device this machine lacks is one clear error
    (on a GPU, ``generator_device="cuda"`` draws the releases' own noise for a seed)."""
    from thinkgen.pipeline import noise_device

    default = pipe("a red circle", think=False, seed=3, num_inference_steps=2, output_type="pt").images
    named = pipe("a red circle", think=False, seed=3, num_inference_steps=2, output_type="pt",
                 generator_device="cpu").images
    assert torch.equal(default, named)
    noise = pipe.initial_noise([5], 32, 32, torch.device("cpu"))
    assert torch.equal(noise, pipe.initial_noise([5], 32, 32)) and not torch.equal(noise, pipe.initial_noise([6], 32, 32))
    with pytest.raises(ValueError, match="generator_device cuda:99: no such GPU here"):
        pipe("a red circle", think=False, num_inference_steps=2, generator_device="cuda:99")
    with pytest.raises(ValueError, match="is not a device"):
        noise_device("somewhere")


def test_to_pil_takes_pixels_that_carry_gradients(pipe):
    """A reward that decodes inside a graph (TRL's reward functions, RL rollouts) gets its pictures:
    to_pil reads the values, never the graph (issue 45: bench_grpo.py had stopped there)."""
    from thinkgen.pipeline import to_pil

    pixels = torch.rand(2, 3, 8, 8, requires_grad=True) * 1.0  # a non-leaf that requires grad
    images = to_pil(pixels)
    assert len(images) == 2 and images[0].size == (8, 8)
    assert np.array_equal(np.asarray(images[1]), (pixels[1].detach().permute(1, 2, 0).numpy() * 255).round())
