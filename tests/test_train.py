"""Training: configs, the loop's exact resume and checkpoints, frozen parts, loss going down,
the word tokenizer, LoRA, and 2-process DDP = 1 process."""

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from thinkgen import ThinkGenPipeline, tiny_pipeline
from thinkgen.train import config as C
from thinkgen.train.loop import latest_checkpoint, train
from thinkgen.train.run import build_stage
from thinkgen.train.tokenizer import word_tokenizer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny") / "pipe"
    tiny_pipeline(seed=0).save_pretrained(folder)
    return folder


def dit_config(tiny_dir, out, stage="dit_pretrain", **run):
    return C.from_dict({
        "stage": stage, "output_dir": str(out), "init": str(tiny_dir),
        "run": {"steps": 6, "batch_size": 4, "log_every": 2, "save_every": 3, "keep_last": 2, "seed": 3, **run},
        "optim": {"lr": 1e-3, "warmup_steps": 2},
        "data": {"cache_size": 24, "caption_dropout": 0.3},
        "ema_decay": 0.9,
    })


def weights(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_config_loading(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"stage": "dit_pretrain", "output_dir": "x", "run": {"steps": 5}}))
    config = C.load(path, {"run.batch_size": 8, "optim.lr": 0.1})
    assert config.run.steps == 5 and config.run.batch_size == 8 and config.optim.lr == 0.1
    path.write_text(yaml.safe_dump({"stage": "dit_pretrain", "output_dir": "x", "run": {"stpes": 5}}))
    with pytest.raises(C.ConfigError, match="stpes"):
        C.load(path)
    with pytest.raises(C.ConfigError, match="stage"):
        C.from_dict({"stage": "dit_everything", "output_dir": "x"})
    with pytest.raises(C.ConfigError, match="not found"):
        C.load(tmp_path / "missing.yaml")
    path.write_text("stage: [unclosed")
    with pytest.raises(C.ConfigError, match="YAML"):
        C.load(path)
    recorded = sorted((ROOT / "configs" / "shapeworld").rglob("*.yaml")) + sorted((ROOT / "experiments").rglob("*.yaml"))
    for shipped in recorded:
        assert C.load(shipped).stage in C.STAGES  # every recipe we ship, and every one we recorded, parses


def test_config_base(tmp_path):
    """``base:`` reads another config first (relative to this file); sections merge key by key."""
    (tmp_path / "recipe").mkdir()
    (tmp_path / "recipe" / "stage.yaml").write_text(yaml.safe_dump({
        "stage": "dit_pretrain", "output_dir": "runs/a", "run": {"steps": 900, "batch_size": 32},
        "optim": {"lr": 6e-4}}))
    (tmp_path / "variant").mkdir()
    variant = tmp_path / "variant" / "stage.yaml"
    variant.write_text("base: ../recipe/stage.yaml\noutput_dir: runs/b\nrun: {steps: 700}\n")
    config = C.load(variant, {"optim.lr": 1e-4})
    assert config.output_dir == "runs/b" and config.stage == "dit_pretrain"
    assert config.run.steps == 700 and config.run.batch_size == 32  # the section merged, not replaced
    assert config.optim.lr == 1e-4  # --set still wins over both files
    # a chain of bases, and its errors: a loop, a missing file, a base that is not a path
    (tmp_path / "variant" / "twice.yaml").write_text("base: stage.yaml\nrun: {batch_size: 8}\n")
    twice = C.load(tmp_path / "variant" / "twice.yaml")
    assert (twice.output_dir, twice.run.steps, twice.run.batch_size) == ("runs/b", 700, 8)
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\nstage: dit_pretrain\n")
    with pytest.raises(C.ConfigError, match="loops back"):
        C.load(tmp_path / "loop.yaml")
    variant.write_text("base: ../recipe/missing.yaml\n")
    with pytest.raises(C.ConfigError, match="not found: .*missing.yaml"):
        C.load(variant)
    variant.write_text("base: [../recipe/stage.yaml]\n")
    with pytest.raises(C.ConfigError, match="'base' must be the path"):
        C.load(variant)
    # the layout variants are written as bases plus their differences
    short5 = C.load(ROOT / "configs/shapeworld/latent_layout_short5/5_thinker_grpo.yaml")
    plain = C.load(ROOT / "configs/shapeworld/latent/5_thinker_grpo.yaml")
    assert short5.run.steps == 450 and plain.run.steps == 600
    assert short5.rl == plain.rl and short5.optim == plain.optim


def stop_at(stage, stop_step):
    """Make a stage raise KeyboardInterrupt (as Ctrl-C does) when the loop reaches ``stop_step``."""
    original = stage.batch

    def batch(step, start, size):
        if step == stop_step:
            raise KeyboardInterrupt
        return original(step, start, size)

    stage.batch = batch
    return stage


