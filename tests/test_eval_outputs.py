"""An interrupted eval can never be mistaken for a finished one, and runs never mix."""

import json

import pytest

from thinkgen.cli import main
from thinkgen.eval import shapeworld
from thinkgen.eval.shapeworld import is_complete, run_suite

from .test_eval import OraclePipeline


def test_finished_run_records_completion(tmp_path):
    summary = run_suite(OraclePipeline("composition", 4), "composition", tmp_path, n_per_prompt=1, n_items=4,
                        progress=False)
    lines = (tmp_path / "items.jsonl").read_text().splitlines()
    assert is_complete(tmp_path) and summary["complete"] and summary["rows"] == summary["items"] == len(lines)
    assert not list(tmp_path.rglob(".*.tmp*"))  # no temporary files left behind


def test_interrupted_run_is_not_complete(tmp_path):
    class Broken(OraclePipeline):
        calls = 0

        def __call__(self, *args, **kwargs):
            Broken.calls += 1
            if Broken.calls == 2:
                raise KeyboardInterrupt  # Ctrl-C after the first batch
            return super().__call__(*args, **kwargs)

    with pytest.raises(KeyboardInterrupt):
        run_suite(Broken("composition", 8), "composition", tmp_path, n_per_prompt=1, n_items=8, batch_size=4,
                  progress=False)
    assert list((tmp_path / "images").glob("*.png")) and not (tmp_path / "scores.json").exists()
    assert not is_complete(tmp_path)


def test_a_kill_while_writing_the_scores_leaves_no_scores(tmp_path, monkeypatch):
    original = shapeworld.os.replace

    def replace(source, target):
        if str(target).endswith("scores.json"):
            raise OSError("killed")
        original(source, target)

    monkeypatch.setattr(shapeworld.os, "replace", replace)
    with pytest.raises(OSError):
        run_suite(OraclePipeline("composition", 4), "composition", tmp_path, n_per_prompt=1, n_items=4, progress=False)
    assert not (tmp_path / "scores.json").exists() and not is_complete(tmp_path)


@pytest.mark.parametrize("content", ["", "{\"overall\": 0.5", "[]", "{\"complete\": false, \"overall\": 1}"])
def test_torn_or_partial_scores_are_not_complete(tmp_path, content):
    (tmp_path / "scores.json").write_text(content)
    assert not is_complete(tmp_path)


def test_a_rerun_into_a_finished_folder_refuses_or_replaces(tmp_path, capsys):
    run_suite(OraclePipeline("composition", 4), "composition", tmp_path, n_per_prompt=1, n_items=4, progress=False)
    with pytest.raises(FileExistsError, match="--overwrite"):
        run_suite(OraclePipeline("composition", 4), "composition", tmp_path, n_per_prompt=1, n_items=4, progress=False)
    (tmp_path / "images" / "stale.png").write_bytes(b"old")
    run_suite(OraclePipeline("composition", 4), "composition", tmp_path, n_per_prompt=2, n_items=4, overwrite=True,
              progress=False)
    rerun = json.loads((tmp_path / "scores.json").read_text())
    assert rerun["n_per_prompt"] == 2 and rerun["rows"] == len((tmp_path / "items.jsonl").read_text().splitlines())
    assert not (tmp_path / "images" / "stale.png").exists()  # nothing of the old run is mixed in


def test_cli_refuses_a_folder_with_results(tmp_path, capsys):
    (tmp_path / "scores.json").write_text("{}")
    code = main(["eval", "--suite", "composition", "--out", str(tmp_path), "--n-items", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "--overwrite" in err and len(err.strip().splitlines()) == 1
