"""The project reads nothing outside its own tree (CI runs on a clean clone, with nothing beside it)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIBLING = "shared"  # the folder beside the checkout that sessions have and clean clones lack
OUTSIDE = re.compile(r"\.\./" + SIBLING + r"|parents\[[2-9]\]|/ \"" + SIBLING + r"\"|'" + SIBLING + "' /")


def test_no_source_file_points_outside_the_repository():
    assert OUTSIDE.search("GENEVAL = Path('..') / '../" + SIBLING + "/benchmarks'")  # the scan can find one
    offenders = []
    for folder in ("thinkgen", "tests", "scripts", "benchmarks", "configs"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".sh", ".yaml", ".yml"):
                for number, line in enumerate(path.read_text().splitlines(), 1):
                    if OUTSIDE.search(line):
                        offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_geneval_metadata_ships_with_its_licence():
    from thinkgen.eval.geneval import DEFAULT_METADATA

    folder = DEFAULT_METADATA.parent
    assert DEFAULT_METADATA.is_file() and (folder / "LICENSE").read_text().startswith("MIT License")
    assert "djghosh13/geneval" in (folder / "SOURCE.md").read_text()
