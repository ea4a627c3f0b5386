"""Scenario suites, their splits and scorers; facts, corpora, edit grammar, dataset export."""

import random
from collections import Counter
from dataclasses import replace

import pytest

from thinkgen.world import Object, Scene, parse, render
from thinkgen.world import suites as S
from thinkgen.world.corpora import (
    caption_corpus,
    drawn_edit_examples,
    drawn_reflection_row,
    drawn_reflection_rows,
    judge_reading,
    knowledge_corpus,
    reading_matches,
    reflect_completion,
    seeing_examples,
    think_examples,
)
from thinkgen.world.edits import (
    OPS,
    Edit,
    apply_edit,
    describe_edit,
    edit_text,
    fixing_edit,
    parse_edit,
)
from thinkgen.world.export import export
from thinkgen.world.facts import CATEGORIES, FACTS, facts
from thinkgen.world.rules import (
    Requirement,
    Target,
    check,
    parsed_as_scene,
    satisfies,
    scene_as_parsed,
)


def render_parse(item, resolution=32):
    return parse(render(item.scene, resolution))


@pytest.mark.parametrize("suite", ["composition", "reasoning", "text", "editing"])
def test_ground_truth_renders_score_full_marks(suite):
    items = S.build(suite, 120, "test")
    resolution = 64 if suite == "text" else 32
    scores = [S.score_image(item, render_parse(item, resolution)).score for item in items]
    assert sum(scores) / len(scores) >= 0.99


def test_reflection_reference_instructions_fix_the_scene():
    items = S.build("reflection", 60, "test")
    assert set(Counter(i.category for i in items)) == {"color", "missing", "extra", "shape", "position", "none"}
    for item in items:
        # the image really is wrong, except in "none" items, where it is right and must be left alone
        assert satisfies(item.source, item.target) == (item.category == "none")
        score = S.score_instruction(item, item.canonical)
        assert score.score == 1.0 and score.details["ned"] == 1.0
    right = next(i for i in items if i.category == "none")
    assert right.canonical == "the image is right"
    assert S.score_instruction(right, "The image is right.").score == 1.0
    assert S.score_instruction(right, "add a red circle").score == 0.0
    wrong_item = next(i for i in items if i.category != "none")
    assert S.score_instruction(wrong_item, "the image is right").score == 0.0
    item = items[0]
    wrong = S.score_instruction(item, "add a purple star")
    assert wrong.score == 0.0 and wrong.details["parsed"] and wrong.details["ned"] < 1
    garbage = S.score_instruction(item, "\x00 zzz")
    assert garbage.score == 0.0 and not garbage.details["parsed"]


def test_wrong_scenes_score_by_the_rules():
    item = next(i for i in S.build("composition", 60, "test") if i.category == "counting")
    objects = item.scene.objects
    fewer = replace(item.scene, objects=objects[:-1])
    assert S.score_image(item, parse(render(fewer, 32))).score == 0.0
    recoloured = next(i for i in S.build("composition", 60, "test") if i.category == "colors")
    obj = recoloured.scene.objects[0]
    other = "red" if obj.color != "red" else "blue"
    bad = replace(recoloured.scene, objects=(replace(obj, color=other),))
    assert S.score_image(recoloured, parse(render(bad, 32))).score == 0.0
    positioned = next(i for i in S.build("composition", 60, "test") if i.category == "position")
    a, b = positioned.scene.objects
    swapped = replace(positioned.scene, objects=(replace(a, x=b.x, y=b.y, size=min(a.size, b.size)),
                                                 replace(b, x=a.x, y=a.y, size=min(a.size, b.size))))
    assert S.score_image(positioned, parse(render(swapped, 32))).score == 0.0


def test_text_and_editing_scorers():
    item = S.build("text", 30, "test")[0]
    word = item.target.text
    right = S.score_image(item, parse(render(Scene(text=word), 64)))
    assert right.score == 1.0 and right.details["ned"] == 1.0
    wrong_word = ("A" if word[0] != "A" else "B") + word[1:]
    wrong = S.score_image(item, parse(render(Scene(text=wrong_word), 64)))
    assert wrong.score == 0.0 and wrong.details["ned"] == pytest.approx(1 - 1 / len(word))
    edit_item = next(i for i in S.build("editing", 80, "test") if i.category == "recolor" and len(i.source.objects) > 1)
    unchanged = S.score_image(edit_item, parse(render(edit_item.source, 32)))
    assert unchanged.score == 0.0 and 0 < unchanged.details["f1"] < 1  # partial credit
    move_item = next(i for i in S.build("editing", 60, "test") if i.category == "move")
    assert S.score_image(move_item, parse(render(move_item.source, 32))).score == 0.0  # not moved


