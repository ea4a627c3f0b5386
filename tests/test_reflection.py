"""Reflection: judge-and-edit rounds on a tiny vision-language pipeline."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from thinkgen.reflection import RIGHT, generate_with_reflection, is_right, judge_prompt, reflect
from thinkgen.tiny import tiny_pipeline, tiny_vl_pipeline


@pytest.fixture(scope="module")
def pipe():
    return tiny_vl_pipeline(seed=0)


class ScriptedJudge:
    """Wraps the thinker's encode: judge calls get scripted verdicts, every other call is real."""

    def __init__(self, thinker, verdicts: list[str]) -> None:
        self.thinker, self.verdicts, self.judged, self.real = thinker, list(verdicts), [], thinker.encode
        self.asked: list[str] = []  # the judge prompts, in order

    def __call__(self, prompts, think=True, images=None, seed=None):
        out = self.real(prompts, think=think, images=images, seed=seed)
        if prompts[0].startswith("The request was"):
            self.judged.append([np.asarray(group[0]).copy() for group in images])
            self.asked += prompts
            out = dataclasses.replace(out, rewritten=[self.verdicts.pop(0) for _ in prompts])
        return out


def test_verdict_reading():
    assert is_right("The image is right.") and is_right(RIGHT) and not is_right("make the red circle blue")
    assert "a red circle" in judge_prompt("a red circle")


def test_rounds_stop_when_judged_right(pipe, monkeypatch):
    judge = ScriptedJudge(pipe.thinker, ["add a blue square", RIGHT])
    monkeypatch.setattr(pipe.thinker, "encode", judge)
    out = generate_with_reflection(pipe, "a red circle", rounds=3, num_inference_steps=2)
    rounds = out.rounds[0]
    assert [r.verdict for r in rounds] == ["add a blue square", RIGHT]  # the third round never ran
    assert [r.right for r in rounds] == [False, True]
    # round 1 judged the first drawing; round 2 judged the edit of it, which is the final image
    assert np.array_equal(np.asarray(rounds[0].image), np.asarray(out.first[0]))
    assert np.array_equal(np.asarray(rounds[1].image), np.asarray(out.images[0]))
    assert not np.array_equal(np.asarray(out.first[0]), np.asarray(out.images[0]))
    assert np.array_equal(judge.judged[1][0], np.asarray(out.images[0]))  # the thinker saw the edited image


def test_edit_is_the_verdict_with_the_image_as_reference(pipe, monkeypatch):
    judge = ScriptedJudge(pipe.thinker, ["make the red circle blue"])
    monkeypatch.setattr(pipe.thinker, "encode", judge)
    out = generate_with_reflection(pipe, "a red circle", rounds=1, num_inference_steps=2, seed=5)
    monkeypatch.undo()
    expected = pipe(["make the red circle blue"], think=False, images=[[out.first[0]]], seed=5,
                    num_inference_steps=2).images[0]
    assert np.array_equal(np.asarray(out.images[0]), np.asarray(expected))


def test_prompts_stop_independently(pipe, monkeypatch):
    # round 1 judges both prompts: the first is right, the second gets an edit; round 2 judges only the second
    judge = ScriptedJudge(pipe.thinker, [RIGHT, "remove the red circle", "add a red circle"])
    monkeypatch.setattr(pipe.thinker, "encode", judge)
    out = generate_with_reflection(pipe, ["a red circle", "a blue square"], rounds=2, num_inference_steps=2)
    assert [len(r) for r in out.rounds] == [1, 2]
    assert np.array_equal(np.asarray(out.images[0]), np.asarray(out.first[0]))  # right: left alone
    assert [len(batch) for batch in judge.judged] == [2, 1]


def test_real_thinker_runs_end_to_end(pipe):
    out = generate_with_reflection(pipe, "a red circle", rounds=2, num_inference_steps=2)
    assert 1 <= len(out.rounds[0]) <= 2 and out.images[0].size == (32, 32)
    assert all(r.right == is_right(r.verdict) for r in out.rounds[0])


