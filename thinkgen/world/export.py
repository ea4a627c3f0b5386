"""Export a suite split as an image dataset in the Hugging Face *imagefolder* layout.

    <out>/<split>/metadata.jsonl      one line per image; "file_name" names the image
    <out>/<split>/<id>.png            the ground-truth render
    <out>/<split>/<id>_source.png     editing / reflection: the input image

``datasets.load_dataset("imagefolder", data_dir=out)`` reads it back, with every other column
(prompt, canonical caption, reasoning trace, target as JSON, ...) as metadata.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from .render import render
from .suites import RESOLUTION, build


def export(suite: str, n: int, out: str | Path, split: str = "train", resolution: int | None = None,
           seed: int = 0, progress: bool = True) -> Path:
    """Write ``n`` items of a suite's split; returns the split's folder."""
    resolution = resolution or RESOLUTION.get(suite, 32)
    folder = Path(out) / split
    folder.mkdir(parents=True, exist_ok=True)
    items = build(suite, n, split, seed)
    with open(folder / "metadata.jsonl", "w") as f:
        for item in tqdm(items, desc=f"export {suite}", disable=not progress):
            Image.fromarray(render(item.scene, resolution)).save(folder / f"{item.id}.png")
            source = ""
            if item.source is not None:
                source = f"{item.id}_source.png"
                Image.fromarray(render(item.source, resolution)).save(folder / source)
            row = {"file_name": f"{item.id}.png", "id": item.id, "suite": item.suite, "split": item.split,
                   "category": item.category, "prompt": item.prompt, "canonical": item.canonical,
                   "reasoning": item.reasoning, "group": item.group, "source_file_name": source,
                   "target": json.dumps(item.target.to_dict() if item.target else None),
                   "scene": json.dumps(item.scene.to_dict())}
            f.write(json.dumps(row) + "\n")
    return folder