def test_ned_and_edit_distance():
    assert S.edit_distance("kitten", "sitting") == 3
    assert S.ned("AB", "AB") == 1.0 and S.ned("AB", "AC") == 0.5 and S.ned("", "") == 1.0
    assert S.ned("ABCD", "") == 0.0


def test_splits_are_fixed_and_disjoint():
    assert [i.to_dict() for i in S.build("reasoning", 30, "train")] == \
        [i.to_dict() for i in S.build("reasoning", 30, "train")]
    train = S.build("reasoning", 300, "train")
    test = S.build("reasoning", 300, "test")
    rl = S.build("reasoning", 300, "rl")
    assert all(i.group == "supervised" for i in train)
    assert all(i.group == "held_out" for i in rl)
    assert {i.group for i in test} == {"supervised", "held_out"}
    prompts = [{i.prompt for i in split} for split in (train, test, rl)]
    assert not (prompts[0] & prompts[1]) and not (prompts[0] & prompts[2]) and not (prompts[1] & prompts[2])
    held_out = {f.id for f in FACTS if f.group == "held_out"}
    assert not any(set(i.facts) & held_out for i in train)
    words = [{i.target.text for i in S.build("text", 200, split)} for split in ("train", "test")]
    assert not words[0] & words[1]
    for tag in ("position", "color_attr"):
        specs = [{i.canonical for i in S.build("composition", 600, split) if i.category == tag}
                 for split in ("train", "test")]
        assert specs[0] and specs[1] and not specs[0] & specs[1]
    with pytest.raises(ValueError):
        S.build("poetry", 3)


def test_item_serialisation_round_trip():
    for suite in S.SUITES:
        for item in S.build(suite, 12, "test"):
            assert S.Item.from_dict(item.to_dict()) == item


def test_fact_base():
    assert len(FACTS) >= 60
    assert {f.category for f in FACTS} == set(CATEGORIES)
    assert len({f.id for f in FACTS}) == len(FACTS)
    for kind in ("color", "count", "shape", "direction"):
        assert facts(kind, "supervised") and facts(kind, "held_out")
    assert all(1 <= f.value <= 4 for f in facts("count"))


def test_corpora():
    knowledge = knowledge_corpus()
    assert {row["fact"] for row in knowledge} == {f.id for f in FACTS}  # every fact is known
    examples = think_examples(200, 60)
    held_out_subjects = [f.subject for f in FACTS if f.group == "held_out"]
    reasoning = [e for e in examples if e["suite"] == "reasoning"]
    assert reasoning and not any(s in e["prompt"] for e in reasoning for s in held_out_subjects)
    for e in examples:
        assert e["completion"] == f"<think>\n{e['reasoning']}\n</think>\n\n{e['rewrite']}"
    assert len(caption_corpus(20)) == 20
    assert not any(e["suite"] == "text" for e in examples)  # off by default
    texts = [e for e in think_examples(0, 0, n_text=30) if e["suite"] == "text"]
    test_words = {item.target.text for item in S.text_items(500, "test")}
    assert len(texts) == 30
    for e in texts:  # the string is copied into the rewrite, and never a test-split word
        word = e["prompt"].split('"')[1]
        assert e["rewrite"] == f'the text "{word}"' and word not in test_words
    assert not any(e["prompt"].startswith("a photo of") for e in examples)  # off by default
    photos = [e for e in think_examples(0, 0, n_photo=120) if e["prompt"].startswith("a photo of")]
    held_out = {item.canonical for item in S.composition_items(200, "test")
                if item.category in ("position", "color_attr")}
    assert len(photos) == 120 and {e["suite"] for e in photos} == {"composition"}
    for e in photos:  # GenEval's wording, train-split targets only
        assert e["prompt"] == f"a photo of {e['rewrite']}" and e["rewrite"] not in held_out