def test_exact_resume(tiny_dir, tmp_path):
    """2N steps in one go = N steps, stop, resume, N steps: identical weights, bit for bit."""
    straight = build_stage(dit_config(tiny_dir, tmp_path / "a", steps=6, save_every=100))
    train(dit_config(tiny_dir, tmp_path / "a", steps=6, save_every=100), straight, progress=False)

    first = stop_at(build_stage(dit_config(tiny_dir, tmp_path / "b", steps=6, save_every=100)), 3)
    with pytest.raises(KeyboardInterrupt):
        train(dit_config(tiny_dir, tmp_path / "b", steps=6, save_every=100), first, progress=False)
    resumed = build_stage(dit_config(tiny_dir, tmp_path / "b", steps=6, save_every=100))  # a fresh process
    train(dit_config(tiny_dir, tmp_path / "b", steps=6, save_every=100), resumed, resume=True, progress=False)

    a, b = weights(straight.model), weights(resumed.model)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ema_a = load_file(latest_checkpoint(tmp_path / "a" / "checkpoints") / "ema.safetensors")
    ema_b = load_file(latest_checkpoint(tmp_path / "b" / "checkpoints") / "ema.safetensors")
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)
    # the final pipeline carries the EMA weights and loads back
    loaded = ThinkGenPipeline.from_pretrained(tmp_path / "a" / "final")
    assert torch.equal(loaded.bridge.prepadding_states, ema_a["bridge.prepadding_states"])


def test_checkpoints_are_atomic_and_pruned(tiny_dir, tmp_path):
    config = dit_config(tiny_dir, tmp_path, steps=6, save_every=2, keep_last=2)
    train(config, build_stage(config), progress=False)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step-000004", "step-000006"]  # keep_last=2, no temporary folders left
    files = {p.name for p in (tmp_path / "checkpoints" / "step-000006").iterdir()}
    assert files == {"model.safetensors", "ema.safetensors", "optimizer.safetensors", "optimizer.json",
                     "trainer_state.json", "manifest.json"}
    assert json.loads((tmp_path / "checkpoints" / "step-000006" / "trainer_state.json").read_text())["step"] == 6
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/lr", "train/grad_norm", "train/samples_per_s"} <= set(events.Tags()["scalars"])


@pytest.mark.parametrize("stage,trained,frozen", [
    ("dit_connector", ["bridge"], ["transformer", "thinker"]),
    ("dit_pretrain", ["bridge", "transformer"], ["thinker"]),
    ("dit_finetune", ["bridge", "transformer"], ["thinker"]),
])
def test_frozen_parts_stay_frozen(tiny_dir, tmp_path, stage, trained, frozen):
    config = dit_config(tiny_dir, tmp_path, stage=stage, steps=3)
    built = build_stage(config)
    parts = {"bridge": built.pipe.bridge, "transformer": built.pipe.transformer, "thinker": built.pipe.thinker.model}
    before = {name: weights(module) for name, module in parts.items()}
    config.ema_decay = 0.0
    train(config, built, progress=False)
    for name in trained:
        after = weights(parts[name])
        assert any(not torch.equal(before[name][k], after[k]) for k in after), f"{name} did not train"
    for name in frozen:
        after = weights(parts[name])
        assert all(torch.equal(before[name][k], after[k]) for k in after), f"{name} changed"


def test_interrupt_writes_a_checkpoint(tiny_dir, tmp_path):
    config = dit_config(tiny_dir, tmp_path, steps=6, save_every=100)
    stage = stop_at(build_stage(config), 4)
    with pytest.raises(KeyboardInterrupt):
        train(config, stage, progress=False)
    assert latest_checkpoint(tmp_path / "checkpoints").name == "step-000004"
    train(config, build_stage(config), resume=True, progress=False)
    assert latest_checkpoint(tmp_path / "checkpoints").name == "step-000006"


def thinker_config(out, stage="thinker_pretrain", init=None, **extra):
    return C.from_dict({
        "stage": stage, "output_dir": str(out), "init": init,
        "run": {"steps": 40, "batch_size": 16, "log_every": 10, "save_every": 100, "seed": 0},
        "optim": {"lr": 3e-3, "warmup_steps": 5},
        "data": {"knowledge_repeats": 1, "captions": 100, "reasoning_examples": 60, "composition_examples": 30},
        "thinker": {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64, **extra},
    })


