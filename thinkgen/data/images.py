"""Your captioned images, read through Hugging Face ``datasets``, in aspect-ratio buckets.

Three layouts, all local files:

* a folder with ``metadata.jsonl`` — the ``imagefolder`` convention: one JSON object per line
  with ``file_name`` (a path relative to the folder) and ``caption``; for editing,
  ``reference_file_name`` names the source image (or a list of them, for a model that edits from
  several) and the caption is the instruction;
* a ``.jsonl`` file with the same fields (``image`` may stand for ``file_name``), paths relative
  to the file;
* a ``.parquet`` file whose ``image`` column holds encoded bytes (``datasets``' Image feature, as
  ``Dataset.push_to_hub`` writes it) or paths.

``datasets`` memory-maps the table (Arrow on disk), so a million rows cost little memory; the
first pass reads every image's header (not its pixels) to check the row and note its size, and
``datasets`` caches that pass. Real photos have many shapes: each image goes to the bucket whose
aspect ratio is nearest its own (buckets hold about ``resolution``² pixels, sides multiples of the
pipeline's factor), a batch is drawn from one bucket, and images are resized and centre-cropped
to it by diffusers' ``VaeImageProcessor`` — the pipelines' own image processor.
"""

from __future__ import annotations

import io
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

# width / height of the buckets: square, the common photo shapes, and their portrait turns
ASPECT_RATIOS = (1 / 2, 9 / 16, 2 / 3, 3 / 4, 1.0, 4 / 3, 3 / 2, 16 / 9, 2.0)
IMAGE_COLUMNS = ("file_name", "image")
REFERENCE_COLUMNS = ("reference_file_name", "reference")


class DataError(ValueError):
    """A dataset that cannot be used, in one line naming the file and the row."""


def bucket_sizes(resolution: int, multiple: int, buckets: bool = True) -> list[tuple[int, int]]:
    """``(height, width)`` of each bucket: about ``resolution``² pixels, sides multiples of ``multiple``."""
    sizes = []
    for ratio in ASPECT_RATIOS if buckets else (1.0,):
        height = max(multiple, round(resolution / math.sqrt(ratio) / multiple) * multiple)
        width = max(multiple, round(resolution * math.sqrt(ratio) / multiple) * multiple)
        if (height, width) not in sizes:
            sizes.append((height, width))
    return sizes


def nearest_bucket(height: int, width: int, sizes: list[tuple[int, int]]) -> int:
    """The bucket whose aspect ratio is nearest the image's (on a log scale, so 1:2 and 2:1 are as far from 1:1)."""
    ratio = math.log(width / height)
    return min(range(len(sizes)), key=lambda i: abs(math.log(sizes[i][1] / sizes[i][0]) - ratio))


def _first(row: dict[str, Any], columns: tuple[str, ...]) -> Any:
    return next((row[c] for c in columns if row.get(c) is not None), None)


def reference_values(row: dict[str, Any]) -> list[Any]:
    """A row's source images (paths or encoded images), in order: none, one, or a list."""
    value = _first(row, REFERENCE_COLUMNS)
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


class _Probe:
    """The first pass over the rows (``datasets.map``): every row has a caption and a readable image
    of bounded size; its height and width are noted. A class, so that ``datasets`` can fingerprint it."""

    def __init__(self, name: str, base: str, caption: str, max_pixels: int) -> None:
        self.name, self.base, self.caption, self.max_pixels = name, base, caption, max_pixels

    def __call__(self, row: dict[str, Any], index: int) -> dict[str, Any]:
        where = f"{self.name} row {index + 1}"
        caption = row.get(self.caption)
        if not isinstance(caption, str) or not caption.strip():
            raise DataError(f"{where}: no {self.caption!r} (a non-empty text)")
        image = open_image(_first(row, IMAGE_COLUMNS), Path(self.base), where, self.max_pixels)
        references = reference_values(row)
        if _first(row, REFERENCE_COLUMNS) is not None and not references:
            raise DataError(f"{where}: an empty list of reference images")
        for k, reference in enumerate(references):
            open_image(reference, Path(self.base), _reference_where(where, k, len(references)), self.max_pixels)
        return {"_height": image.height, "_width": image.width, "_references": len(references)}


def _reference_where(where: str, k: int, count: int) -> str:
    return f"{where} (reference)" if count == 1 else f"{where} (reference {k + 1})"


def open_image(value: Any, base: Path, where: str, max_pixels: int) -> Image.Image:
    """A row's image (a path relative to ``base``, encoded bytes, or ``datasets``' ``{"bytes", "path"}``),
    opened lazily: only the header is read, and an image over ``max_pixels`` is refused before decoding."""
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if isinstance(value, bytes):
        source: Any = io.BytesIO(value)
    elif isinstance(value, str) and value:
        source = base / value
        if not source.is_file():
            raise DataError(f"{where}: image file not found: {source}")
    else:
        raise DataError(f"{where}: no image (a 'file_name' path or encoded bytes)")
    try:
        image = Image.open(source)
    except Image.DecompressionBombError:  # PIL's own guard, for sizes far above any sane limit
        raise DataError(f"{where}: image is over dataset.max_image_pixels ({max_pixels})") from None
    except OSError as error:
        raise DataError(f"{where}: unreadable image: {error}") from None
    if image.width * image.height > max_pixels:
        raise DataError(f"{where}: image of {image.width} x {image.height} px is over dataset.max_image_pixels "
                        f"({max_pixels})")
    return image


def _decoded(image: Image.Image, where: str) -> Image.Image:
    try:
        return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(f"{where}: unreadable image: {error}") from None


