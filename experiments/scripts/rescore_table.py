"""The eval folders that `thinkgen rescore` scored again, as a markdown table: before -> after
(text folders are left out: the corner rule does not touch how text is read).

    python experiments/scripts/rescore_table.py [results]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(root: str = "results") -> None:
    print("| eval folder | suite | mode | before | after | change |")
    print("|---|---|---|---|---|---|")
    for path in sorted(Path(root).rglob("scores.json")):
        summary = json.loads(path.read_text())
        if "before_rescore" not in summary or summary["suite"] == "text":  # text is read as before
            continue
        before, after = summary["before_rescore"]["overall"], summary["overall"]
        mode = "think" if summary.get("think", True) else "direct"
        print(f"| `{path.parent}` | {summary['suite']} | {mode} | {before:.3f} | {after:.3f} | {after - before:+.3f} |")


if __name__ == "__main__":
    main(*sys.argv[1:])
