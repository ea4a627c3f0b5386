"""The embedded ShapeWorld model that `make demo` runs: shipped, small, and it thinks."""

from pathlib import Path

import torch

from thinkgen import ThinkGenPipeline
from thinkgen.world import parse

EMBEDDED = Path(__file__).resolve().parents[1] / "thinkgen" / "assets" / "shapeworld"


def test_embedded_model_is_shipped_small_and_half_precision():
    files = [f for f in EMBEDDED.rglob("*") if f.is_file()]
    assert (EMBEDDED / "model_index.json").exists() and files
    assert sum(f.stat().st_size for f in files) <= 30 * 2**20
    assert all(f.suffix != ".bin" for f in files)  # safetensors only
    from safetensors import safe_open

    for weights in EMBEDDED.glob("*/*.safetensors"):
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
