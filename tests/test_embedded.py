"""The embedded ShapeWorld models that `make demo` runs: shipped, small, they think, the second
one's thinker sees, and the embedded judge (a thinker alone) judges drawings."""

from pathlib import Path

import pytest
import torch
from PIL import Image

from thinkgen import ThinkGenPipeline
from thinkgen.reflection import RIGHT, judge_prompt
from thinkgen.world import parse
from thinkgen.world.render import render
from thinkgen.world.scene import Object, Scene

ASSETS = Path(__file__).resolve().parents[1] / "thinkgen" / "assets"
EMBEDDED = ASSETS / "shapeworld"
SEEING = ASSETS / "shapeworld_vl"
JUDGE = ASSETS / "shapeworld_judge"


@pytest.mark.parametrize("folder", [EMBEDDED, SEEING, JUDGE], ids=["embedded", "seeing", "judge"])
def test_embedded_models_are_shipped_small_and_half_precision(folder):
    files = [f for f in folder.rglob("*") if f.is_file()]
    assert ((folder / "model_index.json").exists() or (folder / "thinker_config.json").exists()) and files
    everything = [f for f in ASSETS.rglob("*") if f.is_file()]
    assert sum(f.stat().st_size for f in everything) <= 30 * 2**20  # all of them together
    assert all(f.suffix != ".bin" for f in files)  # safetensors only
    from safetensors import safe_open

    for weights in folder.glob("*/*.safetensors"):
        with safe_open(str(weights), "pt") as f:
            dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
        assert dtypes <= {"F16"} or weights.parent.name == "vae", (weights, dtypes)


def test_embedded_model_thinks_and_draws():
    pipe = ThinkGenPipeline.from_pretrained(EMBEDDED, torch_dtype=torch.float32)
    prompt = "as many triangles as a car has wheels, in the colour of fresh grass"
    out = pipe([prompt], think=True, seed=0)
    assert "four wheels" in out.reasoning[0].replace("  ", " ")
    assert out.rewritten[0] == "four green triangles"
    parsed = parse(out.images[0])
    assert parsed.objects and all(o.color == "green" for o in parsed.objects)


def test_embedded_seeing_model_reads_the_image_it_is_shown():
    """The seeing model's thinker describes a rendered scene in its trace, keeps an edit request,
    and judges the image against a request: right when it matches, an edit when it does not."""
    pipe = ThinkGenPipeline.from_pretrained(SEEING, torch_dtype=torch.float32)
    assert pipe.thinker.processor is not None
    image = Image.fromarray(render(Scene((Object("square", "blue", 0.5, 0.5),))))
    edit = pipe.thinker.encode(["add a red circle"], think=True, images=[[image]], seed=0)
    assert edit.reasoning[0].startswith("The image shows a blue square.") and edit.rewritten == ["add a red circle"]
    judged = pipe.thinker.encode([judge_prompt("a blue square"), judge_prompt("a red circle")], think=True,
                                 images=[[image], [image]], seed=0)
    assert judged.rewritten[0] == RIGHT and judged.rewritten[1] != RIGHT
    assert "red circle" in judged.rewritten[1]


def test_embedded_judge_judges_a_scene_against_requests():
    """The embedded judge (a thinker folder) loads alone, reads a rendered scene, calls it right
    for its own caption, and writes the edit that fixes it for another request."""
    from thinkgen.reflection import load_judge
    from thinkgen.world.edits import parse_edit

    judge = load_judge(JUDGE)
    assert judge.processor is not None and next(judge.model.parameters()).dtype == torch.float32
    image = Image.fromarray(render(Scene((Object("square", "blue", 0.5, 0.5),))))
    judged = judge.encode([judge_prompt("a photo of a blue square"), judge_prompt("a photo of a red square")],
                          think=True, images=[[image], [image]], seed=0)
    assert judged.rewritten[0] == RIGHT and "The image shows a blue square." in judged.reasoning[0]
    assert parse_edit(judged.rewritten[1]) is not None and "red" in judged.rewritten[1]
