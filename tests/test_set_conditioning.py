"""scripts/set_conditioning.py: a pipeline folder copied with another conditioning strategy, weights
byte for byte; an unknown strategy refused with one error line and no copy left behind."""

import subprocess
import sys
from pathlib import Path

from thinkgen import ThinkGenPipeline, tiny_pipeline

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "set_conditioning.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_set_conditioning(tmp_path):
    tiny_pipeline(seed=0).save_pretrained(tmp_path / "a")
    done = run(str(tmp_path / "a"), str(tmp_path / "b"), "thinkgen-reencode")
    assert done.returncode == 0, done.stderr
    assert ThinkGenPipeline.from_pretrained(tmp_path / "b").conditioning.name == "thinkgen-reencode"
    for weights in (tmp_path / "a").rglob("*.safetensors"):
        assert weights.read_bytes() == (tmp_path / "b" / weights.relative_to(tmp_path / "a")).read_bytes()
    refused = run(str(tmp_path / "a"), str(tmp_path / "c"), "no-such-strategy")
    assert refused.returncode != 0 and refused.stderr.startswith("error:")
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "c").exists()
    taken = run(str(tmp_path / "a"), str(tmp_path / "b"), "thinkgen")  # never overwrites
    assert taken.returncode != 0 and "exists" in taken.stderr
