"""experiments/scripts/scaling_table.py: the log-linear trend of score against DiT steps, and the table read from
eval folders (unfinished or missing ones left out and named)."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "scripts" / "scaling_table.py"
spec = importlib.util.spec_from_file_location("scaling_table", SCRIPT)
scaling_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(scaling_table)


def test_trend_fits_a_gain_per_doubling_and_extrapolates_to_the_goal():
    slope, residual, needed = scaling_table.trend([10_000, 20_000, 40_000], [0.5, 0.6, 0.7], goal=0.8)
    assert slope == pytest.approx(0.1) and residual == pytest.approx(0, abs=1e-9)
    assert needed == pytest.approx(80_000)
    assert scaling_table.trend([10_000, 20_000], [0.6, 0.5])[2] is None  # falling: no extrapolation


def write_scores(folder: Path, overall: float, complete: bool = True) -> None:
    for run in ("composition-think", "composition-no-think", "reasoning-think", "reasoning-no-think"):
        (folder / run).mkdir(parents=True)
        categories = {"counting": overall, "position": overall, "color_attr": overall}
        (folder / run / "scores.json").write_text(json.dumps(
            {"overall": overall, "categories": categories, "complete": complete}))


def test_table_reads_finished_folders_and_names_the_rest(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(scaling_table, "CHAIN", [("a", 10_000, "a", True), ("b", 20_000, "b", True),
                                                 ("c", 40_000, "c", True), ("d", 80_000, "d", True)])
    write_scores(tmp_path / "a", 0.5)
    write_scores(tmp_path / "b", 0.6)
    write_scores(tmp_path / "c", 0.7, complete=False)  # an interrupted eval is not a measurement
    scaling_table.main(tmp_path)
    out, err = capsys.readouterr()
    assert "| a | 10,000 | 0.500 |" in out and "| b | 20,000 | 0.600 |" in out and "| c |" not in out
    assert str(tmp_path / "c") in err and str(tmp_path / "d") in err
    assert "+0.100 per doubling" in out and "0.80 at about 80,000 steps" in out
