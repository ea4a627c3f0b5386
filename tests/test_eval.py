"""Benchmark runners: ShapeWorld suites end to end, GenEval's layout, WISE's scoring."""

import json
from types import SimpleNamespace

import pytest
from PIL import Image

from thinkgen.cli import main
from thinkgen.eval import geneval, wise
from thinkgen.eval.shapeworld import rescore, run_suite, summarise, wise_weighted
from thinkgen.world import render
from thinkgen.world import suites as S

GENEVAL = geneval.DEFAULT_METADATA  # shipped inside the package: nothing reads outside the repository


class OraclePipeline:
    """Draws each item's ground truth (or a wrong scene), in the order the runner asks."""

    def __init__(self, suite, n, wrong=False):
        self.items = iter(S.build(suite, n, "test"))
        self.defaults = {"height": 32}
        self.wrong = wrong
        self.thinker = SimpleNamespace(processor=None, encode=self._encode)

    def _encode(self, prompts, think=True, images=None, seed=0):
        batch = [next(self.items) for _ in prompts]
        fixes = ["remove the purple star" if self.wrong else item.canonical for item in batch]
        return SimpleNamespace(rewritten=fixes, reasoning=["..."] * len(prompts))

    def __call__(self, prompts, num_images_per_prompt=1, height=32, **kwargs):
        images = []
        for _ in prompts:
            item = next(self.items)
            scene = item.source if (self.wrong and item.source) else item.scene
            if self.wrong and not item.source:
                scene = type(scene)()  # an empty picture
            images += [Image.fromarray(render(scene, height))] * num_images_per_prompt
        n = len(images)
        return SimpleNamespace(images=images, reasoning=[""] * n, rewritten=[""] * n)


@pytest.mark.parametrize("suite", S.SUITES)
def test_runner_scores_ground_truth_as_correct(suite, tmp_path):
    summary = run_suite(OraclePipeline(suite, 30), suite, tmp_path, n_per_prompt=2, n_items=30, progress=False)
    assert summary["overall"] >= 0.99
    rows = [json.loads(line) for line in (tmp_path / "items.jsonl").read_text().splitlines()]
    assert len(rows) == summary["images"] and all(r["score"] == 1.0 for r in rows)
    assert json.loads((tmp_path / "scores.json").read_text())["overall"] == summary["overall"]
    assert "overall" in (tmp_path / "scores.md").read_text()
    assert Image.open(tmp_path / "grid.png").size[0] > 0
    assert all((tmp_path / r["image"]).exists() for r in rows)
    wrong = run_suite(OraclePipeline(suite, 30, wrong=True), suite, tmp_path / "wrong", n_per_prompt=1,
                      n_items=30, progress=False)
    assert wrong["overall"] <= 0.2


def test_rescore_scores_saved_images_again_and_keeps_the_first_scores(tmp_path, capsys):
    first = run_suite(OraclePipeline("composition", 12), "composition", tmp_path / "run", n_per_prompt=2,
                      n_items=12, progress=False)
    assert first["overall"] >= 0.99
    rows = [json.loads(line) for line in (tmp_path / "run" / "items.jsonl").read_text().splitlines()]
    for row in rows[:4]:  # as if a different judge had drawn: these images are now empty
        Image.new("RGB", (32, 32), "white").save(tmp_path / "run" / row["image"])
    again = rescore(tmp_path / "run")
    assert again["overall"] < first["overall"] and again["before_rescore"]["overall"] == first["overall"]
    assert again["before_rescore"]["categories"] == first["categories"]
    rescored = [json.loads(line) for line in (tmp_path / "run" / "items.jsonl").read_text().splitlines()]
    assert [r["score"] for r in rescored[:4]] == [0.0] * 4 and all(r["score"] == 1.0 for r in rescored[4:])
    saved = json.loads((tmp_path / "run" / "scores.json").read_text())
    assert saved["overall"] == again["overall"] and saved["complete"] and saved["think"] == first["think"]
    assert rescore(tmp_path / "run")["before_rescore"]["overall"] == first["overall"]  # the first scores stay
    assert "before the images were rescored" in (tmp_path / "run" / "scores.md").read_text()

    run_suite(OraclePipeline("reflection", 6), "reflection", tmp_path / "reflection", n_items=6, progress=False)
    before = (tmp_path / "run" / "scores.json").read_text()
    capsys.readouterr()
    code = main(["rescore", str(tmp_path / "run"), str(tmp_path / "reflection")])  # all checked before any change
    assert code == 2 and (tmp_path / "run" / "scores.json").read_text() == before
    assert capsys.readouterr().err.count("error: ") == 1
    assert main(["rescore", str(tmp_path / "nothing")]) == 2
    assert "no finished eval" in capsys.readouterr().err
    assert main(["rescore", str(tmp_path / "run")]) == 0
    assert "composition 1.000 -> " in capsys.readouterr().out