def test_zero_rounds_is_plain_generation(pipe):
    out = generate_with_reflection(pipe, "a red circle", rounds=0, num_inference_steps=2)
    plain = pipe(["a red circle"], num_inference_steps=2).images[0]
    assert out.rounds == [[]] and np.array_equal(np.asarray(out.images[0]), np.asarray(plain))


def test_reflect_on_another_models_drawing(pipe, monkeypatch):
    """`reflect` judges images it is given (the demo's seeing model judges the text model's
    drawing): the first round sees exactly that image, and the edit starts from it."""
    given = Image.fromarray(np.full((32, 32, 3), 200, dtype=np.uint8))
    judge = ScriptedJudge(pipe.thinker, ["add a red circle"])
    monkeypatch.setattr(pipe.thinker, "encode", judge)
    out = reflect(pipe, ["a red circle"], [given], rounds=1, seed=3, num_inference_steps=2)
    monkeypatch.undo()
    assert np.array_equal(judge.judged[0][0], np.asarray(given)) and out.first[0] is given
    expected = pipe(["add a red circle"], think=False, images=[[given]], seed=3, num_inference_steps=2).images[0]
    assert np.array_equal(np.asarray(out.images[0]), np.asarray(expected))
    with pytest.raises(ValueError, match="one image per prompt"):
        reflect(pipe, ["a", "b"], [given], rounds=1)


def test_text_only_thinker_is_refused():
    with pytest.raises(ValueError, match="sees images"):
        generate_with_reflection(tiny_pipeline(), "a red circle", rounds=1)
    with pytest.raises(ValueError, match=">= 0"):
        generate_with_reflection(tiny_pipeline(), "a red circle", rounds=-1)
    with pytest.raises(ValueError, match="sees images"):
        reflect(tiny_pipeline(), ["a red circle"], [Image.new("RGB", (32, 32))], rounds=1)


def test_eval_with_reflection_scores_before_and_after(pipe, monkeypatch, tmp_path):
    """`thinkgen eval --reflect 1`: the first images are the ones plain eval draws (same seeds),
    scores before and after reflection are both in scores.json, and edited images are counted."""
    from thinkgen.eval.shapeworld import run_suite

    plain = run_suite(pipe, "composition", tmp_path / "plain", n_items=6, n_per_prompt=2, num_inference_steps=2,
                      progress=False)
    verdicts = [RIGHT, "add a red circle"] * 6  # every second image gets an edit
    monkeypatch.setattr(pipe.thinker, "encode", ScriptedJudge(pipe.thinker, verdicts))
    summary = run_suite(pipe, "composition", tmp_path / "reflect", n_items=6, n_per_prompt=2,
                        num_inference_steps=2, progress=False, reflect=1)
    assert summary["before_reflection"]["overall"] == plain["overall"]
    assert summary["images_corrected"] == 6 and summary["reflect"] == 1 and summary["correction"] == "edit"
    rows = [json.loads(line) for line in (tmp_path / "reflect" / "items.jsonl").read_text().splitlines()]
    right = [r for r in rows if r["verdicts"] == [RIGHT]]
    assert len(right) == 6 and all(r["score"] == r["first_score"] for r in right)
    for row in right:  # an image judged right is the one plain eval drew
        assert np.array_equal(np.asarray(Image.open(tmp_path / "reflect" / row["image"])),
                              np.asarray(Image.open(tmp_path / "plain" / row["image"])))
    with pytest.raises(ValueError, match="reflect"):
        run_suite(pipe, "editing", tmp_path / "edit", n_items=2, reflect=1, progress=False)


