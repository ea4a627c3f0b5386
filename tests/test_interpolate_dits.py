"""experiments/scripts/interpolate_dits.py: the DiT and bridge of two pipelines averaged, the rest kept; pipelines
with different thinkers refused with one error line."""

import subprocess
import sys
from pathlib import Path

import torch

from thinkgen import ThinkGenPipeline, tiny_pipeline

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "scripts" / "interpolate_dits.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_interpolate_dits(tmp_path):
    a = tiny_pipeline(seed=0)
    a.save_pretrained(tmp_path / "a")
    b = tiny_pipeline(seed=0)
    with torch.no_grad():  # "trained further": the same thinker, another DiT and bridge
        for module in (b.transformer, b.bridge):
            for parameter in module.parameters():
                parameter.add_(torch.randn_like(parameter))
    b.save_pretrained(tmp_path / "b")
    done = run(str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "mid"), "--alpha", "0.25")
    assert done.returncode == 0, done.stderr
    mid = ThinkGenPipeline.from_pretrained(tmp_path / "mid")
    for part in ("transformer", "bridge"):
        left, right, got = (getattr(p, part).state_dict() for p in (a, b, mid))
        for name, value in got.items():
            assert torch.allclose(value, 0.75 * left[name] + 0.25 * right[name], atol=1e-6), name
    for name, value in mid.thinker.model.state_dict().items():
        assert torch.equal(value, b.thinker.model.state_dict()[name])
    tiny_pipeline(seed=1).save_pretrained(tmp_path / "other")  # another thinker
    refused = run(str(tmp_path / "a"), str(tmp_path / "other"), str(tmp_path / "bad"))
    assert refused.returncode != 0 and refused.stderr.strip().startswith("error:")
    assert "thinkers differ" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()
    out_of_range = run(str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "bad"), "--alpha", "1.5")
    assert out_of_range.returncode != 0 and out_of_range.stderr.strip() == "error: --alpha must be in [0, 1], got 1.5"
