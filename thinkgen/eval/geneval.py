"""GenEval's real prompt file and its official output layout.

``evaluation_metadata.jsonl`` has one JSON object per line: ``tag``, ``include`` (``class``,
``count``, optional ``color`` and ``position``), optional ``exclude``, and ``prompt``. The
official evaluator expects::

    <outdir>/<00000>/metadata.jsonl      that prompt's line, unchanged
    <outdir>/<00000>/samples/0000.png    one image per sample (4 by default)

and scores it with its own detector; thinkgen only writes the layout.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from ..validate import DATA_BYTES, FileTooLarge, read_text

# GenEval's prompt file (553 prompts, MIT licence), shipped unmodified with its LICENCE and SOURCE.md
DEFAULT_METADATA = Path(__file__).resolve().parent.parent / "assets" / "geneval" / "evaluation_metadata.jsonl"

TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")


class MetadataError(ValueError):
    """A GenEval metadata file that cannot be read."""


def read_metadata(path: str | Path = DEFAULT_METADATA) -> list[dict]:
    """Parse and validate ``evaluation_metadata.jsonl`` (blank lines are skipped)."""
    entries = []
    try:
        lines = read_text(path, DATA_BYTES, "metadata file").splitlines()
    except UnicodeDecodeError:
        raise MetadataError(f"{path}: not a text file") from None
    except FileTooLarge as error:
        raise MetadataError(str(error)) from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            raise MetadataError(f"{path}:{number}: not JSON ({error.msg})") from None
        if not isinstance(entry, dict):
            raise MetadataError(f"{path}:{number}: expected one JSON object per line")
        missing = {"tag", "include", "prompt"} - set(entry)
        if missing:
            raise MetadataError(f"{path}:{number}: missing {sorted(missing)}")
        if entry["tag"] not in TAGS:
            raise MetadataError(f"{path}:{number}: unknown tag {entry['tag']!r}")
        if not isinstance(entry["prompt"], str) or not entry["prompt"].strip():
            raise MetadataError(f"{path}:{number}: the prompt is empty")
        if not isinstance(entry["include"], list):
            raise MetadataError(f"{path}:{number}: include must be a list")
        entries.append(entry)
    return entries


def write_layout(outdir: str | Path, index: int, entry: dict, images: list[Image.Image]) -> Path:
    """Write one prompt's folder in GenEval's layout; returns the folder."""
    folder = Path(outdir) / f"{index:05d}"
    (folder / "samples").mkdir(parents=True, exist_ok=True)
    with open(folder / "metadata.jsonl", "w") as f:
        f.write(json.dumps(entry) + "\n")
    for k, image in enumerate(images):
        image.save(folder / "samples" / f"{k:04d}.png")
    return folder


def generate(generate_images: Callable[[list[str], int], list[list[Image.Image]]], metadata: list[dict],
             outdir: str | Path, n_samples: int = 4, batch_size: int = 8, progress: bool = True) -> int:
    """Draw ``n_samples`` images per prompt with ``generate_images(prompts, first_index)`` (a list of
    image lists) and write GenEval's layout. Returns the number of prompts written."""
    bar = tqdm(total=len(metadata), desc="geneval", disable=not progress)
    for start in range(0, len(metadata), batch_size):
        batch = metadata[start : start + batch_size]
        images = generate_images([entry["prompt"] for entry in batch], start)
        for offset, (entry, samples) in enumerate(zip(batch, images, strict=True)):
            if len(samples) != n_samples:
                raise ValueError(f"expected {n_samples} images for {entry['prompt']!r}, got {len(samples)}")
            write_layout(outdir, start + offset, entry, samples)
        bar.update(len(batch))
    bar.close()
    return len(metadata)
