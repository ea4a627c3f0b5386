"""Vision-language thinkers (AutoModelForImageTextToText classes) with images in the prompt."""

import pytest
import torch
from PIL import Image

from thinkgen.thinker import Thinker, ThinkerConfig
from thinkgen.tiny import tiny_vl_thinker

RED = Image.new("RGB", (64, 64), (220, 30, 30))
BLUE = Image.new("RGB", (64, 80), (30, 30, 220))


@pytest.fixture(scope="module", params=["qwen2_5_vl", "qwen3_vl"])
def vl(request):
    model, processor = tiny_vl_thinker(request.param)
    return Thinker(model, processor=processor, config=ThinkerConfig(max_think_tokens=6, max_rewrite_tokens=4))


def fresh_states(thinker, prompt, images, sequence):
    """One plain forward over prompt + completion with the same pixels."""
    batch = thinker.processor(text=[thinker.chat_prompt(prompt, len(images))], images=images, return_tensors="pt")
    extra = len(sequence) - batch["input_ids"].shape[1]
    inputs = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask", "mm_token_type_ids")}
    if "mm_token_type_ids" in batch:  # text positions are type 0
        inputs["mm_token_type_ids"] = torch.cat([batch["mm_token_type_ids"],
                                                 torch.zeros(1, extra, dtype=torch.long)], 1)
    with torch.no_grad():
        out = thinker.model(input_ids=sequence[None], output_hidden_states=True, **inputs)
    return torch.cat(out.hidden_states[-2:], dim=-1)[0]


def test_vl_think_states_equal_fresh_forward(vl):
    prompts, images = ["make it blue", "add a star next to both"], [[RED], [RED, BLUE]]
    out = vl.encode(prompts, think=True, images=images)
    assert out.states.shape[-1] == vl.state_dim
    for row in range(2):
        n = int(out.mask[row].sum())
        expected = fresh_states(vl, prompts[row], images[row], out.sequences[row])[-n:]
        torch.testing.assert_close(out.states[row, :n], expected, atol=1e-4, rtol=1e-4)


def test_vl_batched_equals_per_sample(vl):
    prompts, images = ["make it blue", "add a star next to both"], [[RED], [RED, BLUE]]
    batched = vl.encode(prompts, think=True, images=images)
    for row in range(2):
        single = vl.encode([prompts[row]], think=True, images=[images[row]])
        assert torch.equal(single.sequences[0], batched.sequences[row])
        n = int(single.mask[0].sum())
        torch.testing.assert_close(batched.states[row, :n], single.states[0, :n], atol=1e-4, rtol=1e-4)


def test_vl_direct_mode_and_image_counts(vl):
    out = vl.encode(["recolour it", "draw a square"], think=False, images=[[RED], []])
    text = vl.tokenizer.decode(out.sequences[0])
    assert "<|image_pad|>" in text and text.endswith("</think>\n\nrecolour it<|im_end|>")
    assert "<|image_pad|>" not in vl.tokenizer.decode(out.sequences[1])
    n = int(out.mask[0].sum())
    assert n == len(vl.tokenizer.encode("\n\nrecolour it", add_special_tokens=False)) + 1
    with pytest.raises(ValueError, match="image lists"):
        vl.encode(["a", "b"], think=False, images=[[RED]])


def test_vl_pipeline_save_load_and_edit(vl, pipe, tmp_path):
    """A VLM thinker in a pipeline: it sees the pixels, the DiT gets reference tokens; the
    folder (model, processor, everything) loads back to identical outputs."""
    from thinkgen import Bridge, ThinkGenPipeline

    bridge = Bridge(vl.state_dim, pipe.bridge.config.out_channels, num_prepadding=3)
    vl_pipe = ThinkGenPipeline(vl, bridge, pipe.transformer, pipe.vae, pipe.scheduler)
    options = {"images": [[RED]], "num_inference_steps": 2, "output_type": "pt", "seed": 2}
    out = vl_pipe(["make it blue"], **options)
    assert out.images.shape == (1, 3, 32, 32)
    vl_pipe.save_pretrained(tmp_path)
    assert (tmp_path / "processor" / "tokenizer.json").exists()
    loaded = ThinkGenPipeline.from_pretrained(tmp_path)
    assert type(loaded.thinker.model) is type(vl.model)
    assert type(loaded.thinker.processor).__name__ == type(vl.processor).__name__
    again = loaded(["make it blue"], **options)
    assert torch.equal(again.images, out.images) and again.rewritten == out.rewritten