def test_redraw_draws_the_prompt_again_from_new_noise(pipe, monkeypatch):
    """`correct="redraw"`: an image judged wrong is replaced by a new drawing of the prompt (in the
    mode it was drawn in, from a seed no first drawing uses); the judge's instruction is not used."""
    from thinkgen.reflection import SEED_STRIDE

    judge = ScriptedJudge(pipe.thinker, [RIGHT, "add a blue square", "make the red circle blue"])
    monkeypatch.setattr(pipe.thinker, "encode", judge)
    out = generate_with_reflection(pipe, ["a red circle", "a blue square"], rounds=2, num_inference_steps=2,
                                   seed=4, think=False, correct="redraw")
    monkeypatch.undo()
    assert [len(r) for r in out.rounds] == [1, 2]
    assert np.array_equal(np.asarray(out.images[0]), np.asarray(out.first[0]))  # judged right: kept
    redraw1 = pipe(["a blue square"], think=False, seed=4 + 1 + SEED_STRIDE, num_inference_steps=2).images[0]
    redraw2 = pipe(["a blue square"], think=False, seed=4 + 1 + 2 * SEED_STRIDE, num_inference_steps=2).images[0]
    assert np.array_equal(np.asarray(out.rounds[1][1].image), np.asarray(redraw1))  # round 2 judged the redraw
    assert np.array_equal(np.asarray(out.images[1]), np.asarray(redraw2))
    assert not np.array_equal(np.asarray(redraw1), np.asarray(redraw2))
    with pytest.raises(ValueError, match="unknown reflection correction"):
        generate_with_reflection(pipe, "a red circle", rounds=1, correct="retry")


def test_another_models_thinker_judges(pipe, monkeypatch):
    """`judge=`: a pipeline whose thinker sees judges the drawings of one whose thinker does not;
    the drawing pipeline makes the first image and the corrections, the judge only judges."""
    drawer = tiny_pipeline(seed=1)
    judge = ScriptedJudge(pipe.thinker, ["add a blue square"])
    monkeypatch.setattr(pipe.thinker, "encode", judge)
    out = generate_with_reflection(drawer, "a red circle", rounds=1, num_inference_steps=2, seed=2, judge=pipe)
    monkeypatch.undo()
    assert len(judge.judged) == 1 and np.array_equal(judge.judged[0][0], np.asarray(out.first[0]))
    assert np.array_equal(np.asarray(out.first[0]),
                          np.asarray(drawer(["a red circle"], seed=2, num_inference_steps=2).images[0]))
    expected = drawer(["add a blue square"], think=False, images=[[out.first[0]]], seed=2,
                      num_inference_steps=2).images[0]
    assert np.array_equal(np.asarray(out.images[0]), np.asarray(expected))
    with pytest.raises(ValueError, match="sees images"):  # the judge must see
        generate_with_reflection(pipe, "a red circle", rounds=1, judge=drawer)


def test_eval_reflects_with_another_judge_and_redraws(pipe, monkeypatch, tmp_path):
    """`thinkgen eval --reflect 1 --judge DIR --correct redraw`: the drawing model's first images are
    plain eval's; the judge's thinker judges them; images judged wrong are redrawn, and the
    changes both ways are counted."""
    from thinkgen.eval.shapeworld import run_suite

    drawer = tiny_pipeline(seed=1)
    plain = run_suite(drawer, "composition", tmp_path / "plain", n_items=6, n_per_prompt=2, num_inference_steps=2,
                      progress=False)
    monkeypatch.setattr(pipe.thinker, "encode", ScriptedJudge(pipe.thinker, ["add a red circle", RIGHT] * 6))
    summary = run_suite(drawer, "composition", tmp_path / "redraw", n_items=6, n_per_prompt=2, num_inference_steps=2,
                        progress=False, reflect=1, judge=pipe, correct="redraw")
    assert summary["before_reflection"]["overall"] == plain["overall"] and summary["correction"] == "redraw"
    rows = [json.loads(line) for line in (tmp_path / "redraw" / "items.jsonl").read_text().splitlines()]
    assert summary["images_corrected"] == 6
    assert summary["wrong_to_right"] == sum(r["first_score"] < r["score"] for r in rows)
    assert summary["right_to_wrong"] == sum(r["first_score"] > r["score"] for r in rows)
    redrawn = [r for r in rows if r["verdicts"] != [RIGHT]]
    assert any(not np.array_equal(np.asarray(Image.open(tmp_path / "redraw" / r["image"])),
                                  np.asarray(Image.open(tmp_path / "plain" / r["image"]))) for r in redrawn)


