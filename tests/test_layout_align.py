"""Layout alignment (train/layout_align.py): exact per-token labels of ShapeWorld scenes, and a DiT
stage that trains a head on an early block with them."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from thinkgen import tiny_pipeline
from thinkgen.train import config as C
from thinkgen.train.layout_align import LAYOUT_CLASSES, layout_map, token_layouts
from thinkgen.train.loop import latest_checkpoint, train
from thinkgen.train.run import build_stage
from thinkgen.world.render import render
from thinkgen.world.scene import BACKGROUNDS, COLORS, INK, Object, Scene, SceneSampler


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny") / "pipe"
    tiny_pipeline(seed=0).save_pretrained(folder)
    return folder


def config(tiny_dir, out, weight=0.5, layer=0, **run):
    return C.from_dict({
        "stage": "dit_pretrain", "output_dir": str(out), "init": str(tiny_dir),
        "run": {"steps": 4, "batch_size": 4, "log_every": 2, "save_every": 2, "seed": 3, **run},
        "optim": {"lr": 1e-3, "warmup_steps": 1},
        "data": {"cache_size": 16, "caption_dropout": 0.2},
        "layout_align": {"weight": weight, "layer": layer},
        "ema_decay": 0.9,
    })


def test_layout_map_names_every_pixel_the_renderer_draws():
    sampler = SceneSampler(max_objects=4, rng=random.Random(0))
    scenes = [sampler() for _ in range(20)] + [Scene((Object("star", "red", 0.5, 0.3),), "black", text="AB")]
    for scene in scenes:
        image, classes = render(scene, 32), layout_map(scene, 32)
        for index in np.unique(classes):
            name = LAYOUT_CLASSES[index]
            if name == "background":
                colour = BACKGROUNDS[scene.background]
            elif name == "text":
                colour = INK[scene.ink]
            else:
                colour = COLORS[name.split()[0]]
            assert (image[classes == index] == colour).all(), (scene, name)


def test_token_layouts_are_the_shares_of_each_class_per_token():
    square = Scene((Object("square", "blue", 0.25, 0.25, size=0.25),))  # pixels 4-11 of 32: tokens 1-2
    shares, known = token_layouts([square, None], 32, 8)
    assert shares.shape == (2, 64, len(LAYOUT_CLASSES)) and known.tolist() == [True, False]
    assert torch.allclose(shares[0].float().sum(-1), torch.ones(64)) and (shares[1] == 0).all()
    blue = LAYOUT_CLASSES.index("blue square")
    covered = shares[0, :, blue].view(8, 8)
    assert (covered[1:3, 1:3] == 1).all() and covered.sum() == 4  # an 8 px square on the 4 px token grid
    with pytest.raises(ValueError, match="does not split"):
        token_layouts([square], 32, 5)


def test_a_dit_stage_with_layout_alignment_trains_the_head_and_saves_a_plain_pipeline(tiny_dir, tmp_path):
    plain = build_stage(config(tiny_dir, tmp_path / "plain", weight=0.0))
    stage = build_stage(config(tiny_dir, tmp_path / "aligned"))
    batch = stage.batch(0, 0, 4)
    assert batch["layout"].shape[:2] == batch["x0"].shape[:2] and batch["layout_known"].all()
    torch.manual_seed(0)
    stage.model.train()
    with_layout = stage.model(batch)
    assert torch.isfinite(stage.model.last_layout_loss) and stage.model.last_layout_loss > 0
    # the flow part is FlowModule's own loss on the same weights: the total adds weight x layout loss
    flow_only = plain.model.__class__.forward(stage.model, {k: v for k, v in batch.items() if not k.startswith("layout")})
    assert torch.allclose(with_layout, flow_only + 0.5 * stage.model.last_layout_loss, atol=1e-6)

    head_before = {k: v.clone() for k, v in stage.model.head.state_dict().items()}
    out = train(config(tiny_dir, tmp_path / "aligned"), stage, progress=False)
    assert any(not torch.equal(head_before[k], v) for k, v in stage.model.head.state_dict().items())
    assert "train/layout_loss" in stage.metrics
    saved = load_file(latest_checkpoint(tmp_path / "aligned" / "checkpoints") / "model.safetensors")
    assert any(k.startswith("head.") for k in saved)  # resumable: the head is in the checkpoint ...
    pipeline_weights = load_file(out / "transformer" / "diffusion_pytorch_model.safetensors")
    assert not any("head" in k for k in pipeline_weights)  # ... not in the pipeline it saves
    assert plain.metrics == {}


def test_layout_alignment_compiles_to_the_same_weights(tiny_dir, tmp_path):
    eager = build_stage(config(tiny_dir, tmp_path / "a", steps=2))
    train(config(tiny_dir, tmp_path / "a", steps=2), eager, progress=False)
    compiled = build_stage(config(tiny_dir, tmp_path / "b", steps=2, compile=True))
    train(config(tiny_dir, tmp_path / "b", steps=2, compile=True), compiled, progress=False)
    a, b = eager.model.state_dict(), compiled.model.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4) for k in a)


def test_layout_alignment_refuses_what_it_cannot_do(tiny_dir, tmp_path):
    with pytest.raises(C.ConfigError, match="layout_align"):
        C.from_dict({"stage": "dit_connector", "output_dir": str(tmp_path), "layout_align": {"weight": 1.0}})
    with pytest.raises(C.ConfigError, match="layer 9"):  # the CLI prints it as one error line
        build_stage(config(tiny_dir, tmp_path / "deep", layer=9))