def test_thinker_loss_decreases_and_lora(tmp_path):
    config = thinker_config(tmp_path / "pre")
    stage = build_stage(config)
    fixed = stage.batch(0, 0, 16)
    with torch.no_grad():
        start = stage.model(fixed).item()
    final = train(config, stage, progress=False)
    with torch.no_grad():
        end = stage.model(fixed).item()
    assert end < start - 0.5, (start, end)

    lora = thinker_config(tmp_path / "lora", "thinker_sft", init=str(final), lora_rank=4)
    lora.run.steps = 10
    lora_stage = build_stage(lora)
    trainable = [n for n, p in lora_stage.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    merged = train(lora, lora_stage, progress=False)
    from thinkgen.train.thinker_stage import load_thinker

    model, tokenizer, thinker_cfg = load_thinker(merged)
    assert type(model).__name__ == "Qwen3ForCausalLM" and not any("lora" in k for k in model.state_dict())

    # a half-precision folder (as the embedded model ships) trains in float32, with a finite loss
    half = tmp_path / "half"
    shutil.copytree(final, half)
    model.half().save_pretrained(half / "thinker")
    assert load_thinker(half)[0].dtype == torch.float16
    sft = thinker_config(tmp_path / "sft16", "thinker_sft", init=str(half))
    sft_stage = build_stage(sft)
    assert all(p.dtype == torch.float32 for p in sft_stage.model.parameters())
    assert torch.isfinite(sft_stage.model(sft_stage.batch(0, 0, 8)))


def test_dit_loss_decreases(tiny_dir, tmp_path):
    config = dit_config(tiny_dir, tmp_path, steps=40, save_every=100)
    config.data.caption_dropout = 0.0
    stage = build_stage(config)
    fixed = stage.batch(0, 0, 4)
    with torch.no_grad():
        start = stage.model(fixed).item()
    train(config, stage, progress=False)
    with torch.no_grad():
        end = stage.model(fixed).item()
    assert end < 0.8 * start, (start, end)


def test_dit_timestep_shift_bends_the_training_sigmas(tiny_dir, tmp_path):
    """`data.timestep_shift`: the same draws, each sigma bent by flow.shift_sigmas (towards noise
    above 1); everything else in the batch is unchanged."""
    from thinkgen.flow import shift_sigmas

    plain = build_stage(dit_config(tiny_dir, tmp_path / "a")).batch(0, 0, 4)
    config = dit_config(tiny_dir, tmp_path / "b")
    config.data.timestep_shift = 3.0
    shifted = build_stage(config).batch(0, 0, 4)
    assert torch.allclose(shifted["sigma"], shift_sigmas(plain["sigma"], 3.0))
    assert bool((shifted["sigma"] > plain["sigma"]).all())
    assert torch.equal(shifted["x0"], plain["x0"]) and torch.equal(shifted["noise"], plain["noise"])
    with pytest.raises(C.ConfigError, match="timestep_shift"):
        C.from_dict({"stage": "dit_pretrain", "output_dir": str(tmp_path / "c"), "data": {"timestep_shift": 0}})


def test_dit_stage_from_a_half_precision_pipeline_trains_in_float32(tiny_dir, tmp_path):
    """The embedded model ships in fp16; a DiT stage that continues it must train fp32 weights."""
    pipe = ThinkGenPipeline.from_pretrained(tiny_dir)
    for module in (pipe.thinker.model, pipe.bridge, pipe.transformer):
        module.to(torch.float16)
    pipe.save_pretrained(tmp_path / "half")
    config = dit_config(tmp_path / "half", tmp_path / "out", stage="dit_finetune")
    stage = build_stage(config)
    assert all(p.dtype == torch.float32 for p in stage.model.parameters())
    assert torch.isfinite(stage.model(stage.batch(0, 0, 4)))


def test_held_out_statements_by_scene_or_by_caption():
    """The composition test's position and colour-binding statements never reach the DiT: by default
    no scene shows one; with held_out "captions" no caption says one, but such pictures appear."""
    from thinkgen.train.dit_stage import TrainingScenes, held_out_specs
    from thinkgen.world.rules import entails, satisfies

    forbidden = held_out_specs()

    def shows_one(scene):
        return len(scene.objects) >= 2 and any(satisfies(scene, t) for t in forbidden)

    by_scene = TrainingScenes(400, 0, 4, 0.5, "all")
    assert not any(shows_one(s) for s in by_scene.scenes)
    by_caption = TrainingScenes(400, 0, 4, 0.5, "all", held_out="captions")
    assert len(by_caption.targets) == len(by_caption.captions) == 400
    assert not any(entails(t, f) for t in by_caption.targets for f in forbidden)
    assert sum(shows_one(s) for s in by_caption.scenes) >= 20


def test_curated_subsets():
    """multi: two or more objects; relations: two objects placed relative to each other;
    multi_relations: every other scene a relation scene, the rest multi-object scenes of any size;
    relations_counting: every other scene a relation scene, the rest objects of one shape."""
    from thinkgen.train.dit_stage import TrainingScenes, _is_relation

    multi = TrainingScenes(300, 0, 4, 0.5, "multi")
    assert all(len(s.objects) >= 2 for s in multi.scenes)
    assert all(_is_relation(s) for s in TrainingScenes(100, 0, 4, 0.5, "relations").scenes)
    mixed = TrainingScenes(300, 0, 4, 0.5, "multi_relations")
    assert all(_is_relation(s) for s in mixed.scenes[::2])
    assert all(len(s.objects) >= 2 for s in mixed.scenes)
    assert any(len(s.objects) >= 3 for s in mixed.scenes[1::2])
    share = sum(map(_is_relation, mixed.scenes)) / 300
    assert share > sum(map(_is_relation, multi.scenes)) / 300 + 0.2
    counting = TrainingScenes(100, 0, 4, 0.5, "relations_counting")
    assert all(_is_relation(s) for s in counting.scenes[::2])
    others = counting.scenes[1::2]
    assert all(len(s.objects) >= 2 and len({o.shape for o in s.objects}) == 1 for s in others)
    assert any(len(s.objects) >= 3 for s in others)


def test_word_tokenizer():
    texts = ['as many squares as a tricycle has wheels, in the colour of a ripe banana', 'the text "3N2P"',
             "A ripe banana is yellow."]
    tokenizer = word_tokenizer(texts)
    for text in texts:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert tokenizer.unk_token_id not in ids
    assert tokenizer.convert_ids_to_tokens(tokenizer.encode('"3N2P"', add_special_tokens=False)) == \
        ['"', "3", "N", "2", "P", '"']
    for special in ("<think>", "</think>", "<|im_end|>"):
        assert len(tokenizer.encode(special, add_special_tokens=False)) == 1
    assert tokenizer.decode(tokenizer.encode(texts[2], add_special_tokens=False)) == texts[2]


def test_word_tokenizer_decodes_text_exactly_as_written():
    """Spaces live in the pieces, so capitals, digits, punctuation, double spaces and newlines
    come back as written (the old tokenizer decoded "So I" as "S o I")."""
    texts = ["So I draw two blue circles.", "The Earth's oceans:  blue\nThe text \"3N2P\"!", "<think> A violin has "
             "four strings. </think> four orange triangles<|im_end|>"]
    tokenizer = word_tokenizer(texts)
    for text in texts:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert tokenizer.unk_token_id not in ids and tokenizer.decode(ids) == text
    assert tokenizer.convert_ids_to_tokens(tokenizer.encode("So I", add_special_tokens=False)) == ["S", "o", "\u2581I"]
    ids = tokenizer.encode(texts[2], add_special_tokens=False)
    assert tokenizer.decode(ids, skip_special_tokens=True).strip() == \
        "A violin has four strings.  four orange triangles"
    chat = tokenizer.apply_chat_template([{"role": "user", "content": texts[0]}], tokenize=False,
                                         add_generation_prompt=True)
    assert tokenizer.decode(tokenizer.encode(chat, add_special_tokens=False)) == chat


def test_two_processes_match_one(tiny_dir, tmp_path):
    """DDP on CPU (gloo) with the global batch split in two gives the same weights as one process."""
    base = {"stage": "dit_pretrain", "init": str(tiny_dir),
            "run": {"steps": 4, "batch_size": 8, "log_every": 2, "save_every": 100, "seed": 5, "threads": 1},
            "optim": {"lr": 1e-3, "warmup_steps": 1}, "data": {"cache_size": 16}}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    results = {}
    for name, launcher in (("one", [sys.executable, "-m", "thinkgen.cli"]),
                           ("two", [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                                    "--master_port=29533", "-m", "thinkgen.cli"])):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**base, "output_dir": str(tmp_path / name)}))
        done = subprocess.run(launcher + ["train", str(path)], env=env, capture_output=True, text=True,
                              timeout=600, cwd=ROOT)
        assert done.returncode == 0, done.stderr[-3000:]
        if name == "two":  # really two ranks, not two single-process runs
            assert "training on 2 processes" in done.stdout + done.stderr
        results[name] = load_file(latest_checkpoint(tmp_path / name / "checkpoints") / "model.safetensors")
    for key, value in results["one"].items():
        torch.testing.assert_close(results["two"][key], value, atol=1e-5, rtol=1e-4)