@pytest.mark.parametrize("accepted", [True, False])
def test_checked_correction_is_kept_only_when_judged_right(pipe, monkeypatch, accepted):
    """`correct="checked-edit"`: the edit is made as `edit` makes it, then judged; it replaces the
    image only when the judge calls it right, else the image stays as drawn. A second round
    edits again with new noise."""
    from thinkgen.reflection import SEED_STRIDE

    check = RIGHT if accepted else "remove the red circle"
    judge = ScriptedJudge(pipe.thinker, ["make the red circle blue", check])
    monkeypatch.setattr(pipe.thinker, "encode", judge)
    out = generate_with_reflection(pipe, "a red circle", rounds=1, num_inference_steps=2, seed=5,
                                   correct="checked-edit")
    monkeypatch.undo()
    edited = pipe(["make the red circle blue"], think=False, images=[[out.first[0]]], seed=5,
                  num_inference_steps=2).images[0]
    assert len(judge.judged) == 2 and np.array_equal(judge.judged[1][0], np.asarray(edited))  # the check saw the edit
    final = edited if accepted else out.first[0]
    assert np.array_equal(np.asarray(out.images[0]), np.asarray(final))
    again = pipe(["make the red circle blue"], think=False, images=[[out.first[0]]], seed=5 + SEED_STRIDE,
                 num_inference_steps=2).images[0]
    assert not np.array_equal(np.asarray(again), np.asarray(edited))  # round 2's edit draws new noise


@pytest.mark.parametrize("accepted_at", [2, None])
def test_retry_edit_keeps_the_first_edit_judged_right(pipe, monkeypatch, accepted_at):
    """`correct="retry-edit"`: up to four edits from new noise, each judged; the first judged right
    is kept (here the third), and when none is, the image stays as drawn."""
    from thinkgen.reflection import RETRIES, TRY_STRIDE

    checks = ["remove the red circle"] * RETRIES
    if accepted_at is not None:
        checks[accepted_at] = RIGHT
    judge = ScriptedJudge(pipe.thinker, ["make the red circle blue", *checks])
    monkeypatch.setattr(pipe.thinker, "encode", judge)
    out = generate_with_reflection(pipe, "a red circle", rounds=1, num_inference_steps=2, seed=5, correct="retry-edit")
    monkeypatch.undo()
    tries = [pipe(["make the red circle blue"], think=False, images=[[out.first[0]]], seed=5 + k * TRY_STRIDE,
                  num_inference_steps=2).images[0] for k in range(RETRIES)]
    judged = RETRIES if accepted_at is None else accepted_at + 1
    assert len(judge.judged) == 1 + judged  # the drawing, then each try until one passes
    for k in range(judged):
        assert np.array_equal(judge.judged[1 + k][0], np.asarray(tries[k]))
    assert not np.array_equal(np.asarray(tries[0]), np.asarray(tries[1]))  # each try its own noise
    final = out.first[0] if accepted_at is None else tries[accepted_at]
    assert np.array_equal(np.asarray(out.images[0]), np.asarray(final))


