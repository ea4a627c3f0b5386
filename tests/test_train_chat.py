"""Thinker SFT on your chat data: a 16-row chat file finetunes the thinker of tiny T2G and
ThinkGen-release folders (with images for the release's Qwen3-VL), 2 FSDP processes = 1, the
loss on assistant tokens only, and the result is the same folder with the thinker replaced."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from thinkgen import ThinkGenPipeline
from thinkgen.data import DataError
from thinkgen.train import config as C
from thinkgen.train.chat_stage import IGNORE, ChatSFTStage

from .test_train_dataset import config, folders, launch, relative_gap  # noqa: F401 (folders is a fixture)


def write_chat(folder: Path, images: bool) -> Path:
    rows = []
    for i in range(16):
        if images:
            rows.append({"messages": [
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": f"edit number {i}"}]},
                {"role": "assistant", "content": [{"type": "text", "text": f"make it {i} times redder"}]}],
                "images": [f"images/{i}.png"]})
        else:
            rows.append({"messages": [
                {"role": "system", "content": "Think, then rewrite."},
                {"role": "user", "content": f"request number {i}"},
                {"role": "assistant", "content": f"<think>it asks for {i}</think>a picture of {i} circles"}]})
    path = folder / ("chat_vl.jsonl" if images else "chat.jsonl")
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def chat_config(folders: Path, model: str, out: Path, **sections) -> dict:  # noqa: F811
    data = write_chat(folders, images=model == "release")
    cfg = config(folders, model, out, dataset={"source": "chat", "path": str(data)}, **sections)
    return {**cfg, "stage": "thinker_sft", "data": {"max_length": 512}}


def thinker_weights(folder: Path, component: str) -> dict[str, torch.Tensor]:
    return {k: v for f in sorted((folder / component).glob("*.safetensors")) for k, v in load_file(f).items()}


def test_the_loss_is_on_assistant_tokens_only(folders, tmp_path):  # noqa: F811
    stage = ChatSFTStage(C.from_dict(chat_config(folders, "t2g", tmp_path / "out")))
    row = stage.encode(3)
    learnt = stage.tokenizer.decode([t for t in row.labels if t != IGNORE])
    assert learnt.startswith("<think>it asks for 3</think>a picture of 3 circles")
    assert "request number 3" in stage.tokenizer.decode(row.ids) and "request" not in learnt


@pytest.mark.parametrize("model, component, port", [("t2g", "text_encoder", 29711), ("release", "mllm", 29721)])
def test_chat_sft_on_two_processes_equals_one_and_keeps_the_layout(folders, tmp_path, model, component, port):  # noqa: F811
    runs = {}
    for processes in (1, 2):
        out = tmp_path / f"p{processes}"
        launch(chat_config(folders, model, out), tmp_path / f"p{processes}.yaml", processes, port)
        runs[processes] = out / "final"
    ours, sharded = thinker_weights(runs[1], component), thinker_weights(runs[2], component)
    # a key bias has an exact gradient of zero (softmax ignores a shift shared by every key): what it
    # gets is rounding noise, which AdamW scales up to steps of the learning rate, so it is only close
    noise = [k for k in ours if k.endswith("k_proj.bias")]
    assert relative_gap({k: sharded[k] for k in noise}, {k: ours[k] for k in noise}) < 1e-4
    assert relative_gap({k: v for k, v in sharded.items() if k not in noise},
                        {k: v for k, v in ours.items() if k not in noise}) < 1e-6
    assert relative_gap(ours, thinker_weights(folders / model, component)) > 1e-4  # it trained
    for name in ("transformer", "vae"):  # the rest of the folder is the one it started from
        for file in (folders / model / name).iterdir():
            assert (runs[1] / name / file.name).read_bytes() == file.read_bytes()
    loaded = ThinkGenPipeline.from_pretrained(runs[1])
    assert all(torch.equal(v, ours[k]) for k, v in loaded.thinker.model.state_dict().items() if k in ours)
    if model == "t2g":
        from diffusers import QwenImagePipeline

        QwenImagePipeline.from_pretrained(runs[1])  # still diffusers' own layout


@pytest.mark.parametrize("damage, message", [
    ({"messages": [{"role": "user", "content": "no answer"}]}, "row 17: no assistant turn"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "row 17: every message needs a role"),
    ({"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "x"}]},
                   {"role": "assistant", "content": [{"type": "text", "text": "y"}]}]},
     "row 17: 1 image part\\(s\\) but 0 image\\(s\\) given"),
])
def test_a_bad_chat_row_is_named(folders, tmp_path, damage, message):  # noqa: F811
    path = write_chat(tmp_path, images=True)
    path.write_text(path.read_text() + json.dumps(damage) + "\n")
    cfg = chat_config(folders, "release", tmp_path / "out")
    cfg["dataset"]["path"] = str(path)
    with pytest.raises(DataError, match=message):
        ChatSFTStage(C.from_dict(cfg))


def test_a_too_long_conversation_is_refused_not_cut(folders, tmp_path):  # noqa: F811
    cfg = chat_config(folders, "t2g", tmp_path / "out")
    cfg["data"]["max_length"] = 16
    stage = ChatSFTStage(C.from_dict(cfg))
    with pytest.raises(DataError, match=r"chat.jsonl row \d+: \d+ tokens, over data.max_length \(16\)"):
        stage.batch(0, 0, 4)