def test_gradient_checkpointing_trains_the_same_weights(tiny_dir, tmp_path):
    """run.gradient_checkpointing switches each library's own checkpointing on; recomputing the
    activations in backward changes memory, not the result."""
    plain = build_stage(dit_config(tiny_dir, tmp_path / "a", steps=3, save_every=100))
    train(dit_config(tiny_dir, tmp_path / "a", steps=3, save_every=100), plain, progress=False)
    config = dit_config(tiny_dir, tmp_path / "b", steps=3, save_every=100, gradient_checkpointing=True)
    checkpointed = build_stage(config)
    train(config, checkpointed, progress=False)
    assert checkpointed.pipe.transformer.gradient_checkpointing
    a, b = weights(plain.model), weights(checkpointed.model)
    assert all(torch.allclose(a[k], b[k], atol=1e-6, rtol=0) for k in a)
    assert any(not torch.equal(a[k], v) for k, v in weights(build_stage(config).model).items())  # it trained


def test_compiled_forward_trains_the_same_weights_and_saves_plain_names(tiny_dir, tmp_path):
    """run.compile compiles only the forward call: the weights follow the eager run (up to the
    rounding of fused kernels) and checkpoints keep the model's own parameter names."""
    plain = build_stage(dit_config(tiny_dir, tmp_path / "a", steps=2, save_every=1))
    train(dit_config(tiny_dir, tmp_path / "a", steps=2, save_every=1), plain, progress=False)
    config = dit_config(tiny_dir, tmp_path / "b", steps=2, save_every=1, compile=True)
    compiled = build_stage(config)
    train(config, compiled, progress=False)
    a, b = weights(plain.model), weights(compiled.model)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4) for k in a)
    saved = load_file(latest_checkpoint(tmp_path / "b" / "checkpoints") / "model.safetensors")
    assert saved.keys() == load_file(latest_checkpoint(tmp_path / "a" / "checkpoints") / "model.safetensors").keys()
    assert not any("_orig_mod" in key for key in saved)
    with pytest.raises(C.ConfigError, match="run.compile"):
        C.from_dict({"stage": "thinker_grpo", "output_dir": str(tmp_path / "c"), "init": str(tiny_dir),
                     "run": {"compile": True}})


