"""WISE in both official protocols: judge files as the official judges write them (one per category
file), replies as the official parsers read them, incomplete sets, and the judge loop."""

import json
from pathlib import Path

import pytest
from PIL import Image

from thinkgen.cli import main
from thinkgen.eval import wise

# The official judges write one score file per prompt file: culture, spatio-temporal, science.
LEGACY_FILES = {"cultural_common_sense": range(1, 401), "spatio-temporal_reasoning": range(401, 701),
                "natural_science": range(701, 1001)}
VERIFIED_FILES = {"cultural_common_sense": range(1, 401), "spatio-temporal_reasoning": range(401, 641),
                  "natural_science": range(641, 1001)}


def legacy_scores(prompt_id):
    """Per legacy category one fixed (C, R, A), so each category's mean is known by hand."""
    for high, triple in ((400, (2, 2, 2)), (567, (1, 1, 1)), (700, (0, 0, 0)), (800, (2, 0, 0)),
                         (900, (0, 2, 0)), (1000, (0, 0, 2))):
        if prompt_id <= high:
            return dict(zip(("consistency", "realism", "aesthetic_quality"), triple, strict=True))


def verified_score(prompt_id):
    """culture: 1 for ids 1-200 (mean 0.5); time 1; space 0; biology 1 for 641-700 (0.5);
    physics 1; chemistry 0."""
    if prompt_id <= 400:
        return int(prompt_id <= 200)
    if prompt_id <= 520:
        return 1
    if prompt_id <= 640:
        return 0
    if prompt_id <= 760:
        return int(prompt_id <= 700)
    return int(prompt_id <= 880)


def write_official(folder, files, row, skip=()):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, ids in files.items():
        path = folder / f"{name}_scores_results.jsonl"
        path.write_text("".join(json.dumps({"prompt_id": i, "Subcategory": "x", **row(i)}) + "\n"
                                for i in ids if i not in skip))
        paths.append(path)
    return paths


def test_three_legacy_files_score_in_one_call(tmp_path, capsys):
    paths = write_official(tmp_path / "legacy", LEGACY_FILES, legacy_scores)
    judgments = wise.read_judgments(paths)
    assert judgments.protocol is wise.LEGACY and len(judgments.scores) == 1000
    result = wise.overall(judgments)
    means = {"culture": 1.0, "time": 0.5, "space": 0.0, "biology": 0.7, "physics": 0.2, "chemistry": 0.1}
    assert result["categories"] == pytest.approx(means) and result["complete"]
    # (0.4 * 1 + 0.167 * 0.5 + 0.133 * 0 + 0.1 * (0.7 + 0.2 + 0.1)): the official Calculate.py weights
    assert result["overall"] == pytest.approx(0.5835)
    assert main(["wise", "score", "--judgments", *map(str, paths)]) == 0
    out = capsys.readouterr().out
    assert "legacy protocol, 3 file(s)" in out and "overall    0.584" in out
    assert main(["wise", "score", "--judgments", str(tmp_path / "legacy")]) == 0  # a folder
    assert "overall    0.584" in capsys.readouterr().out


def test_verified_files_use_the_verified_ranges_and_weights(tmp_path, capsys):
    paths = write_official(tmp_path / "verified", VERIFIED_FILES, lambda i: {"score": verified_score(i)})
    judgments = wise.read_judgments(tmp_path / "verified")
    assert judgments.protocol is wise.VERIFIED
    result = wise.overall(judgments)
    assert result["categories"] == pytest.approx(
        {"culture": 0.5, "time": 1.0, "space": 0.0, "biology": 0.5, "physics": 1.0, "chemistry": 0.0})
    assert result["overall"] == pytest.approx(0.4 * 0.5 + 0.12 * (1 + 0 + 0.5 + 1 + 0))
    # 521 is space in the verified protocol and time in the legacy one
    assert wise.VERIFIED.category_of(521) == "space" and wise.LEGACY.category_of(521) == "time"
    assert [wise.VERIFIED.category_of(i) for i in (400, 401, 520, 640, 641, 760, 761, 880, 881, 1000)] == \
        ["culture", "time", "time", "space", "biology", "biology", "physics", "physics", "chemistry", "chemistry"]
    assert main(["wise", "score", "--judgments", *map(str, paths), "--protocol", "verified"]) == 0
    assert "verified protocol" in capsys.readouterr().out
    assert main(["wise", "score", "--judgments", *map(str, paths), "--protocol", "legacy"]) == 2
    assert "not in the legacy protocol's format" in capsys.readouterr().err