def test_summaries_by_hand():
    rows = [{"category": t, "score": s, "group": None} for t, s in
            [("single_object", 1), ("single_object", 0), ("two_object", 1), ("counting", 0),
             ("colors", 1), ("position", 0), ("color_attr", 1)]]
    assert summarise("composition", rows)["overall"] == pytest.approx((0.5 + 1 + 0 + 1 + 0 + 1) / 6)
    categories = {"culture": 1.0, "time": 0.0, "space": 0.5, "biology": 1.0, "physics": 0.0, "chemistry": 0.5}
    assert wise_weighted(categories) == pytest.approx(0.4 + 0.133 * 0.5 + 0.1 + 0.05, abs=1e-9)
    assert wise_weighted({"culture": 0.5, "biology": 1.0}) == pytest.approx((0.2 + 0.1) / 0.5)
    reasoning_rows = [{"category": "culture", "score": 1, "group": "supervised"},
                      {"category": "culture", "score": 0, "group": "held_out"}]
    summary = summarise("reasoning", reasoning_rows)
    assert summary["supervised"]["overall"] == 1.0 and summary["held_out"]["overall"] == 0.0


def test_geneval_real_metadata_and_layout(tmp_path):
    metadata = geneval.read_metadata(GENEVAL)
    assert len(metadata) == 553
    counts = {tag: sum(e["tag"] == tag for e in metadata) for tag in geneval.TAGS}
    assert counts == {"single_object": 80, "two_object": 99, "counting": 80, "colors": 94, "position": 100,
                      "color_attr": 100}

    def draw(prompts, first):
        return [[Image.new("RGB", (8, 8), (i, 0, 0)) for i in range(4)] for _ in prompts]

    assert geneval.generate(draw, metadata[:10], tmp_path, progress=False) == 10
    folder = tmp_path / "00007"
    assert json.loads((folder / "metadata.jsonl").read_text()) == metadata[7]
    assert sorted(p.name for p in (folder / "samples").iterdir()) == ["0000.png", "0001.png", "0002.png", "0003.png"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"tag": "single_object", "include": []}\n')
    with pytest.raises(geneval.MetadataError, match="missing"):
        geneval.read_metadata(bad)
    bad.write_text("{oops\n")
    with pytest.raises(geneval.MetadataError, match="not JSON"):
        geneval.read_metadata(bad)


WISE_PROMPTS = [
    {"Prompt": "A fruit that monkeys love, ripe", "Explanation": "a yellow banana", "Category": "Cultural knowledge",
     "Subcategory": "Food", "prompt_id": 12},
    {"Prompt": "The planet known as the red planet", "Explanation": "Mars, red", "Category": "Spatio-temporal",
     "Subcategory": "Space", "prompt_id": 600},
    {"Prompt": "Copper sulfate solution", "Explanation": "a blue liquid", "Category": "Natural science",
     "Subcategory": "Chemistry", "prompt_id": 950},
]


def test_wise_prompt_files(tmp_path):
    path = tmp_path / "wise.json"
    path.write_text(json.dumps(WISE_PROMPTS))
    prompts = wise.read_prompts(path)
    assert [p.prompt_id for p in prompts] == [12, 600, 950] and wise.image_name(prompts[1]) == "600.png"


def test_cli_eval_export_geneval_wise(tmp_path, capsys):
    model = tmp_path / "tiny"
    assert main(["init", str(model)]) == 0
    assert main(["eval", "--suite", "reasoning", "--model", str(model), "--n-items", "4", "--n-per-prompt", "1",
                 "--steps", "2", "--out", str(tmp_path / "ev")]) == 0
    assert "| **overall** |" in capsys.readouterr().out
    summary = json.loads((tmp_path / "ev" / "scores.json").read_text())
    assert summary["images"] == 4 and summary["think"] and summary["split"] == "test"
    assert main(["world", "export", "--suite", "composition", "--n", "12", "--out", str(tmp_path / "ds")]) == 0
    assert len(list((tmp_path / "ds" / "train").glob("*.png"))) == 12
    assert main(["geneval", "--model", str(model), "--limit", "2", "--steps", "1",  # the shipped metadata
                 "--n-samples", "2", "--out", str(tmp_path / "ge")]) == 0
    assert len(list((tmp_path / "ge").glob("*/samples/*.png"))) == 4
    (tmp_path / "wise.json").write_text(json.dumps(WISE_PROMPTS))
    assert main(["wise", "generate", "--model", str(model), "--prompts", str(tmp_path / "wise.json"),
                 "--steps", "1", "--out", str(tmp_path / "wi")]) == 0
    assert sorted(p.name for p in (tmp_path / "wi").iterdir()) == ["12.png", "600.png", "950.png"]
    capsys.readouterr()
    assert main(["wise", "score"]) == 2
    assert "--judgments" in capsys.readouterr().err
    assert main(["wise", "score", "--judgments", str(tmp_path / "missing.jsonl")]) == 2
    assert main(["geneval", "--model", str(model), "--metadata", str(tmp_path / "wise.json"),
                 "--out", str(tmp_path / "x")]) == 2
    with pytest.raises(SystemExit) as exit_:
        main(["eval", "--suite", "poetry", "--model", str(model), "--out", str(tmp_path / "y")])
    assert exit_.value.code == 2
