"""experiments/scripts/reading_check_table.py: a finished one-round reflection eval, re-ended as a round with
`--reading-check` would end it, with one error line for anything else."""

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "scripts" / "reading_check_table.py"
spec = importlib.util.spec_from_file_location("reading_check_table", SCRIPT)
reading_check_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reading_check_table)

AGREE = "The request asks for four circles. The image shows four red circles. They differ."
DIFFER = "The request asks for three circles. The image shows four blue circles. They differ."
MATCH = "The request asks for a square. The image shows a red square. They match."


def write_round(folder: Path, rows: list[tuple], reflect: int = 1) -> None:
    """rows: (category, first_score, score, verdict, trace)."""
    folder.mkdir(parents=True)
    items = [{"item": f"i{k}", "category": c, "first_score": f, "score": s, "verdicts": [v], "judge_reasoning": [t]}
             for k, (c, f, s, v, t) in enumerate(rows)]
    (folder / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    overall = sum(i["score"] for i in items) / len(items)
    (folder / "scores.json").write_text(json.dumps({"suite": "composition", "overall": overall, "reflect": reflect,
                                                    "complete": True}))


def test_a_fault_the_trace_contradicts_keeps_its_first_drawing(tmp_path, capsys):
    write_round(tmp_path / "r", [("counting", 1.0, 0.0, "remove the red circle", AGREE),  # spoiled: taken back
                                 ("counting", 0.0, 1.0, "add a blue circle", DIFFER),  # fixed: stands
                                 ("counting", 1.0, 1.0, "the image is right", MATCH)])
    assert reading_check_table.main([str(tmp_path / "r")]) == 0
    row = capsys.readouterr().out.splitlines()[-1]
    assert row == "| r | 0.667 | 0.667 (1 / 1) | **1.000** (1 / 0) | 1 |"


def test_anything_but_a_finished_one_round_eval_is_one_error_line(tmp_path, capsys):
    write_round(tmp_path / "two", [("counting", 1.0, 1.0, "the image is right", MATCH)], reflect=2)
    for folder in (tmp_path / "two", tmp_path / "missing"):
        assert reading_check_table.main([str(folder)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:")