def test_an_incomplete_set_is_refused_with_the_missing_ids(tmp_path, capsys):
    paths = write_official(tmp_path, LEGACY_FILES, legacy_scores, skip={17, 18, 19, 640})
    with pytest.raises(wise.WiseIncompleteError, match="4 of 1000 prompt ids have no judgment: 17-19, 640"):
        wise.overall(wise.read_judgments(paths))
    assert main(["wise", "score", "--judgments", *map(str, paths[:1])]) == 2  # culture only
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "603 of 1000" in err and "401-1000" in err and "--allow-partial" in err
    assert main(["wise", "score", "--judgments", str(paths[0]), "--allow-partial"]) == 0
    out = capsys.readouterr().out
    assert "partial    1.000  (397/1000 prompts, coverage 39.7%" in out and "(0/167 judged)" in out
    partial = wise.overall(wise.read_judgments(paths[1:]), allow_partial=True)
    assert not partial["complete"] and partial["coverage"]["space"] == (132, 133)
    assert partial["overall"] == pytest.approx((0.167 * 0.5 + 0.1 * 1.0) / 0.6)  # re-weighted over what is there


def test_bad_judgment_sets(tmp_path):
    legacy = write_official(tmp_path / "a", {"c": range(1, 3)}, legacy_scores)[0]
    verified = write_official(tmp_path / "b", {"n": range(700, 702)}, lambda i: {"score": 1})[0]
    with pytest.raises(wise.WiseFormatError, match="mix protocols"):
        wise.read_judgments([legacy, verified])
    with pytest.raises(wise.WiseFormatError, match="judged twice"):
        wise.read_judgments([legacy, write_official(tmp_path / "c", {"c": range(2, 4)}, legacy_scores)[0]])
    with pytest.raises(wise.WiseFormatError, match="given twice"):
        wise.read_judgments([legacy, legacy])
    (tmp_path / "empty").mkdir()
    with pytest.raises(wise.WiseFormatError, match="no .jsonl"):
        wise.read_judgments(tmp_path / "empty")
    for line, fragment in [('{"prompt_id": 1, "score": 2}', "outside the verified"),
                           ('{"prompt_id": 1, "consistency": 3, "realism": 0, "aesthetic_quality": 0}', "outside"),
                           ('{"prompt_id": 1, "consistency": 2}', "either a binary"),
                           ('{"prompt_id": 1.0, "score": 1}', "integer"),
                           ('{"prompt_id": 1, "score": "1"}', "number"),
                           ('[1]', "object"), ('{"prompt_id": 1, ', "not JSON")]:
        legacy.write_text(line + "\n")
        with pytest.raises(wise.WiseFormatError, match=fragment):
            wise.read_judgments(legacy)


@pytest.mark.parametrize("reply, expected", [
    ("Consistency: 2\nRealism: 1\nAesthetic Quality: 0", (2, 1, 0)),
    ("**Consistency**: 1\n**Realism** 2\n**aesthetic quality**:0", (1, 2, 0)),
    ("Consistency: 0 ... on reflection\nConsistency: 2\nRealism: 2\nAesthetic Quality: 1", (2, 2, 1)),  # last wins
    ("2\n1\n0", (2, 1, 0)),  # the official fallback: bare lines
    ("The scores are\n 1 \n2\n0\n2", (1, 2, 0)),
])
def test_legacy_replies_the_official_parser_accepts(reply, expected):
    assert wise.parse_legacy_reply(reply) == dict(zip(wise.LEGACY.fields, map(float, expected), strict=True))


@pytest.mark.parametrize("reply", ["Consistency: 2", "Consistency (0-2): 2\nRealism: 1\nAesthetic Quality: 0",
                                   "2\n1", "Consistency: 3\nRealism: 1\nAesthetic Quality: 0", ""])
