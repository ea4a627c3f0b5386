import os
import subprocess
import sys

import pytest
from PIL import Image

from thinkgen.cli import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli") / "tiny"
    assert main(["init", str(folder)]) == 0
    return folder


def run(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse usage errors exit through SystemExit
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(result, fragment):
    code, _, err = result
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "error:" in lines[0] and fragment in lines[0], err
    assert "Traceback" not in err


def test_init_info_generate_end_to_end(capsys, model_dir, tmp_path):
    code, out, _ = run(capsys, "info", model_dir)
    assert code == 0
    assert "Qwen3ForCausalLM" in out and "QwenImageTransformer2DModel" in out and "params" in out
    target = tmp_path / "cat.png"
    code, out, _ = run(capsys, "generate", "a red circle", "--model", model_dir, "-o", target,
                       "--steps", 3, "--seed", 1)
    assert code == 0
    assert "reasoning:" in out and "rewritten:" in out and f"wrote {target}" in out
    assert Image.open(target).size == (32, 32)


def test_generate_batch_and_direct_mode(capsys, model_dir, tmp_path):
    target = tmp_path / "out.png"
    code, out, _ = run(capsys, "generate", "a red circle", "--model", model_dir, "-o", target,
                       "--steps", 2, "--batch", 2, "--no-think", "--height", 16, "--width", 24, "--cfg", 2)
    assert code == 0 and "reasoning:" not in out
    for i in range(2):
        assert Image.open(tmp_path / f"out-{i}.png").size == (24, 16)


def test_edit_draws_from_the_source_image(capsys, model_dir, tmp_path):
    """`thinkgen edit` passes the source image to the DiT as reference tokens: the same instruction
    and seed draw something else from another source, and the image scale of three-way CFG acts."""
    import numpy as np

    sources = {"black": Image.new("RGB", (48, 40), "black"), "white": Image.new("RGB", (48, 40), "white")}
    drawn = {}
    for name, image in sources.items():
        image.save(tmp_path / f"{name}.png")
        target = tmp_path / f"edit-{name}.png"
        code, out, _ = run(capsys, "edit", tmp_path / f"{name}.png", "make the circle red", "--model", model_dir,
                           "-o", target, "--steps", 2, "--cfg", 2)
        assert code == 0 and f"wrote {target}" in out and "rewritten:" in out
        drawn[name] = np.asarray(Image.open(target))
        assert drawn[name].shape == (32, 32, 3)  # the model's size; the source is resized to it
    assert not np.array_equal(drawn["black"], drawn["white"])
    code, _, _ = run(capsys, "edit", tmp_path / "black.png", "make the circle red", "--model", model_dir,
                     "-o", tmp_path / "scaled.png", "--steps", 2, "--cfg", 2, "--image-cfg", 3)
    assert code == 0 and not np.array_equal(np.asarray(Image.open(tmp_path / "scaled.png")), drawn["black"])


def test_edit_user_errors(capsys, model_dir, tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.png")
    out = tmp_path / "x.png"
    assert_user_error(run(capsys, "edit", tmp_path / "missing.png", "x", "--model", model_dir, "-o", out),
                      "no such image")
    assert_user_error(run(capsys, "edit", tmp_path / "notes.png", "x", "--model", model_dir, "-o", out),
                      "cannot read")
    assert_user_error(run(capsys, "edit", tmp_path, "x", "--model", model_dir, "-o", out), "cannot read")
    assert_user_error(run(capsys, "edit", tmp_path / "ok.png", "  ", "--model", model_dir, "-o", out),
                      "instruction is empty")
    assert not out.exists()


def test_generate_reflect_writes_every_round(capsys, tmp_path):
    """`--reflect N` on a pipeline whose thinker sees images: up to N judged rounds, each judged image
    written beside the final one, each verdict printed; a text-only thinker is one error line."""
    from thinkgen.tiny import tiny_vl_pipeline

    folder = tmp_path / "vl"
    tiny_vl_pipeline(seed=0).save_pretrained(folder)
    target = tmp_path / "r.png"
    code, out, _ = run(capsys, "generate", "a red circle", "--model", folder, "-o", target, "--steps", 2,
                       "--reflect", 2)
    assert code == 0 and f"wrote {target}" in out
    judged = [line for line in out.splitlines() if line.startswith("round ")]
    assert 1 <= len(judged) <= 2
    for k in range(1, len(judged) + 1):
        assert Image.open(tmp_path / f"r.round{k}.png").size == (32, 32)
    assert Image.open(target).size == (32, 32)


def test_generate_reflect_with_a_judge_that_votes(capsys, vl_dir, tmp_path):
    """`--votes N --quorum Q`: the judge reads the image N times and each round says how many of
    its readings fault it; `--keep-quorum` sets the retry's keeping rule."""
    target = tmp_path / "v.png"
    code, out, _ = run(capsys, "generate", "a red circle", "--model", vl_dir, "-o", target, "--steps", 2,
                       "--reflect", 1, "--votes", 3, "--quorum", 1, "--correct", "retry-edit", "--tries", 2,
                       "--keep-quorum", 3)
    judged = [line for line in out.splitlines() if line.startswith("round 1:")]
    assert code == 0 and len(judged) == 1 and judged[0].endswith("of 3 readings fault it)")
    faults = int(judged[0].rsplit("(", 1)[1].split()[0])
    assert judged[0].startswith("round 1:   right (") == (faults == 0)  # quorum 1: one faulting reading makes it wrong
    assert Image.open(target).size == (32, 32)
    code, out, _ = run(capsys, "generate", "a red circle", "--model", vl_dir, "-o", target, "--steps", 2,
                       "--reflect", 1, "--reading-check", "--correct", "retry-edit", "--tries", 2)
    assert code == 0 and len([line for line in out.splitlines() if line.startswith("round 1:")]) == 1


def test_generate_reflect_with_another_judge_and_redraws(capsys, model_dir, vl_dir, tmp_path):
    """`--judge DIR --correct redraw`: a text-only model draws, the seeing model's thinker judges,
    and an image judged wrong is drawn again; the rounds say so."""
    target = tmp_path / "j.png"
    code, out, _ = run(capsys, "generate", "a red circle", "--model", model_dir, "--judge", vl_dir, "-o", target,
                       "--steps", 2, "--reflect", 1, "--correct", "redraw", "--judge-against", "rewrite")
    assert code == 0 and Image.open(target).size == (32, 32) and (tmp_path / "j.round1.png").exists()
    judged = [line for line in out.splitlines() if line.startswith("round 1:")]
    assert len(judged) == 1 and ("right" in judged[0] or "redraw; the judge wrote" in judged[0])
    assert_user_error(run(capsys, "generate", "x", "--model", vl_dir, "--judge", model_dir, "-o", tmp_path / "y.png",
                          "--reflect", 1), "sees images")
    assert_user_error(run(capsys, "generate", "x", "--model", vl_dir, "-o", tmp_path / "y.png", "--reflect", 1,
                          "--correct", "retry"), "invalid choice")
    assert_user_error(run(capsys, "generate", "x", "--model", vl_dir, "-o", tmp_path / "y.png", "--reflect", 1,
                          "--judge-against", "caption"), "invalid choice")


def test_generate_reflect_user_errors(capsys, model_dir, tmp_path):
    out = tmp_path / "x.png"
    assert_user_error(run(capsys, "generate", "x", "--model", model_dir, "-o", out, "--reflect", 1),
                      "sees images")
    assert_user_error(run(capsys, "generate", "x", "--model", model_dir, "-o", out, "--reflect", 1,
                          "--batch", 2), "one image per prompt")
    assert_user_error(run(capsys, "generate", "x", "--model", model_dir, "-o", out, "--reflect", 1,
                          "--tries", 3), "tries applies to the retry- corrections")
    assert_user_error(run(capsys, "generate", "x", "--model", model_dir, "-o", out, "--reflect", 1,
                          "--correct", "retry-edit", "--tries", 0), "--tries")
    assert not out.exists()


def test_progress_bar_during_sampling(capsys, model_dir, tmp_path):
    _, _, err = run(capsys, "generate", "x", "--model", model_dir, "-o", tmp_path / "p.png", "--steps", 3)
    assert "sampling" in err


def test_user_errors(capsys, model_dir, tmp_path, monkeypatch):
    import thinkgen.cli

    monkeypatch.setattr(thinkgen.cli, "EMBEDDED", tmp_path / "no-embedded-model")
    out = tmp_path / "x.png"
    assert_user_error(run(capsys, "generate", "   ", "--model", model_dir, "-o", out), "prompt is empty")
    assert_user_error(run(capsys, "generate", "x", "-o", out), "no model given")
    assert_user_error(run(capsys, "generate", "x", "--model", tmp_path / "nope", "-o", out), "not found")
    assert_user_error(run(capsys, "generate", "x", "--model", tmp_path, "-o", out), "not a thinkgen pipeline")
    assert_user_error(run(capsys, "info", tmp_path / "nope"), "not found")
    assert_user_error(run(capsys, "generate", "x", "--model", model_dir, "-o", tmp_path / "no" / "x.png"),
                      "does not exist")
    assert_user_error(run(capsys, "generate", "x", "--model", model_dir, "-o", "/proc/self/x.png"),
                      "not writable")
    assert_user_error(run(capsys, "generate", "x", "--model", model_dir, "-o", tmp_path / "x.txt"), ".png")
    assert_user_error(run(capsys, "generate", "x", "--model", model_dir, "-o", out, "--height", 30),
                      "multiple of 4")
    assert_user_error(run(capsys, "generate", "x", "--model", model_dir, "-o", out, "--width", 0),
                      "expected an integer in")
    assert_user_error(run(capsys, "generate", "x", "--model", model_dir, "-o", out, "--steps", -1),
                      "expected an integer in")
    assert_user_error(run(capsys, "generate", "x", "--model", model_dir, "-o", out, "--batch", "two"),
                      "expected an integer")
    assert_user_error(run(capsys, "init", model_dir), "not empty")
    assert not out.exists()


def test_broken_model_folder(capsys, model_dir, tmp_path):
    broken = tmp_path / "broken"
    assert main(["init", str(broken)]) == 0
    capsys.readouterr()
    (broken / "thinker" / "model.safetensors").write_bytes(b"not safetensors")
    assert_user_error(run(capsys, "generate", "x", "--model", broken, "-o", tmp_path / "x.png"),
                      "thinker/model.safetensors: not a safetensors file")


def test_console_entry_point(model_dir, tmp_path):
    """The installed command runs in a fresh process, offline, and reports errors with code 2."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "thinkgen", "generate", "", "--model", str(model_dir)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and "prompt is empty" in done.stderr and "Traceback" not in done.stderr


def test_default_model_and_demo(capsys, model_dir, tmp_path, monkeypatch):
    """Without --model, generate and demo use the embedded model folder; without one, the demo
    falls back to a random tiny pipeline and says so."""
    import thinkgen.cli

    monkeypatch.setattr(thinkgen.cli, "EMBEDDED", model_dir)
    monkeypatch.setattr(thinkgen.cli, "EMBEDDED_SEEING", tmp_path / "no-seeing-model")
    code, out, _ = run(capsys, "generate", "a red circle", "-o", tmp_path / "e.png", "--steps", 2)
    assert code == 0 and (tmp_path / "e.png").exists()
    code, out, _ = run(capsys, "demo", "-o", tmp_path / "demo.png")
    assert code == 0 and "embedded ShapeWorld model" in out and "direct (no thinking)" in out
    assert out.count("the parser reads: ") == 2 and "the answer is 3 yellow squares" in out
    assert out.count("over 8 seeds (0-7), this mode draws it right ") == 2
    assert (tmp_path / "demo-0.png").exists() and (tmp_path / "demo-1.png").exists()
    monkeypatch.setattr(thinkgen.cli, "EMBEDDED", tmp_path / "none")
    code, out, _ = run(capsys, "demo", "-o", tmp_path / "r.png")
    assert code == 0 and "RANDOM,\nUNTRAINED" in out


def test_demo_with_a_thinker_that_sees_edits_and_reflects(capsys, tmp_path, monkeypatch):
    """When the model's thinker sees images, the demo also edits its drawing and runs a
    reflection round, writing four images."""
    import thinkgen.cli
    from thinkgen.tiny import tiny_vl_pipeline

    tiny_vl_pipeline(seed=0).save_pretrained(tmp_path / "vl")
    monkeypatch.setattr(thinkgen.cli, "EMBEDDED", tmp_path / "vl")
    code, out, _ = run(capsys, "demo", "-o", tmp_path / "demo.png")
    assert code == 0 and "--- edit" in out and "--- reflection" in out and "verdict: " in out
    assert out.count("the parser reads: ") == 4
    assert all((tmp_path / f"demo-{i}.png").exists() for i in range(4))


@pytest.fixture(scope="module")
def vl_dir(tmp_path_factory):
    from thinkgen.tiny import tiny_vl_pipeline

    folder = tmp_path_factory.mktemp("cli") / "tiny-vl"
    tiny_vl_pipeline(seed=0).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("with_judge", [False, True], ids=["seeing-model-judges", "embedded-judge-judges"])
def test_demo_borrows_the_embedded_seeing_model(capsys, model_dir, vl_dir, judge_dir, tmp_path, monkeypatch,
                                                with_judge):
    """With a text-only embedded model and the embedded seeing model installed beside it, the demo
    draws with the first, then edits with the second; the reflection round is judged by the
    embedded judge when installed (else by the seeing model) and its edit drawn by the first."""
    import thinkgen.cli

    monkeypatch.setattr(thinkgen.cli, "EMBEDDED", model_dir)
    monkeypatch.setattr(thinkgen.cli, "EMBEDDED_SEEING", vl_dir)
    monkeypatch.setattr(thinkgen.cli, "EMBEDDED_JUDGE", judge_dir if with_judge else tmp_path / "no-judge")
    loaded = []
    real_load = thinkgen.cli._load
    monkeypatch.setattr(thinkgen.cli, "_load", lambda model, *a, **k: loaded.append(model) or real_load(model, *a, **k))
    code, out, _ = run(capsys, "demo", "-o", tmp_path / "demo.png")
    assert code == 0 and "whose thinker sees" in out and "--- reflection" in out and "verdict: " in out
    assert loaded == [None, str(vl_dir)]  # the embedded model draws, the seeing one edits
    assert ("the embedded judge" in out) == with_judge
    assert out.count("the parser reads: ") == 4
    assert all((tmp_path / f"demo-{i}.png").exists() for i in range(4))


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    """A tiny thinker folder that sees: how the embedded judge is shipped."""
    from thinkgen.thinker import ThinkerConfig
    from thinkgen.tiny import tiny_vl_thinker
    from thinkgen.train.thinker_stage import save_thinker

    folder = tmp_path_factory.mktemp("cli") / "tiny-judge"
    model, processor = tiny_vl_thinker("qwen3_vl", hidden_size=32)
    save_thinker(folder, model, processor, ThinkerConfig(max_think_tokens=6, max_rewrite_tokens=6))
    return folder


@pytest.mark.parametrize("with_judge", [False, True], ids=["seeing-model-judges", "embedded-judge-judges"])
def test_edit_and_reflect_default_to_the_seeing_model(capsys, model_dir, vl_dir, judge_dir, tmp_path, monkeypatch,
                                                      with_judge):
    """Without --model, `edit` runs the embedded seeing model; `generate --reflect` draws and corrects
    with the embedded model and judges with the embedded judge (a thinker folder), or without it
    with the seeing model's thinker (a text-only thinker cannot judge an image); plain `generate`
    keeps the embedded model."""
    import thinkgen.cli
    import thinkgen.reflection

    monkeypatch.setattr(thinkgen.cli, "EMBEDDED", model_dir)
    monkeypatch.setattr(thinkgen.cli, "EMBEDDED_SEEING", vl_dir)
    monkeypatch.setattr(thinkgen.cli, "EMBEDDED_JUDGE", judge_dir if with_judge else tmp_path / "no-judge")
    folders, judges = [], []
    from thinkgen.pipeline import ThinkGenPipeline

    real = ThinkGenPipeline.from_pretrained
    monkeypatch.setattr(ThinkGenPipeline, "from_pretrained",
                        lambda folder, **k: folders.append(str(folder)) or real(folder, **k))
    real_judge = thinkgen.reflection.load_judge
    monkeypatch.setattr(thinkgen.reflection, "load_judge", lambda folder: judges.append(str(folder)) or real_judge(folder))
    Image.new("RGB", (32, 32), "white").save(tmp_path / "src.png")
    assert run(capsys, "edit", tmp_path / "src.png", "add a red circle", "-o", tmp_path / "e.png", "--steps", 2)[0] == 0
    assert run(capsys, "generate", "a red circle", "-o", tmp_path / "r.png", "--steps", 2, "--reflect", 1)[0] == 0
    assert run(capsys, "generate", "a red circle", "-o", tmp_path / "g.png", "--steps", 2)[0] == 0
    assert folders == [str(vl_dir), str(model_dir), str(model_dir)]
    assert judges == [str(judge_dir if with_judge else vl_dir)]


def test_judge_option_takes_a_thinker_folder_and_refuses_others(capsys, model_dir, judge_dir, tmp_path):
    target = tmp_path / "t.png"
    code, out, _ = run(capsys, "generate", "a red circle", "--model", model_dir, "--judge", judge_dir, "-o", target,
                       "--steps", 2, "--reflect", 1, "--correct", "checked-edit")
    assert code == 0 and target.exists() and "round 1:" in out
    (tmp_path / "empty").mkdir()
    assert_user_error(run(capsys, "generate", "x", "--model", model_dir, "--judge", tmp_path / "empty", "-o",
                          tmp_path / "u.png", "--reflect", 1), "cannot load a judge")


def test_demo_reading_judges_the_default_prompt():
    from thinkgen.cli import _reading
    from thinkgen.world.render import render
    from thinkgen.world.scene import Object, Scene

    squares = [Object("square", "yellow", x, 0.5, 0.2) for x in (0.2, 0.5, 0.8)]
    right = _reading(render(Scene(tuple(squares)), 64), judge=True)
    assert right.startswith("3 yellow squares (right")
    wrong = _reading(render(Scene((*squares[:2], Object("circle", "red", 0.8, 0.5, 0.2))), 64), judge=True)
    assert "2 yellow squares" in wrong and "1 red circle" in wrong and "(wrong" in wrong
    assert _reading(render(Scene(()), 32), judge=False) == "nothing"


def test_train_mistakes_are_one_line_errors(capsys, tmp_path):
    config = tmp_path / "rl.yaml"
    config.write_text(f"stage: thinker_grpo\noutput_dir: {tmp_path / 'out'}\n")
    assert_user_error(run(capsys, "train", config), "needs `init`")
    config.write_text(f"stage: dit_flow_grpo\noutput_dir: {tmp_path / 'out'}\ninit: {tmp_path / 'nowhere'}\n")
    assert_user_error(run(capsys, "train", config), "not found")
    config.write_text(f"stage: thinker_grpo\noutput_dir: {tmp_path / 'out'}\nrl: {{loss_type: ppo}}\n")
    assert_user_error(run(capsys, "train", config), "rl.loss_type")


def test_generator_device_this_machine_lacks(capsys, model_dir, tmp_path):
    assert_user_error(run(capsys, "generate", "a red circle", "--model", model_dir, "--steps", "2",
                          "--generator-device", "cuda:99", "-o", tmp_path / "x.png"), "no such GPU here")
    assert not (tmp_path / "x.png").exists()
    code, _, _ = run(capsys, "generate", "a red circle", "--model", model_dir, "--steps", "2", "--no-think",
                     "--generator-device", "cpu", "-o", tmp_path / "y.png")
    assert code == 0 and (tmp_path / "y.png").exists()