def test_dit_stage_reads_think_mode_states_for_a_share_of_captions(tiny_dir, tmp_path):
    """data.think_states: those captions' states are what the thinker hands the DiT after thinking
    (pipe(..., think=True)); the others keep their direct-mode states."""
    config = dit_config(tiny_dir, tmp_path)
    direct = build_stage(config)
    config.data.think_states = 0.5
    stage = build_stage(config)
    assert stage.captions == direct.captions

    def row(s, i):
        return s.states[i][s.masks[i].bool()]

    same = [i for i in range(len(stage.captions)) if row(stage, i).shape == row(direct, i).shape
            and torch.equal(row(stage, i), row(direct, i))]
    chosen = [i for i in range(len(stage.captions)) if i not in same]
    assert 4 <= len(chosen) <= 20  # about half of 24
    with torch.no_grad():
        thought = stage.pipe.thinker.encode([stage.captions[i] for i in chosen], think=True, seed=0)
    for k, i in enumerate(chosen):
        assert torch.equal(row(stage, i), thought.states[k][thought.mask[k].bool()].half())


def test_dit_stage_trains_edits_with_reference_tokens(tiny_dir, tmp_path):
    """data.edit_fraction: some steps are edits (source image as reference tokens, instruction as
    text, edited scene as target); the others are unchanged generation steps."""
    config = dit_config(tiny_dir, tmp_path, steps=4)
    plain = build_stage(config).batch(0, 0, 4)
    config.data.edit_fraction = 0.5
    stage = build_stage(config)
    kinds = ["reference" in stage.batch(step, 0, 4) for step in range(20)]
    assert 3 <= sum(kinds) <= 17  # about half of the steps are edits
    first_plain = kinds.index(False)
    assert torch.equal(stage.batch(first_plain, 0, 4)["x0"], build_stage(dit_config(tiny_dir, tmp_path)).batch(
        first_plain, 0, 4)["x0"])  # generation steps are the ones a run without edits trains on
    edit = stage.batch(kinds.index(True), 0, 4)
    assert edit["reference"].shape == edit["x0"].shape == plain["x0"].shape
    assert not torch.equal(edit["reference"], edit["x0"])  # the target is the edited scene
    with torch.no_grad():
        with_source = stage.model(edit).item()
        blank = stage.model({**edit, "reference": torch.zeros_like(edit["reference"])}).item()
    assert with_source != blank  # the DiT reads the reference tokens
    assert any(w in " ".join(stage.edits.instructions) for w in ("add", "remove", "make", "move", "replace"))
    train(config, stage, progress=False)  # edit and generation steps both train


