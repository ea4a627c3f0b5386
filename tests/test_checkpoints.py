"""Checkpoints that cannot be torn or wrong: kills at every moment of a save, Ctrl-C at every
moment of a step, torn folders, and append-only logs, by fault injection (no sleeps)."""

import json
import os
import signal
from types import SimpleNamespace

import pytest
import torch

from thinkgen.train import loop
from thinkgen.train.loop import is_complete, latest_checkpoint, train
from thinkgen.train.run import build_stage

from .test_train import dit_config, tiny_dir, weights  # noqa: F401  (tiny_dir is a fixture)


class Killed(BaseException):
    """A kill -9 stand-in: nothing in the loop catches it, the files stay as they are."""


@pytest.fixture(scope="module")
def reference(tiny_dir, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("straight")
    stage = build_stage(dit_config(tiny_dir, out, steps=6, save_every=2))
    train(dit_config(tiny_dir, out, steps=6, save_every=2), stage, progress=False)
    return weights(stage.model)


def resume_and_compare(tiny_dir, out, reference):  # noqa: F811
    stage = build_stage(dit_config(tiny_dir, out, steps=6, save_every=2))
    train(dit_config(tiny_dir, out, steps=6, save_every=2), stage, resume=True, progress=False)
    ours = weights(stage.model)
    assert all(torch.equal(ours[k], reference[k]) for k in reference)


REPLACES = 2  # os.replace calls of a save that replaces an existing step: aside, then into place


@pytest.mark.parametrize("moment", ["writing", "before_aside", "after_aside", "after_rename"])
def test_a_kill_at_any_moment_of_a_save_resumes_exactly(tiny_dir, tmp_path, monkeypatch, reference, moment):  # noqa: F811
    """A finished run resumed again re-saves its last step (a replacement); kill it at each moment."""
    out = tmp_path / "run"
    train(dit_config(tiny_dir, out, steps=6, save_every=2), build_stage(dit_config(tiny_dir, out, steps=6, save_every=2)),
          progress=False)
    calls = {"replace": 0}
    original_replace, original_save_file = os.replace, loop.save_file

    def replace(source, target):
        calls["replace"] += 1
        if moment == "before_aside" and calls["replace"] == 1:
            raise Killed  # complete and manifested, still under its temporary name
        if moment == "after_aside" and calls["replace"] == 2:
            raise Killed  # the old step-000006 is aside, the new one not yet in place
        original_replace(source, target)
        if moment == "after_rename" and calls["replace"] == REPLACES:
            raise Killed  # in place, the aside copy not yet removed

    def save_file(tensors, path):
        original_save_file(tensors, path)
        if moment == "writing" and path.name == "optimizer.safetensors":
            raise Killed

    monkeypatch.setattr(loop.os, "replace", replace)
    monkeypatch.setattr(loop, "save_file", save_file)
    stage = build_stage(dit_config(tiny_dir, out, steps=6, save_every=2))
    with pytest.raises(Killed):
        train(dit_config(tiny_dir, out, steps=6, save_every=2), stage, resume=True, progress=False)
    monkeypatch.undo()
    checkpoints = out / "checkpoints"
    assert is_complete(latest_checkpoint(checkpoints))
    assert latest_checkpoint(checkpoints).name == "step-000006"  # the step is never lost
    resume_and_compare(tiny_dir, out, reference)


def test_a_torn_checkpoint_is_skipped_with_a_warning(tiny_dir, tmp_path, reference, capsys):  # noqa: F811
    out = tmp_path / "run"
    config = dit_config(tiny_dir, out, steps=4, save_every=2)
    train(config, build_stage(config), progress=False)
    torn = out / "checkpoints" / "step-000004"
    (torn / "optimizer.safetensors").unlink()  # as a kill in the middle of an older, unsafe save left it
    assert not is_complete(torn)
    found = latest_checkpoint(out / "checkpoints")
    assert found.name == "step-000002" and "incomplete" in capsys.readouterr().out
    resume_and_compare(tiny_dir, out, reference)


@pytest.mark.parametrize("when", ["after_optimizer_step", "in_backward", "in_batch"])
def test_ctrl_c_at_any_point_of_a_step_checkpoints_the_state_at_its_step(tiny_dir, tmp_path, monkeypatch,  # noqa: F811
                                                                          reference, when):
    out = tmp_path / "run"
    config = dit_config(tiny_dir, out, steps=6, save_every=100)
    stage = build_stage(config)
    counter = {"n": 0}

    def sigint():
        os.kill(os.getpid(), signal.SIGINT)

    if when == "after_optimizer_step":  # the moment that used to save a wrong checkpoint
        original = torch.optim.AdamW.step

        def step(self, *args, **kwargs):
            result = original(self, *args, **kwargs)
            counter["n"] += 1
            if counter["n"] == 3:
                sigint()
            return result

        monkeypatch.setattr(torch.optim.AdamW, "step", step)
    elif when == "in_backward":
        original_backward = torch.Tensor.backward

        def backward(self, *args, **kwargs):
            counter["n"] += 1
            if counter["n"] == 3:
                sigint()
            return original_backward(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, "backward", backward)
    else:
        original_batch = stage.batch

        def batch(step, start, size):
            if step == 2:
                sigint()
            return original_batch(step, start, size)

        stage.batch = batch
    with pytest.raises(KeyboardInterrupt):
        train(config, stage, progress=False)
    monkeypatch.undo()
    saved = latest_checkpoint(out / "checkpoints")
    assert saved.name == "step-000003" and is_complete(saved)  # the step that was running finished
    state = json.loads((saved / "trainer_state.json").read_text())
    assert state["step"] == 3 and state["scheduler"]["last_epoch"] == 3
    resume_and_compare(tiny_dir, out, reference)


def test_ctrl_c_during_a_save_stops_after_the_save(tiny_dir, tmp_path, monkeypatch, reference, capsys):  # noqa: F811
    out = tmp_path / "run"
    config = dit_config(tiny_dir, out, steps=6, save_every=2)
    original = loop.save_file
    saves = []

    def save_file(tensors, path):
        saves.append(path.parent.name)
        if path.name == "model.safetensors" and "000002" in str(path):
            os.kill(os.getpid(), signal.SIGINT)  # arrives in the middle of the save
        original(tensors, path)

    monkeypatch.setattr(loop, "save_file", save_file)
    stage = build_stage(config)
    with pytest.raises(KeyboardInterrupt):  # the save finishes, then the run stops
        train(config, stage, progress=False)
    monkeypatch.undo()
    assert "it finishes first, then the run stops" in capsys.readouterr().err
    checkpoints = sorted((out / "checkpoints").glob("step-*"))
    assert [p.name for p in checkpoints] == ["step-000002"] and is_complete(checkpoints[0])
    written = len(list(checkpoints[0].glob("*.safetensors")))
    assert saves == [".step-000002.tmp"] * written  # each file written once: not saved again on stopping
    resume_and_compare(tiny_dir, out, reference)


def test_a_checkpoint_damaged_in_place_is_not_complete(tiny_dir, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    config = dit_config(tiny_dir, out, steps=2, save_every=1)
    train(config, build_stage(config), progress=False)
    checkpoint = out / "checkpoints" / "step-000001"
    assert is_complete(checkpoint)
    file = checkpoint / "optimizer.safetensors"
    data = bytearray(file.read_bytes())
    data[-1] ^= 0xFF  # one byte, the size unchanged
    file.write_bytes(bytes(data))
    assert not is_complete(checkpoint)


def test_rollout_log_is_truncated_to_the_resumed_step(tmp_path):
    from thinkgen.train.rl_stage import RLStage

    log = tmp_path / "rollouts.jsonl"
    log.write_text("".join(json.dumps({"step": s, "reward": s / 10}) + "\n" for s in range(6)))
    RLStage.resume_at(SimpleNamespace(log_path=log), 4)
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [0, 1, 2, 3]
    RLStage.resume_at(SimpleNamespace(log_path=log), 0)  # a fresh run into the same folder
    assert log.read_text() == ""