def test_legacy_replies_refused(reply):
    with pytest.raises(ValueError):
        wise.parse_legacy_reply(reply)


@pytest.mark.parametrize("reply, score", [("Score: 1", 1), ("**Score**: 0", 0), ("score 1", 1), ("1", 1),
                                          ("<think>Score: 0, no wait</think>\nScore: 1", 1),
                                          ("Score: 0\nScore: 1", 0)])  # the first one counts
def test_verified_replies(reply, score):
    assert wise.parse_verified_reply(reply) == {"score": float(score)}


@pytest.mark.parametrize("reply", ["0\n1", "Score: 10", "Score: 2", "yes"])
def test_verified_replies_refused(reply):
    with pytest.raises(ValueError):
        wise.parse_verified_reply(reply)


def test_protocol_detected_from_prompt_categories():
    def prompt(i, category):
        return wise.WisePrompt(i, "p", "e", category, "s")
    assert wise.protocols_matching([prompt(521, "Space")]) == [wise.VERIFIED]
    assert wise.protocols_matching([prompt(560, "time"), prompt(650, "Space")]) == [wise.LEGACY]
    assert wise.protocols_matching([prompt(3, "Cultural knowledge")]) == [wise.LEGACY, wise.VERIFIED]
    with pytest.raises(wise.WiseFormatError, match="--protocol"):
        wise.choose_protocol(wise.protocols_matching([prompt(3, "Cultural knowledge")]), None, "the prompts")
    assert wise.choose_protocol([wise.LEGACY, wise.VERIFIED], "verified", "the prompts") is wise.VERIFIED
    assert wise.protocols_matching([prompt(521, "time"), prompt(521, "Space")]) == []


def test_judge_request_with_a_user_rubric(tmp_path):
    image = tmp_path / "1.png"
    Image.new("RGB", (4, 4)).save(image)
    rubric = tmp_path / "rubric.txt"
    rubric.write_text('PROMPT: "{Prompt}"\nEXPLANATION: "{Explanation}"\nReturn {"score": 0 or 1}')
    text = wise.read_rubric(rubric)
    judge = wise.OpenAICompatibleJudge("http://localhost:9/v1/", "some-vlm", protocol=wise.VERIFIED,
                                       rubric=text, system="You audit images.")
    body = judge.request(image, "a banana", "yellow")
    assert body["messages"][0] == {"role": "system", "content": [{"type": "text", "text": "You audit images."}]}
    user = body["messages"][1]["content"]
    assert user[0]["text"] == 'PROMPT: "a banana"\nEXPLANATION: "yellow"\nReturn {"score": 0 or 1}'
    assert user[1]["image_url"]["url"].startswith("data:image/png;base64,") and body["max_tokens"] == 500
    default = wise.OpenAICompatibleJudge("http://x/v1", "m").request(image, "a banana", "yellow")
    assert "a banana" in default["messages"][0]["content"][0]["text"] and default["max_tokens"] == 2000
    rubric.write_text("judge it: {Prompt}")
    with pytest.raises(wise.WiseFormatError, match="Explanation"):
        wise.read_rubric(rubric)


def test_judge_folder_writes_the_official_format_and_resumes(tmp_path):
    for i in (1, 2, 3):
        Image.new("RGB", (4, 4)).save(tmp_path / f"{i}.png")
    prompts = [wise.WisePrompt(i, f"p{i}", "e", "Cultural knowledge", "sub") for i in (3, 1, 2, 4)]
    replies = {"p1": "Score: 1", "p2": "I cannot tell", "p3": "0"}
    calls = []

    def judge(path, prompt, explanation):
        calls.append(Path(path).name)
        return wise.parse_verified_reply(replies[prompt])

    out = tmp_path / "judged.jsonl"
    result = wise.judge_folder(judge, prompts, tmp_path, out, wise.VERIFIED)
    assert result == {"judged": 2, "resumed": 0, "failed": [2], "absent": [4]}
    assert calls == ["1.png", "2.png", "2.png", "2.png", "3.png"]  # an unreadable reply is asked 3 times
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == [{"prompt_id": 1, "Subcategory": "sub", "score": 1.0}, {"prompt_id": 3, "Subcategory": "sub", "score": 0.0}]
    replies["p2"] = "Score: 1"
    calls.clear()
    result = wise.judge_folder(judge, prompts, tmp_path, out, wise.VERIFIED)
    assert calls == ["2.png"] and result["resumed"] == 2 and result["judged"] == 3
    assert [json.loads(line)["prompt_id"] for line in out.read_text().splitlines()] == [1, 2, 3]
    assert wise.read_judgments(out).protocol is wise.VERIFIED


