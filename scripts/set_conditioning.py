"""Copy a thinkgen pipeline folder with another conditioning strategy (thinkgen.conditioning).

    python scripts/set_conditioning.py MODEL OUT NAME     # e.g. NAME = thinkgen-reencode

The weights are copied byte for byte; only model_index.json's "conditioning" changes, and the copy
is loaded once to check that the strategy fits the model (else one error line, and no copy).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from thinkgen import ThinkGenPipeline
from thinkgen.cli import _quiet_libraries
from thinkgen.pipeline import PipelineLoadError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("out")
    parser.add_argument("name", help="a conditioning strategy, e.g. thinkgen or thinkgen-reencode")
    args = parser.parse_args()
    source, target = Path(args.model), Path(args.out)
    if not (source / "model_index.json").exists():
        print(f"error: {source} holds no model_index.json", file=sys.stderr)
        return 1
    if target.exists():
        print(f"error: {target} exists", file=sys.stderr)
        return 1
    _quiet_libraries()
    shutil.copytree(source, target)
    index = json.loads((target / "model_index.json").read_text())
    index["conditioning"] = {"name": args.name, "settings": {}}
    (target / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    try:
        ThinkGenPipeline.from_pretrained(target)
    except (PipelineLoadError, ValueError, OSError) as error:
        shutil.rmtree(target)
        print(f"error: {error}".splitlines()[0], file=sys.stderr)
        return 1
    print(f"wrote {target} (conditioning {args.name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