def test_dit_stage_learns_to_fix_its_own_drawings(tiny_dir, tmp_path):
    """data.drawn_edits: a model's drawings judged wrong join the edits, the drawing itself as the
    reference and the parsed drawing with its fix, drawn clean, as the target."""
    import json

    import numpy as np
    from PIL import Image

    from thinkgen.world.corpora import drawn_reflection_row
    from thinkgen.world.parse import parse
    from thinkgen.world.render import render
    from thinkgen.world.rules import Requirement, Target
    from thinkgen.world.scene import Object, Scene

    folder = tmp_path / "drawn"
    (folder / "images").mkdir(parents=True)
    drawing = render(Scene((Object("circle", "red", 0.5, 0.5, 0.4),)), 32)
    drawing[:4] = 128  # a smudge the clean target does not have
    Image.fromarray(drawing).save(folder / "images/0.png")
    row = drawn_reflection_row("a blue circle", Target((Requirement("circle", color="blue"),)), parse(drawing))
    (folder / "rows.jsonl").write_text(json.dumps({"image": "images/0.png", **row}) + "\n")
    config = dit_config(tiny_dir, tmp_path / "run")
    with pytest.raises(C.ConfigError, match="edit_fraction"):
        C.from_dict({"stage": "dit_pretrain", "output_dir": "x", "data": {"drawn_edits": str(folder)}})
    one = C.from_dict({"stage": "dit_pretrain", "output_dir": "x",
                       "data": {"drawn_edits": str(folder), "drawn_reflection": str(folder), "edit_fraction": 0.5}})
    assert one.data.drawn_edits == one.data.drawn_reflection == [str(folder)]  # one folder: a list of one
    config.data.drawn_edits = [str(folder)]
    config.data.edit_fraction = 0.5
    stage = build_stage(config)
    assert stage.edits.instructions[-1] == "make the red circle blue"
    assert np.array_equal(stage.edits.source_images[-1], drawing)  # the drawing as it was drawn
    target = stage.edits.targets[-1]  # pixels in [-1, 1] (the tiny model's identity autoencoder)
    assert target[2, 16, 16] > 0.5 > target[0, 16, 16]  # blue where the red circle was
    assert (target[:, :4] == 1).all()  # drawn clean: white where the smudge was
    config.data.drawn_edits = [str(folder), str(folder)]
    assert len(build_stage(config).edits.instructions) == len(stage.edits.instructions) + 1
    Image.fromarray(render(Scene((Object("circle", "red", 0.5, 0.5, 0.4),)), 48)).save(folder / "images/0.png")
    with pytest.raises(ValueError, match="48 x 48 px, the DiT draws 32 px"):
        build_stage(config)