def locate_table(path: str | Path, caption_column: str) -> tuple[Path, Path, str]:
    """A dataset path -> (its table file, the folder image paths are relative to, the ``datasets``
    builder that reads it); a path that is none of the three layouts is one :class:`DataError`."""
    path = Path(path)
    if path.is_dir():
        table, base = path / "metadata.jsonl", path
        if not table.is_file():
            raise DataError(f"{path}: an image folder needs metadata.jsonl (file_name + {caption_column} per line)")
    elif path.is_file():
        table, base = path, path.parent
    else:
        raise DataError(f"dataset not found: {path}")
    builder = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}.get(table.suffix)
    if builder is None:
        raise DataError(f"{table}: a dataset is a folder with metadata.jsonl, a .jsonl or a .parquet file")
    return table, base, builder


def row_image(row: dict[str, Any], columns: tuple[str, ...], base: Path, where: str, max_pixels: int
              ) -> Image.Image | None:
    """The decoded image a row names in the first of ``columns`` it has (None if it has none)."""
    value = _first(row, columns)
    if value is None:
        return None
    return _decoded(open_image(value, base, where, max_pixels), where)


def row_references(row: dict[str, Any], base: Path, where: str, max_pixels: int) -> list[Image.Image]:
    """A row's source images, decoded, in order (empty for a plain captioned image)."""
    values = reference_values(row)
    return [_decoded(open_image(value, base, _reference_where(where, k, len(values)), max_pixels),
                     _reference_where(where, k, len(values))) for k, value in enumerate(values)]


class CaptionedImages:
    """The rows of a captioned-image dataset: ``caption(i)``, ``image(i)``, ``references(i)`` and the
    bucket each falls in. ``where(i)`` names the file and row for messages."""

    def __init__(self, path: str | Path, caption_column: str = "caption", max_pixels: int = 64_000_000) -> None:
        import datasets

        table, self.base, builder = locate_table(path, caption_column)
        self.name = str(table)
        datasets.disable_progress_bars()
        try:
            rows = datasets.load_dataset(builder, data_files=str(table), split="train")
        except Exception as error:  # datasets' own errors (bad JSON, a torn parquet file): one line
            raise DataError(f"{table}: cannot read: {' '.join(str(error).split())[:300]}") from None
        finally:
            datasets.enable_progress_bars()
        if len(rows) == 0:
            raise DataError(f"{table}: no rows")
        columns = set(rows.column_names)
        if not columns & set(IMAGE_COLUMNS):
            raise DataError(f"{table}: no image column (one of {IMAGE_COLUMNS})")
        if caption_column not in columns:
            raise DataError(f"{table}: no {caption_column!r} column (dataset.caption_column names it)")
        if "image" in columns and isinstance(rows.features["image"], datasets.Image):
            rows = rows.cast_column("image", datasets.Image(decode=False))  # bytes + path, decoded here
        self.caption_column, self.max_pixels = caption_column, max_pixels
        self.rows = rows.map(_Probe(self.name, str(self.base), caption_column, max_pixels), with_indices=True,
                             desc="checking images")

    def __len__(self) -> int:
        return len(self.rows)

    def where(self, index: int) -> str:
        return f"{self.name} row {index + 1}"

    def caption(self, index: int) -> str:
        return self.rows[index][self.caption_column]

    def image(self, index: int) -> Image.Image:
        return row_image(self.rows[index], IMAGE_COLUMNS, self.base, self.where(index), self.max_pixels)

    def references(self, index: int) -> list[Image.Image]:
        return row_references(self.rows[index], self.base, self.where(index), self.max_pixels)

    def sizes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Heights, widths and each row's number of source images (0: not an edit), from the first pass."""
        return (np.asarray(self.rows["_height"]), np.asarray(self.rows["_width"]),
                np.asarray(self.rows["_references"]))


class BucketBatches:
    """Which rows make each global batch: a pure function of ``(seed, step)``, so every process builds
    its own share and a resumed run (on any number of processes) draws the same examples.

    A step draws one bucket (with probability proportional to its rows; plain images and edits of
    each number of source images are separate buckets, since every sample of a batch carries as
    many reference images), then ``batch_size`` rows of it uniformly, with replacement."""

    def __init__(self, data: CaptionedImages, sizes: list[tuple[int, int]], seed: int) -> None:
        heights, widths, counts = data.sizes()
        self.sizes, self.seed = sizes, seed
        assigned = np.array([nearest_bucket(int(h), int(w), sizes) for h, w in zip(heights, widths, strict=True)])
        self.groups: list[tuple[int, int, np.ndarray]] = []  # (bucket, source images, rows)
        for bucket in range(len(sizes)):
            for count in sorted(set(counts.tolist())):
                rows = np.flatnonzero((assigned == bucket) & (counts == count))
                if len(rows):
                    self.groups.append((bucket, count, rows))

    def __call__(self, step: int, batch_size: int) -> tuple[tuple[int, int], list[int]]:
        rng = random.Random(f"images-{self.seed}-{step}")
        weights = [len(rows) for _, _, rows in self.groups]
        bucket, _, rows = rng.choices(self.groups, weights=weights)[0]
        return self.sizes[bucket], [int(rows[rng.randrange(len(rows))]) for _ in range(batch_size)]


def to_pixels(images: list[Image.Image], height: int, width: int, multiple: int) -> torch.Tensor:
    """Images resized and centre-cropped to ``height x width`` by diffusers' ``VaeImageProcessor``:
    ``(B, 3, H, W)`` in [-1, 1]."""
    from diffusers.image_processor import VaeImageProcessor

    processor = VaeImageProcessor(vae_scale_factor=multiple)
    return torch.cat([processor.preprocess(image, height=height, width=width, resize_mode="crop")
                      for image in images])