def test_edit_grammar_round_trip():
    rng = random.Random(0)
    edits = [Edit("add", "star", "orange"), Edit("remove", "circle", "red"),
             Edit("recolor", "square", "blue", new_color="yellow"),
             Edit("replace", "triangle", "green", new_shape="circle", new_color="orange"),
             Edit("move", "circle", "red", side="left"),
             Edit("move", "circle", "red", relation="above", ref_shape="square", ref_color="blue")]
    assert {e.op for e in edits} == set(OPS)
    for edit in edits:
        assert parse_edit(edit_text(edit)) == edit
        for _ in range(5):
            assert parse_edit(describe_edit(edit, rng)) == edit
    assert parse_edit("paint it nicely") is None
    assert edit_text(edits[0]) == "add an orange star"


def test_apply_edit():
    scene = Scene((Object("circle", "red", 0.25, 0.5, 0.26), Object("square", "blue", 0.75, 0.5, 0.26)))
    assert apply_edit(scene, Edit("remove", "circle", "red")).objects == (scene.objects[1],)
    assert apply_edit(scene, Edit("recolor", "circle", "red", new_color="green")).objects[0].color == "green"
    moved = apply_edit(scene, Edit("move", "circle", "red", relation="below", ref_shape="square", ref_color="blue"))
    assert moved is not None and moved.objects[0].y > moved.objects[1].y
    assert len(apply_edit(scene, Edit("add", "star", "purple")).objects) == 3
    assert apply_edit(scene, Edit("remove", "star", "red")) is None  # nothing to remove


def test_fixing_edit_corrects_every_kind_of_error():
    """For each wrong reflection scene, `fixing_edit` finds one edit after which the scene meets its
    request (not necessarily the suite's own fix); with two things missing, no single edit fixes
    it, and `partial` gives a first step that meets more of it."""
    items = [i for i in S.build("reflection", 60, "test") if i.category != "none"]
    for item in items:
        edit = fixing_edit(item.source, item.target)
        assert edit is not None, item.canonical
        assert satisfies(apply_edit(item.source, edit, random.Random(1)), item.target)
    target = Target((Requirement("circle", color="red"), Requirement("square", color="blue")))
    empty = Scene((Object("star", "green", 0.5, 0.5, 0.26),))
    assert fixing_edit(empty, target) is None
    step = fixing_edit(empty, target, partial=True)
    assert step is not None and step.op in ("add", "replace") and step.new_shape in (None, "circle", "square")
    assert check(scene_as_parsed(apply_edit(empty, step, random.Random(1))), target).matched


def test_drawn_reflection_rows(tmp_path):
    """A drawing, read by the parser, becomes what a judge should answer: "right" with the image
    described as asked, or the fix, with the judge's trace saying they differ."""
    import json

    target = Target((Requirement("circle", color="blue"),))
    right = parse(render(Scene((Object("circle", "blue", 0.5, 0.5, 0.3),)), 32))
    assert [(o.shape, o.color) for o in parsed_as_scene(right).objects] == [("circle", "blue")]
    row = drawn_reflection_row("a photo of a blue circle", target, right)
    assert row == {"prompt": "a photo of a blue circle", "asked": "a blue circle", "shown": "a blue circle",
                   "verdict": "the image is right"}
    wrong = parse(render(Scene((Object("circle", "red", 0.5, 0.5, 0.3),)), 32))
    row = drawn_reflection_row("a photo of a blue circle", target, wrong)
    assert row["shown"] == "a red circle" and row["verdict"] == "make the red circle blue"
    completion = reflect_completion(row["asked"], row["shown"], row["verdict"])
    assert "They differ." in completion and completion.endswith("make the red circle blue")
    assert "They match." in reflect_completion("a blue circle", "a blue circle", "the image is right")
    assert judge_reading(completion) == "a red circle"  # the reader of the trace the writer wrote
    assert judge_reading("The request asks for a blue circle. the image is right") is None
    with pytest.raises(FileNotFoundError, match="rows.jsonl"):
        drawn_reflection_rows(tmp_path)
    (tmp_path / "rows.jsonl").write_text(json.dumps({"image": "a.png", **row}) + "\n" + json.dumps({"image": "b.png"}) + "\n")
    with pytest.raises(ValueError, match="row 2 lacks"):
        drawn_reflection_rows(tmp_path)