def test_the_judge_checks_against_the_prompt_or_the_rewrite(pipe, monkeypatch, tmp_path):
    """`judge_against="rewrite"`: in think mode the judge (and a retry's check) is asked about the
    drawing thinker's rewrite instead of the prompt; in direct mode, and by default, the prompt."""
    from thinkgen.eval.shapeworld import run_suite
    from thinkgen.reflection import correction

    rewrite = pipe(["a red circle"], think=True, num_inference_steps=2).rewritten[0]
    assert rewrite != "a red circle"  # the tiny thinker's rewrite differs from the prompt
    for against, think, asked in (("rewrite", True, rewrite), ("prompt", True, "a red circle"),
                                  ("rewrite", False, "a red circle")):
        judge = ScriptedJudge(pipe.thinker, ["make the red circle blue", "add a square", RIGHT])
        monkeypatch.setattr(pipe.thinker, "encode", judge)
        generate_with_reflection(pipe, "a red circle", rounds=1, think=think, num_inference_steps=2,
                                 correct=correction("retry-edit", tries=2), judge_against=against)
        monkeypatch.undo()
        assert judge.asked == [judge_prompt(asked)] * 3  # the drawing, then both tries
    with pytest.raises(ValueError, match="judge_against"):
        generate_with_reflection(pipe, "a red circle", rounds=1, judge_against="caption")
    with pytest.raises(ValueError, match="one request per prompt"):
        reflect(pipe, ["a red circle"], [Image.new("RGB", (32, 32))], rounds=1, requests=["a", "b"])
    with pytest.raises(ValueError, match="judge_against"):
        run_suite(pipe, "composition", tmp_path / "x", reflect=1, judge_against="caption")
    assert not (tmp_path / "x").exists()  # refused before any drawing
    monkeypatch.setattr(pipe.thinker, "encode", ScriptedJudge(pipe.thinker, [RIGHT] * 100))
    summary = run_suite(pipe, "composition", tmp_path / "r", n_items=1, n_per_prompt=1, num_inference_steps=2,
                        progress=False, reflect=1, judge_against="rewrite")
    assert summary["judged_against"] == "rewrite"
    assert "judged against the rewrite" in (tmp_path / "r" / "scores.md").read_text()


def test_the_cli_offers_every_correction():
    from thinkgen.cli import CORRECTION_NAMES, JUDGED_AGAINST_NAMES
    from thinkgen.reflection import CORRECTIONS, JUDGED_AGAINST, Checked, EditCorrection, correction

    assert CORRECTION_NAMES == sorted(CORRECTIONS) and JUDGED_AGAINST_NAMES == list(JUDGED_AGAINST)
    assert all(correction(name).name == name for name in CORRECTIONS)
    with pytest.raises(ValueError, match="tries"):
        Checked(EditCorrection(), tries=0)


def test_tries_sets_how_many_corrections_a_retry_makes(pipe, monkeypatch, tmp_path):
    """`correction("retry-edit", tries=N)` makes up to N judged edits (the default is RETRIES); a
    correction that makes one takes no tries. An eval's summary names the tries."""
    from thinkgen.eval.shapeworld import run_suite
    from thinkgen.reflection import RETRIES, correction, describe

    assert correction("retry-edit").tries == RETRIES and correction("retry-redraw", tries=7).tries == 7
    assert describe(correction("retry-edit", tries=6)) == "retry-edit, up to 6 tries"
    assert describe(correction("checked-edit")) == "checked-edit"
    for name in ("edit", "checked-redraw"):
        with pytest.raises(ValueError, match="retry-"):
            correction(name, tries=2)
    never = ScriptedJudge(pipe.thinker, ["make the red circle blue"] * 100)  # no try is judged right
    monkeypatch.setattr(pipe.thinker, "encode", never)
    out = generate_with_reflection(pipe, "a red circle", rounds=1, num_inference_steps=2,
                                   correct=correction("retry-edit", tries=RETRIES + 2))
    assert len(never.judged) == 1 + RETRIES + 2 and np.array_equal(np.asarray(out.images[0]),
                                                                   np.asarray(out.first[0]))
    summary = run_suite(pipe, "composition", tmp_path / "r", n_items=1, n_per_prompt=1, num_inference_steps=2,
                        progress=False, reflect=1, correct=correction("retry-edit", tries=2))
    assert summary["correction"] == "retry-edit, up to 2 tries"
    assert "correction: retry-edit, up to 2 tries" in (tmp_path / "r" / "scores.md").read_text()


