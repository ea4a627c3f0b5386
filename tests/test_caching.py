"""Step caching through diffusers' hooks (thinkgen.caching): off changes nothing, on skips blocks."""

import pytest
import torch

from thinkgen.caching import cache_config
from thinkgen.tiny import tiny_pipeline, tiny_thinkgen_release


def test_cache_names_and_options():
    from diffusers.hooks import FirstBlockCacheConfig, TaylorSeerCacheConfig

    assert cache_config("first_block:threshold=0.2").threshold == 0.2
    assert isinstance(cache_config("first_block"), FirstBlockCacheConfig)
    config = cache_config("taylorseer:cache_interval=3,max_order=2")
    assert isinstance(config, TaylorSeerCacheConfig) and (config.cache_interval, config.max_order) == (3, 2)
    for bad, message in [("warp", "unknown cache"), ("first_block:speed=2", "takes threshold"),
                         ("first_block:threshold=x", "must be a number"), ("taylorseer:cache_interval=1.5", "integer"),
                         ("first_block:threshold=-1", ">= 0"), ("first_block:threshold", "takes threshold")]:
        with pytest.raises(ValueError, match=message):
            cache_config(bad)


def count_calls(module):
    calls = {"n": 0}

    def hook(*_):
        calls["n"] += 1

    return calls, module.register_forward_hook(hook)


@pytest.mark.parametrize("make, blocks", [(lambda: tiny_pipeline(seed=0), "transformer_blocks"),
                                          (tiny_thinkgen_release, "layers")])
def test_a_cache_that_never_reuses_changes_nothing_and_one_that_does_skips_blocks(make, blocks):
    pipe = make()
    settings = dict(think=False, seed=0, output_type="pt", height=32, width=32, num_inference_steps=8,
                    guidance_scale=4.0, negative_prompt="")
    last = getattr(pipe.transformer, blocks)[-1].attn  # runs only when its block is computed, not reused
    calls, handle = count_calls(last)
    plain = pipe(["a red circle", "two blue squares"], **settings).images
    plain_calls = calls["n"]
    pipe.enable_cache("first_block:threshold=0")  # always computes: the hooks alone change nothing
    assert torch.equal(pipe(["a red circle", "two blue squares"], **settings).images, plain)
    pipe.enable_cache("first_block:threshold=10")  # reuses the tail after the first step of each branch
    calls["n"] = 0
    cached = pipe(["a red circle", "two blue squares"], **settings).images
    assert calls["n"] < plain_calls / 2 and cached.isfinite().all() and not torch.equal(cached, plain)
    again = pipe(["a red circle", "two blue squares"], **settings).images
    assert torch.equal(cached, again)  # the state is reset between generations
    pipe.disable_cache()
    assert torch.equal(pipe(["a red circle", "two blue squares"], **settings).images, plain)
    handle.remove()


def test_taylorseer_needs_an_output_projection():
    with pytest.raises(ValueError, match="use first_block"):
        tiny_thinkgen_release().enable_cache("taylorseer:cache_interval=2")
    pipe = tiny_pipeline(seed=0)  # Qwen-Image's DiT has proj_out
    plain = pipe(["a red circle"], think=False, seed=0, output_type="pt", num_inference_steps=8).images
    pipe.enable_cache("taylorseer:cache_interval=2,disable_cache_before_step=2")
    cached = pipe(["a red circle"], think=False, seed=0, output_type="pt", num_inference_steps=8).images
    assert cached.isfinite().all() and not torch.equal(cached, plain)
