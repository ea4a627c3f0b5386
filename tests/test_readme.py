"""The README's and the guides' code runs as written. A page's ``python`` and ``bash`` blocks run in
order in one scratch folder (the repository's ``configs`` and ``thinkgen`` linked in, so paths read as from a clone);
a block after ``<!-- no-run: why -->`` (real weights, a GPU, hours, a server) is only parsed."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- no-run: (?P<why>[^>]*) -->\n)?```(?P<lang>python|bash)\n(?P<code>.*?)```", re.S)


def blocks(path: Path) -> list[tuple[str, str, str | None]]:
    """``(language, code, why not run or None)`` of each fenced python / bash block."""
    return [(m["lang"], m["code"], m["why"]) for m in BLOCK.finditer(path.read_text())]


def test_the_readme_is_short_and_its_blocks_are_found():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    found = blocks(ROOT / "README.md")
    assert sum(why is None for _, _, why in found) >= 4  # most of what a user types runs here
    assert len(found) == text.count("```python") + text.count("```bash")


PAGES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs" / "guides").glob("*.md"))]


@pytest.mark.parametrize("page", PAGES)
def test_every_block_runs(tmp_path, page):
    """A page's blocks, in order, in one scratch folder."""
    for name in ("configs", "thinkgen"):
        (tmp_path / name).symlink_to(ROOT / name)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "OMP_WAIT_POLICY": "PASSIVE"}
    for lang, code, why in blocks(ROOT / page):
        if why is not None:  # parsed, not run
            if lang == "python":
                compile(code, "README.md", "exec")
            else:
                checked = subprocess.run(["bash", "-n"], input=code, text=True, capture_output=True)
                assert checked.returncode == 0, checked.stderr
            continue
        command = [sys.executable, "-c", code] if lang == "python" else ["bash", "-euo", "pipefail", "-c", code]
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{page}: {lang} block failed:\n{code}\n{done.stderr[-3000:]}"


@pytest.mark.parametrize("page", ["index.md"])
def test_the_docs_home_links_every_guide(page):
    text = (ROOT / "docs" / page).read_text()
    for guide in (ROOT / "docs" / "guides").glob("*.md"):
        assert f"guides/{guide.name}" in text, guide.name