def test_dit_stage_replays_a_models_own_drawings(tiny_dir, tmp_path):
    """data.replay: a model's direct-mode drawings (a `thinkgen eval --no-think` folder) join the
    training scenes under their prompts, with direct-mode states even when data.think_states reads
    the other captions in think mode; data.replay_select "right" keeps only those scored right;
    think-mode folders are refused."""
    import numpy as np
    from PIL import Image

    from thinkgen.eval.shapeworld import run_suite

    drawn = tmp_path / "drawn"
    pipe = ThinkGenPipeline.from_pretrained(tiny_dir)
    run_suite(pipe, "reasoning", drawn, think=False, n_per_prompt=2, n_items=3, split="train",
              num_inference_steps=2, progress=False)
    rows = [json.loads(line) for line in (drawn / "items.jsonl").read_text().splitlines()]
    config = dit_config(tiny_dir, tmp_path / "run")
    config.data.think_states = 1.0  # every scene caption in think mode; the replayed prompts not
    plain = build_stage(config)
    assert C.from_dict({"stage": "dit_pretrain", "output_dir": "x", "data": {"replay": str(drawn)}}).data.replay \
        == [str(drawn)]
    config.data.replay = [str(drawn)]
    stage = build_stage(config)
    assert stage.captions == plain.captions + [row["prompt"] for row in rows]  # the riddles, as asked
    assert torch.equal(stage.images[: len(plain.captions)], plain.images)
    assert torch.equal(stage.images[-1], torch.from_numpy(np.array(Image.open(drawn / rows[-1]["image"]))))
    direct = pipe.thinker.encode([rows[-1]["prompt"]], think=False)
    length = int(direct.mask.sum())
    # direct-mode states (batched with other prompts: equal up to fp16 rounding)
    assert torch.allclose(stage.states[-1, :length].float(), direct.states[0, :length], atol=1e-2)
    assert not stage.masks[-1, length:].any()
    width = plain.states.shape[1]  # the riddles are longer: the cache is padded further
    assert torch.equal(stage.states[: len(plain.captions), :width], plain.states)  # the scenes' think-mode states
    train(config, stage, progress=False)
    rows[0]["score"], rows[1]["score"] = 1.0, 0.0  # one drawing the scorer calls right, one wrong
    (drawn / "items.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    right = [row["prompt"] for row in rows if row["score"] == 1.0]
    config.data.replay_select = "right"
    assert build_stage(config).captions == plain.captions + right
    config.data.replay_select = "all"
    think = tmp_path / "think"
    run_suite(pipe, "reasoning", think, think=True, n_per_prompt=1, n_items=1, split="train",
              num_inference_steps=2, progress=False)
    config.data.replay = [str(think)]
    with pytest.raises(ValueError, match="think mode"):
        build_stage(config)
    config.data.replay = [str(tmp_path / "nowhere")]
    with pytest.raises(FileNotFoundError, match="items.jsonl"):
        build_stage(config)


def test_dit_scenes_draw_train_split_words():
    from thinkgen.train.dit_stage import TrainingScenes
    from thinkgen.world import suites

    data = TrainingScenes(200, seed=0, max_objects=4, canonical_fraction=0.5, curated="all", text_fraction=0.3)
    texts = [(scene.text, caption) for scene, caption in zip(data.scenes, data.captions, strict=True) if scene.text]
    assert 30 <= len(texts) <= 90  # about 30 % of the scenes
    test_words = {item.target.text for item in suites.text_items(2000, "test")}
    assert all(word not in test_words and f'"{word}"' in caption for word, caption in texts)
    assert len({word for word, _ in texts}) == min(len(texts), 60)  # 60 words: none twice before all once
    only_words = TrainingScenes(100, seed=0, max_objects=4, canonical_fraction=0.5, curated="all", text_fraction=1.0)
    assert len({scene.text for scene in only_words.scenes}) == 100 and not any(s.objects for s in only_words.scenes)
    assert not any(s.text for s in TrainingScenes(50, 0, 4, 0.5, "all").scenes)  # off by default


def test_dit_scenes_balance_word_lengths():
    from thinkgen.train.dit_stage import TrainingScenes

    only_words = TrainingScenes(400, seed=0, max_objects=4, canonical_fraction=0.5, curated="all", text_fraction=1.0,
                                text_lengths="balanced")
    assert not any(s.objects for s in only_words.scenes)
    by_length = Counter(len(scene.text) for scene in only_words.scenes)
    assert by_length == {1: 100, 2: 100, 3: 100, 4: 100}  # lengths in turn, as the suite draws them
    one_char = [scene.text for scene in only_words.scenes if len(scene.text) == 1]
    distinct = len(set(one_char))  # the train split has only ~30 one-character words: they repeat,
    assert 20 <= distinct < 100 and len(set(one_char[:distinct])) == distinct  # but none twice before all once
    longer = [scene.text for scene in only_words.scenes if len(scene.text) == 4]
    assert len(set(longer)) == 100  # a hundred of the thousands of four-character words: all distinct
    default = TrainingScenes(400, seed=0, max_objects=4, canonical_fraction=0.5, curated="all", text_fraction=1.0)
    assert Counter(len(scene.text) for scene in default.scenes)[1] <= 30  # "distinct": each one-character word once


def test_thinker_that_sees_trains_on_images_and_loads_as_a_vlm(tmp_path):
    """thinker.vision: a Qwen3-VL ShapeWorld thinker; describe examples in pretraining, edit and
    reflection examples in SFT, images in the batches; saved with its processor, it loads back and
    encodes an image with its prompt."""
    from PIL import Image

    from thinkgen.reflection import judge_prompt
    from thinkgen.train.thinker_stage import as_thinker, load_thinker
    from thinkgen.world.render import render
    from thinkgen.world.suites import build

    vision = {"vision": "qwen3_vl", "vision_width": 32, "vision_depth": 1}
    config = thinker_config(tmp_path / "pre", **vision)
    config.run.steps = 4
    config.data.describe_examples = 200
    stage = build_stage(config)
    image_token = stage.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    seen = [row for row in stage.examples if row.image is not None]
    assert len(seen) == 200 and all(row.ids.count(image_token) == 16 for row in seen)  # 32 px: 16 tokens
    assert all(lab == -100 for row in seen for i, lab in zip(row.ids, row.labels, strict=True) if i == image_token)
    batch = next(stage.batch(step, 0, 16) for step in range(50) if "pixel_values" in stage.batch(step, 0, 16))
    assert batch["image_grid_thw"].shape[0] == int((batch["input_ids"] == image_token).sum()) // 16
    assert torch.equal(batch["mm_token_type_ids"].bool(), batch["input_ids"] == image_token)
    with torch.no_grad():
        loss = stage.model(batch).item()
        blank = stage.model({**batch, "pixel_values": torch.zeros_like(batch["pixel_values"])}).item()
    assert loss != blank  # the loss depends on the image
    final = train(config, stage, progress=False)
    assert (final / "processor").is_dir() and not (final / "tokenizer").exists()

    sft = thinker_config(tmp_path / "sft", "thinker_sft", init=str(final))
    sft.run.steps = 2
    sft.data.edit_examples = sft.data.reflection_examples = 30
    drawn = tmp_path / "drawn"  # a model's own drawings, judged (experiments/scripts/draw_reflection_data.py)
    (drawn / "images").mkdir(parents=True)
    Image.fromarray(render(build("reflection", 1)[0].source, 32)).save(drawn / "images" / "0.png")
    (drawn / "rows.jsonl").write_text(json.dumps({"image": "images/0.png", "prompt": "a photo of a red circle",
                                                  "asked": "a red circle", "shown": "a blue circle",
                                                  "verdict": "make the blue circle red"}) + "\n")
    sft.data.drawn_reflection, sft.data.drawn_reflection_repeats = [str(drawn), str(drawn)], 3  # two folders
    sft.data.max_length = 256  # the whole verdict, after the image and the judge prompt
    sft_stage = build_stage(sft)
    assert sum(row.image is not None for row in sft_stage.examples) == 66
    cut = thinker_config(tmp_path / "cut", "thinker_sft", init=str(final))
    cut.data.reflection_examples, cut.data.max_length = 5, 144  # fits 32 px images (16 tokens each)...
    assert max(len(row.ids) for row in build_stage(cut).examples if row.image is not None) <= 144
    cut.data.image_size = 64  # ...not 64 px ones (64 tokens): refused, not trained cut
    with pytest.raises(ValueError, match=r"max_length \(144\) cuts the completions of image examples: the longest"):
        build_stage(cut)
    taught = [row for row in sft_stage.examples
              if "make the blue circle red" in sft_stage.tokenizer.decode([i for i in row.labels if i >= 0])]
    assert len(taught) == 6 and all(row.image is not None for row in taught)
    model, processor, options = load_thinker(train(sft, sft_stage, progress=False))
    assert type(model).__name__ == "Qwen3VLForConditionalGeneration"
    thinker = as_thinker(model.eval(), processor, options)
    item = build("reflection", 1)[0]
    out = thinker.encode([judge_prompt(item.prompt)], think=False,
                         images=[[Image.fromarray(render(item.source, 32))]])
    assert out.states.shape[-1] == 2 * 32

    text_only = thinker_config(tmp_path / "text")
    text_only.data.describe_examples = 5
    with pytest.raises(ValueError, match="thinker that sees"):
        build_stage(text_only)


def test_dit_stage_on_a_thinker_that_sees_reads_edits_with_their_source(tmp_path):
    """A DiT stage on a vision-language thinker: an edit instruction's states are computed with
    its source image in the thinker's context (as `thinkgen edit` computes them), and the saved
    pipeline loads with the processor."""
    from thinkgen.thinker import ThinkerConfig
    from thinkgen.tiny import tiny_vl_thinker
    from thinkgen.train.thinker_stage import save_thinker

    model, processor = tiny_vl_thinker("qwen3_vl", hidden_size=32)
    save_thinker(tmp_path / "thinker", model, processor, ThinkerConfig())
    config = C.from_dict({
        "stage": "dit_pretrain", "output_dir": str(tmp_path / "dit"), "thinker_dir": str(tmp_path / "thinker"),
        "run": {"steps": 2, "batch_size": 4, "log_every": 1, "save_every": 100, "seed": 0},
        "data": {"cache_size": 8, "edit_fraction": 0.5},
        "dit": {"width": 32, "num_layers": 1, "num_heads": 2, "text_width": 16, "num_prepadding": 2},
    })
    stage = build_stage(config)
    edits = stage.edits
    thinker = stage.pipe.thinker
    row = len(stage.captions)  # the first edit's cached states
    from PIL import Image

    seen = thinker.encode([edits.instructions[0]], think=False, images=[[Image.fromarray(edits.source_images[0])]])
    blind = thinker.encode([edits.instructions[0]], think=False)
    length = int(seen.mask[0].sum())
    cached = stage.states[row, :length].float()
    assert torch.allclose(cached, seen.states[0, :length].half().float())
    assert not torch.allclose(cached, blind.states[0, :length].half().float(), atol=1e-3)
    final = train(config, stage, progress=False)
    assert ThinkGenPipeline.from_pretrained(final).thinker.processor is not None