def test_drawn_edit_examples_fix_the_parsed_drawing(tmp_path):
    """A folder of judged drawings becomes edit examples for the DiT: only drawings that need a fix,
    each with its fix and the parsed drawing after it (which meets the request when the fix is a
    full one); right drawings and fixes that name nothing in the drawing are left out."""
    import json

    from PIL import Image

    (tmp_path / "images").mkdir()
    target = Target((Requirement("circle", color="blue"), Requirement("square", color="green")))
    drawings = {"right": Scene((Object("circle", "blue", 0.3, 0.5, 0.3), Object("square", "green", 0.7, 0.5, 0.3))),
                "recolour": Scene((Object("circle", "red", 0.3, 0.5, 0.3), Object("square", "green", 0.7, 0.5, 0.3))),
                "add": Scene((Object("circle", "blue", 0.3, 0.3, 0.3),))}
    rows = []
    for name, scene in drawings.items():
        image = render(scene, 32)
        Image.fromarray(image).save(tmp_path / f"images/{name}.png")
        rows.append({"image": f"images/{name}.png", **drawn_reflection_row("p", target, parse(image))})
    rows.append({**rows[1], "verdict": "remove the purple triangle"})  # nothing of the kind drawn
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    examples = drawn_edit_examples(tmp_path)
    assert [(path.name, fix) for path, fix, _ in examples] == [("recolour.png", "make the red circle blue"),
                                                               ("add.png", "add a green square")]
    for path, _, fixed in examples:
        assert satisfies(fixed, target)
        kept = drawings[path.stem].objects[0]  # the drawn circle stays where it was drawn
        assert any(abs(o.x - kept.x) < 0.05 and abs(o.y - kept.y) < 0.05 and o.shape == "circle" for o in fixed.objects)


def test_export_is_an_imagefolder_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")  # a dev dependency: installed by `make test`
    folder = export("editing", 6, tmp_path, split="test", progress=False)
    assert (folder / "metadata.jsonl").exists() and len(list(folder.glob("*.png"))) == 12
    loaded = datasets.load_dataset("imagefolder", data_dir=str(tmp_path))["test"]
    assert len(loaded) == 6 and loaded[0]["image"].size == (32, 32)
    assert loaded[0]["source"].size == (32, 32) and loaded[0]["prompt"]


def test_object_captions_read_back_and_a_judges_trace_is_checked_by_the_rules():
    """`parse_objects` inverts `canonical` for captions that list objects (a count exact, as the
    counting tag's targets say); `reading_matches` checks a judge's trace, its reading of the
    request against its reading of the image, and agrees with every reflection example the
    world writes wherever it can read the trace."""
    from thinkgen.world.captions import parse_objects

    listed = [item for split in ("train", "test") for item in S.build("composition", 120, split)
              if item.category != "position"]
    assert len(listed) == 200
    for item in listed:
        assert parse_objects(item.canonical) == Target(item.target.include, item.target.exclude), item.canonical
    for caption in ("a red circle left of a blue square", 'the text "AB"', "an red circle", "two circle",
                    "a pink circle", "a red hexagon", "three", ""):
        assert parse_objects(caption) is None, caption
    trace = "The request asks for {}. The image shows {}. They differ."
    assert reading_matches(trace.format("four circles", "four red circles")) is True
    assert reading_matches(trace.format("three circles", "four blue circles")) is False  # exactly three
    assert reading_matches(trace.format("a red circle and a blue square", "a blue square and a red circle")) is True
    assert reading_matches(trace.format("a red circle and a blue square", "a blue square and a green circle")) is False
    assert reading_matches(trace.format("a circle left of a square", "a red circle and a blue square")) is None
    assert reading_matches(trace.format("four circles", "four circles")) is None  # a reading names colours
    assert reading_matches("the image is right") is None
    agree = Counter()
    for row in seeing_examples("reflect", 120):
        said = reading_matches(row["completion"])
        if said is not None:
            agree[said == ("They match." in row["completion"])] += 1
    assert agree[True] > 40 and agree[False] == 0