def test_a_thinker_folder_judges(tmp_path):
    """`load_judge` reads a thinker alone (a thinker stage's output, as the embedded judge is
    shipped); it judges another pipeline's drawing. A folder that is neither is refused."""
    from thinkgen.reflection import load_judge
    from thinkgen.thinker import ThinkerConfig
    from thinkgen.tiny import tiny_vl_thinker
    from thinkgen.train.thinker_stage import save_thinker

    model, processor = tiny_vl_thinker("qwen3_vl", hidden_size=32)
    save_thinker(tmp_path / "judge", model.half(), processor, ThinkerConfig(max_think_tokens=6, max_rewrite_tokens=6))
    judge = load_judge(tmp_path / "judge")
    assert next(judge.model.parameters()).dtype == torch.float32 and judge.config.max_think_tokens == 6
    out = generate_with_reflection(tiny_pipeline(seed=1), "a red circle", rounds=1, num_inference_steps=2, judge=judge)
    assert len(out.rounds[0]) == 1 and out.rounds[0][0].right == is_right(out.rounds[0][0].verdict)
    with pytest.raises(ValueError, match="neither a pipeline folder nor a thinker folder"):
        load_judge(tmp_path)


class ScriptedSampler:
    """Stands in for a VotingJudge's sampling thinker: each call's rows get the next scripted
    verdicts (row ``i * votes + v`` is vote ``v`` of prompt ``i``; one image's votes are repeated for
    every image), reasoning naming the row."""

    def __init__(self, verdicts: list[list[str]]) -> None:
        self.verdicts, self.calls = list(verdicts), []

    def encode(self, prompts, think=True, images=None, seed=None):
        from thinkgen.thinker import ThinkerOutput

        self.calls.append((list(prompts), images, seed))
        rewritten = self.verdicts.pop(0)
        assert len(prompts) % len(rewritten) == 0
        rewritten = rewritten * (len(prompts) // len(rewritten))  # the same votes for every image
        return ThinkerOutput(torch.zeros(len(prompts), 1, 1), torch.ones(len(prompts), 1),
                             [f"reading {r}" for r in range(len(prompts))], rewritten)


def test_voting_judge_faults_an_image_only_at_its_quorum(pipe):
    """A VotingJudge reads each image `votes` times in one batch and calls it wrong only when at
    least `quorum` readings do; it then applies the faulting readings' most common verdict (a tie
    goes to the earliest), else RIGHT. It counts the faulting votes."""
    from thinkgen.reflection import Judgement, VotingJudge

    voter = VotingJudge(pipe.thinker, votes=4, quorum=3)
    a, b = "make the red circle blue", "remove the red circle"
    voter.sampler = ScriptedSampler([[a, b, b, RIGHT,  # 3 fault: wrong, b the most common
                                      a, RIGHT, b, RIGHT,  # 2 fault: right
                                      a, b, a, b]])  # 4 fault, a tie: the earliest, a
    images = [[Image.new("RGB", (32, 32), c)] for c in ("red", "green", "blue")]
    out = voter.encode(["p0", "p1", "p2"], think=True, images=images, seed=7)
    assert isinstance(out, Judgement)
    assert out.rewritten == [b, RIGHT, a] and out.faulting_votes == [3, 2, 4]
    assert out.reasoning == ["reading 1", "reading 5", "reading 8"]  # the chosen vote's own trace
    prompts, shown, seed = voter.sampler.calls[0]
    assert prompts == ["p0"] * 4 + ["p1"] * 4 + ["p2"] * 4 and seed == 7
    assert [group[0].getpixel((0, 0)) for group in shown[4:8]] == [(0, 128, 0)] * 4  # each image with its votes
    assert VotingJudge(pipe.thinker, votes=5).quorum == 3  # a majority by default
    for votes, quorum in ((0, None), (3, 4), (3, 0)):
        with pytest.raises(ValueError, match="quorum"):
            VotingJudge(pipe.thinker, votes=votes, quorum=quorum)


def test_voting_judge_samples_the_same_weights(pipe):
    """Its readings are samples of the judge's own model (the judge itself stays greedy), each vote
    its own, and the same seed reads the same."""
    from thinkgen.reflection import VotingJudge

    voter = VotingJudge(pipe.thinker, votes=3, temperature=1.5)
    assert voter.sampler.model is pipe.thinker.model and voter.sampler.config.do_sample
    assert voter.sampler.config.temperature == 1.5 and not pipe.thinker.config.do_sample
    image = [[Image.new("RGB", (32, 32), "red")]]
    readings = voter.sampler.encode(["a red circle"] * 3, think=True, images=image * 3, seed=3).reasoning
    assert len(set(readings)) > 1  # sampled: the votes differ
    first = voter.encode([judge_prompt("a red circle")], images=image, seed=3)
    again = voter.encode([judge_prompt("a red circle")], images=image, seed=3)
    assert first == again and 0 <= first.faulting_votes[0] <= 3


def test_reflection_with_a_voting_judge_and_a_stricter_keeper(pipe, monkeypatch, tmp_path):
    """A round's faults come from the judge, and a retry keeps a correction only when its
    `verifier` passes it: here a voting judge that faults the drawing at 2 of 3 votes, and a keeper
    that refuses any edit one vote faults. The rounds record the faulting votes; an eval names the
    judge and the keeping rule and writes each image's votes."""
    from thinkgen.eval.shapeworld import run_suite
    from thinkgen.reflection import Checked, EditCorrection, VotingJudge, describe, describe_judge

    fix = "make the red circle blue"
    judge, keeper = VotingJudge(pipe.thinker, votes=3, quorum=2), VotingJudge(pipe.thinker, votes=3, quorum=1)
    judge.sampler = ScriptedSampler([[fix, fix, RIGHT]])
    keeper.sampler = ScriptedSampler([[RIGHT, RIGHT, fix], [RIGHT] * 3, [RIGHT, fix, fix]])
    correct = Checked(EditCorrection(), tries=3, verifier=keeper)
    out = generate_with_reflection(pipe, "a red circle", rounds=1, num_inference_steps=2, seed=5,
                                   judge=judge, correct=correct)
    assert len(keeper.sampler.calls) == 2  # the second edit passed every vote: the third never made
    rounds = out.rounds[0]
    assert len(rounds) == 1 and rounds[0].verdict == fix and rounds[0].faulting_votes == 2
    assert not np.array_equal(np.asarray(out.images[0]), np.asarray(out.first[0]))  # the kept edit
    assert describe(correct) == "retry-edit, up to 3 tries, kept when fewer than 1 of 3 votes fault it"
    assert describe_judge(judge) == "3 votes at temperature 1, wrong when 2 fault it"
    assert describe_judge(pipe.thinker) == "one greedy reading"
    judge.sampler = ScriptedSampler([[RIGHT, RIGHT, fix]])  # one fault of three: each image judged right
    summary = run_suite(pipe, "composition", tmp_path / "r", n_items=1, n_per_prompt=1, num_inference_steps=2,
                        progress=False, reflect=1, judge=judge, correct=correct)
    rows = [json.loads(line) for line in (tmp_path / "r" / "items.jsonl").read_text().splitlines()]
    assert all(r["verdicts"] == [RIGHT] and r["faulting_votes"] == [1] and r["score"] == r["first_score"]
               for r in rows)
    assert summary["judge"] == "3 votes at temperature 1, wrong when 2 fault it"
    assert "judge: 3 votes" in (tmp_path / "r" / "scores.md").read_text()


def test_a_fault_its_own_reading_contradicts_is_taken_back(pipe, monkeypatch, tmp_path):
    """`ReadingCheckedJudge`: a wrong verdict stands only when `reading_matches` does not say the
    trace reads the image as what the request asks for; a verdict of right, and a fault the
    reading supports or cannot check, pass through. A retry's keeper is its own (here the plain
    judge), so the check decides what to correct, not what to keep."""
    from thinkgen.reflection import Checked, EditCorrection, ReadingCheckedJudge, describe_judge
    from thinkgen.thinker import ThinkerOutput

    traces = {"agree": "The request asks for four circles. The image shows four red circles. They differ.",
              "differ": "The request asks for three circles. The image shows four blue circles. They differ.",
              "unread": "The request asks for a circle left of a square. The image shows a red circle. They differ."}

    class Traced:
        processor = pipe.thinker.processor

        def encode(self, prompts, think=True, images=None, seed=None):
            names = ["agree", "differ", "unread", "agree"][: len(prompts)]
            verdicts = ["remove the red circle"] * 3 + [RIGHT]
            return ThinkerOutput(torch.zeros(len(prompts), 1, 1), torch.ones(len(prompts), 1),
                                 [traces[n] for n in names], verdicts[: len(prompts)])

    checked = ReadingCheckedJudge(Traced(), lambda trace: {traces["agree"]: True, traces["differ"]: False}.get(trace))
    out = checked.encode(["a", "b", "c", "d"])
    assert out.rewritten == [RIGHT, "remove the red circle", "remove the red circle", RIGHT]
    assert describe_judge(checked) == "one greedy reading, a fault its own reading contradicts taken back"
    keeper = ScriptedJudge(pipe.thinker, [RIGHT])
    monkeypatch.setattr(pipe.thinker, "encode", keeper)
    image = Image.new("RGB", (32, 32), "white")
    result = reflect(pipe, ["p0", "p1"], [image, image], rounds=1, num_inference_steps=2,
                     judge=ReadingCheckedJudge(Traced(), checked.reading_matches),
                     correct=Checked(EditCorrection(), tries=2, verifier=pipe.thinker))
    assert [r[0].right for r in result.rounds] == [True, False]  # p0's fault taken back; p1's stands
    assert len(keeper.judged) == 1  # only p1's edit was made, and the plain judge kept it
    assert np.array_equal(np.asarray(result.images[0]), np.asarray(image))
    assert not np.array_equal(np.asarray(result.images[1]), np.asarray(image))


def test_the_cli_builds_the_judge_its_options_ask_for(pipe):
    """`--votes`/`--quorum` make the round's judge vote, `--reading-check` wraps it; a retry then
    keeps its edits by the plain judge's greedy reading, or with `--keep-quorum` by votes. With
    none of them the judge given is returned (None: the drawing model's own)."""
    import argparse

    from thinkgen.cli import reflection_judge
    from thinkgen.reflection import ReadingCheckedJudge, VotingJudge, correction, describe

    def options(**given):
        return argparse.Namespace(**({"votes": None, "quorum": None, "keep_quorum": None, "reading_check": False}
                                     | given))

    correct = correction("retry-edit", tries=8)
    judge = reflection_judge(options(votes=8, quorum=6, reading_check=True), pipe, None, correct)
    assert isinstance(judge, ReadingCheckedJudge) and isinstance(judge.judge, VotingJudge)
    assert (judge.judge.votes, judge.judge.quorum) == (8, 6) and correct.verifier is pipe.thinker
    assert describe(correct) == "retry-edit, up to 8 tries, kept by the judge's greedy reading"
    correct.verifier = judge  # a verifier that checks its own reading is named as one
    assert describe(correct) == ("retry-edit, up to 8 tries, kept by a judge of 8 votes at temperature 1, "
                                 "wrong when 6 fault it, a fault its own reading contradicts taken back")
    correct = correction("retry-edit")
    judge = reflection_judge(options(votes=4, keep_quorum=1), pipe, None, correct)
    assert isinstance(judge, VotingJudge) and judge.quorum == 3
    assert isinstance(correct.verifier, VotingJudge) and correct.verifier.quorum == 1
    edit = correction("edit")
    assert isinstance(reflection_judge(options(reading_check=True), pipe, None, edit), ReadingCheckedJudge)
    assert reflection_judge(options(), pipe, None, edit) is None
