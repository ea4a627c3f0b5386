"""The ``autoencoder`` stage (a ShapeWorld AutoencoderKL) and DiT stages that draw its latents."""

import pytest
import torch
from diffusers import AutoencoderKL

from thinkgen import ThinkGenPipeline, tiny_pipeline
from thinkgen.generator import encode_images
from thinkgen.train import config as C
from thinkgen.train.loop import train
from thinkgen.train.run import build_stage


def ae_config(out, steps=30):
    return C.from_dict({
        "stage": "autoencoder", "output_dir": str(out),
        "run": {"steps": steps, "batch_size": 8, "log_every": 10, "save_every": 100, "seed": 0},
        "optim": {"lr": 3e-3, "warmup_steps": 2},
        "data": {"cache_size": 32},
        "ae": {"block_out_channels": [8, 8], "latent_channels": 4, "norm_num_groups": 4, "resolution": 32},
    })


@pytest.fixture(scope="module")
def ae_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("ae")
    return train(ae_config(out, steps=4), build_stage(ae_config(out, steps=4)), progress=False)


def test_autoencoder_learns_to_reconstruct(tmp_path):
    config = ae_config(tmp_path)
    stage = build_stage(config)
    fixed = stage.batch(0, 0, 8)
    with torch.no_grad():
        start = stage.model(fixed).item()
    train(config, stage, progress=False)
    with torch.no_grad():
        end = stage.model(fixed).item()
    assert end < 0.7 * start, (start, end)


def test_autoencoder_text_fraction_caches_train_words(tmp_path):
    """data.text_fraction: that share of the cached scenes are text-suite train words alone, at the
    autoencoder's resolution; without it the cache is random scenes as before."""
    from thinkgen.world import suites
    from thinkgen.world.parse import parse

    config = C.from_dict({**ae_config(tmp_path).to_dict(), "data": {"cache_size": 20, "text_fraction": 0.5},
                          "ae": {"block_out_channels": [8, 8], "latent_channels": 4, "norm_num_groups": 4,
                                 "resolution": 64}})
    stage = build_stage(config)
    readings = [parse(image.numpy()) for image in stage.images]
    words = [r.text for r in readings if r.text and not r.objects]
    test_words = {item.target.text for item in suites.text_items(2000, "test")}
    assert len(words) >= 10 and not set(words) & test_words
    assert stage.images.shape == (20, 64, 64, 3)
    plain = build_stage(ae_config(tmp_path))
    assert sum(bool(parse(image.numpy()).objects) for image in plain.images) >= 24  # mostly object scenes


def test_saved_autoencoder_has_unit_latents(ae_dir):
    """finalize writes shift and scale so that the held-back scenes' latents have mean 0, std 1."""
    vae = AutoencoderKL.from_pretrained(ae_dir)
    stage = build_stage(ae_config(ae_dir.parent, steps=4))
    images = stage.held_out.permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        z = encode_images(vae, images)  # (N, 4, 16, 16)
    assert z.shape[1:] == (4, 16, 16)
    assert abs(z.mean().item()) < 1e-4 and abs(z.std().item() - 1) < 1e-3


def test_config_checks_the_autoencoder_shape():
    with pytest.raises(C.ConfigError, match="text"):
        C.from_dict({"stage": "autoencoder", "output_dir": "x", "ae": {"resolution": 16}})
    with pytest.raises(C.ConfigError, match="multiples of"):
        C.from_dict({"stage": "autoencoder", "output_dir": "x", "ae": {"block_out_channels": [8, 12]}})
    with pytest.raises(C.ConfigError, match="resolution"):
        C.from_dict({"stage": "autoencoder", "output_dir": "x", "ae": {"block_out_channels": [8, 8, 8],
                                                                        "resolution": 34}})


def test_dit_stage_draws_the_autoencoders_latents(ae_dir, tmp_path):
    thinker_dir = tmp_path / "thinker"
    tiny_pipeline(seed=0).save_pretrained(thinker_dir)
    config = C.from_dict({
        "stage": "dit_pretrain", "output_dir": str(tmp_path / "dit"), "thinker_dir": str(thinker_dir),
        "run": {"steps": 2, "batch_size": 4, "save_every": 100, "seed": 0},
        "data": {"cache_size": 8},
        "dit": {"width": 32, "num_layers": 1, "num_heads": 2, "text_width": 16, "patch": 2, "num_prepadding": 2,
                "resolution": 32, "autoencoder": str(ae_dir)},
    })
    stage = build_stage(config)
    batch = stage.batch(0, 0, 4)
    assert batch["x0"].shape == (4, 8 * 8, 4 * 2 * 2)  # 32 px / f 2 = 16 latent px, patch 2: 8 x 8 tokens of C p p
    # the cached latents are the autoencoder's encoding of the rendered scenes
    pixels = stage.images[:2].permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        torch.testing.assert_close(stage.latents[:2], encode_images(stage.pipe.vae, pixels))
    final = train(config, stage, progress=False)
    pipe = ThinkGenPipeline.from_pretrained(final)
    assert isinstance(pipe.vae, AutoencoderKL) and pipe.multiple == 4
    image = pipe(["a red circle"], think=False, num_inference_steps=2).images[0]
    assert image.size == (32, 32)
    with pytest.raises(C.ConfigError, match="autoencoder folder not found"):
        C.check_paths(C.from_dict({"stage": "dit_pretrain", "output_dir": str(tmp_path / "x"),
                                   "dit": {"autoencoder": str(tmp_path / "missing")}}))


def test_autoencoder_batch_does_not_depend_on_the_split(tmp_path):
    stage = build_stage(ae_config(tmp_path))
    whole = stage.batch(5, 0, 8)
    halves = [stage.batch(5, 0, 4), stage.batch(5, 4, 4)]
    for key in ("images", "noise"):
        assert torch.equal(whole[key], torch.cat([h[key] for h in halves]))
