"""experiments/scripts/scenario_table.py: per-scenario gains of an RL run, paired by test item, from finished
eval folders only, with one error line for bad input."""

import importlib.util
import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "scripts" / "scenario_table.py"
spec = importlib.util.spec_from_file_location("scenario_table", SCRIPT)
scenario_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(scenario_table)


def write_eval(folder: Path, scores: dict[str, list[float]], complete: bool = True) -> None:
    folder.mkdir(parents=True)
    rows = [{"item": item, "score": s} for item, values in scores.items() for s in values]
    (folder / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    overall = sum(r["score"] for r in rows) / len(rows)
    (folder / "scores.json").write_text(json.dumps({"overall": overall, "complete": complete}))


def test_paired_gain_is_the_mean_item_difference_with_its_standard_error():
    gain, se, n = scenario_table.paired_gain({"a": 0.0, "b": 0.5, "c": 1.0}, {"a": 1.0, "b": 0.5, "c": 1.0, "d": 0.0})
    assert n == 3 and gain == pytest.approx(1 / 3)
    assert se == pytest.approx(math.sqrt(((2 / 3) ** 2 + 2 * (1 / 3) ** 2) / 2 / 3))
    with pytest.raises(ValueError):
        scenario_table.paired_gain({"a": 1.0}, {"b": 1.0})


def test_table_pairs_finished_folders_in_scenario_order(tmp_path, capsys):
    before, after = tmp_path / "sft", tmp_path / "rl"
    write_eval(before / "text-think", {"w1": [0, 1], "w2": [0, 0]})
    write_eval(after / "text-think", {"w1": [1, 1], "w2": [0, 1]})
    write_eval(before / "composition-no-think", {"c1": [1, 1]})
    write_eval(after / "composition-no-think", {"c1": [0, 1]})
    write_eval(before / "composition-think", {"c1": [1, 1]})
    write_eval(after / "composition-think", {"c1": [1, 1]}, complete=False)  # interrupted: left out
    write_eval(before / "editing-think", {"e1": [1]})  # not measured after RL: left out
    assert scenario_table.main([str(before), str(after)]) == 0
    lines = capsys.readouterr().out.splitlines()[2:]
    assert [line.split(" | ")[0] for line in lines] == ["| composition-no-think", "| text-think"]
    assert lines[0] == "| composition-no-think | 1.000 | 0.500 | -0.500 ± 0.000 |"
    assert lines[1].startswith("| text-think | 0.250 | 0.750 | +0.500 ± 0.000 |")


def test_bad_input_is_one_error_line(tmp_path, capsys):
    assert scenario_table.main([str(tmp_path / "missing"), str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert scenario_table.main([str(tmp_path), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no eval folder") and err.count("\n") == 1