def test_cli_judge_refuses_ambiguous_prompts_and_bad_rubrics(tmp_path, capsys):
    prompts = tmp_path / "culture.json"
    prompts.write_text(json.dumps([{"Prompt": "a fruit monkeys love", "Explanation": "a banana",
                                    "Category": "Cultural knowledge", "Subcategory": "Food", "prompt_id": 1}]))
    common = ["wise", "judge", "--prompts", str(prompts), "--images", str(tmp_path), "--endpoint",
              "http://127.0.0.1:9/v1", "--judge-model", "m", "--out", str(tmp_path / "j")]
    assert main(common) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--protocol" in err
    (tmp_path / "rubric.txt").write_text("no placeholders")
    assert main([*common, "--protocol", "verified", "--rubric", str(tmp_path / "rubric.txt")]) == 2
    assert "placeholder" in capsys.readouterr().err


def test_a_malformed_endpoint_reply_is_an_unreadable_reply(tmp_path, monkeypatch):
    """A reply without choices/message counts as an unreadable judgment (asked again, then listed
    as failed), not a crash."""
    Image.new("RGB", (4, 4)).save(tmp_path / "1.png")

    class Response:
        def __init__(self, body):
            self.body = body

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            return self.body

    bodies = iter([b'{"error": "overloaded"}', b"not json", b'{"choices": []}'])
    monkeypatch.setattr(wise.urllib.request, "urlopen", lambda request, timeout: Response(next(bodies)))
    judge = wise.OpenAICompatibleJudge("http://127.0.0.1:9/v1", "m", protocol=wise.VERIFIED)
    prompts = [wise.WisePrompt(1, "p", "e", "Cultural knowledge", "s")]
    result = wise.judge_folder(judge, prompts, tmp_path, tmp_path / "j.jsonl", wise.VERIFIED)
    assert result["failed"] == [1] and result["judged"] == 0


def test_wise_run_draws_judges_and_scores_in_one_command(tmp_path, capsys):
    """`thinkgen wise run`: a model's pictures, judged by an OpenAI-compatible endpoint (here on loopback,
    answering "Score: 1" to each image), scored as the official scripts score them."""
    import thinkgen

    from .loopback import ChatServer

    with ChatServer(lambda body: "Score: 1") as server:
        thinkgen.tiny().save_pretrained(tmp_path / "tiny")
        prompts = tmp_path / "wise.json"
        prompts.write_text(json.dumps([{"prompt_id": i, "Prompt": f"thing {i}", "Explanation": "e",
                                        "Category": "Cultural knowledge", "Subcategory": "s"} for i in (1, 2, 3)]))
        code = main(["wise", "run", "--model", str(tmp_path / "tiny"), "--prompts", str(prompts), "--endpoint",
                     server.url, "--judge-model", "m", "--protocol", "verified", "--steps", "2", "--allow-partial",
                     "--out", str(tmp_path / "wise")])
    out = capsys.readouterr().out
    assert code == 0 and len(server.requests) == 3  # each image asked once
    assert sorted(p.name for p in (tmp_path / "wise" / "images").iterdir()) == ["1.png", "2.png", "3.png"]
    rows = [json.loads(line) for line in (tmp_path / "wise" / "judgments.jsonl").read_text().splitlines()]
    assert [(r["prompt_id"], r["score"]) for r in rows] == [(1, 1.0), (2, 1.0), (3, 1.0)]
    assert "WISE verified protocol" in out and "culture    1.000  (3/400 judged)" in out and "partial" in out
