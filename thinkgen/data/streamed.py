"""Your captioned images as a stream (``dataset.streaming: true``): rows are read from the files as
training goes, never converted into an Arrow table first, for sets too large to prepare on disk.

The same layouts as :class:`~thinkgen.data.CaptionedImages` (a folder with ``metadata.jsonl``, a
``.jsonl`` or ``.parquet`` file), read by ``datasets``' streaming loader. The stream is shuffled
through a buffer of ``shuffle_buffer`` rows (``IterableDataset.shuffle``; a new order every pass),
each row is checked as it arrives (a caption and a readable image header of bounded size, or one
error line naming the file and row) and queued in its aspect-ratio bucket; the first bucket whose
queue holds ``batch_size`` rows makes the next global batch. Plain images and edits queue apart.

Every process reads the whole stream of rows (captions and image headers, not pixels) and takes its
share of each global batch, so the batches do not depend on the number of processes. Step ``s``'s
batch is the ``s``-th the stream makes: a resumed run reads the stream again up to there, which
costs time (headers only) but no memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from .images import (
    IMAGE_COLUMNS,
    DataError,
    _Probe,
    locate_table,
    nearest_bucket,
    row_image,
    row_references,
)


@dataclass(frozen=True)
class StreamRow:
    """One row of the stream: its place in the file (for messages) and its fields."""

    index: int
    fields: dict[str, Any]


class StreamedImages:
    """``batches(step)`` -> ``((height, width), rows)``; ``caption``, ``image``, ``references`` and
    ``where`` of a :class:`StreamRow`, as :class:`~thinkgen.data.CaptionedImages` gives them of an index."""

    def __init__(self, path: str | Path, sizes: list[tuple[int, int]], batch_size: int, seed: int,
                 caption_column: str = "caption", max_pixels: int = 64_000_000, shuffle_buffer: int = 10_000) -> None:
        self.table, self.base, self.builder = locate_table(path, caption_column)
        self.name = str(self.table)
        self.sizes, self.batch_size, self.seed, self.shuffle_buffer = sizes, batch_size, seed, shuffle_buffer
        self.caption_column, self.max_pixels = caption_column, max_pixels
        self.probe = _Probe(self.name, str(self.base), caption_column, max_pixels)
        self._made: Iterator[tuple[tuple[int, int], list[StreamRow]]] | None = None
        self._next_step = 0
        self._rows(0)  # open the files now: an unreadable table is a config-time error

    def _rows(self, epoch: int) -> Iterator[StreamRow]:
        """One pass over the file, shuffled through the buffer (the order depends on the seed and the pass)."""
        import datasets

        try:
            stream = datasets.load_dataset(self.builder, data_files=str(self.table), split="train", streaming=True)
            stream = stream.map(lambda row, i: {"_index": i}, with_indices=True)
            if "image" in (stream.features or {}) and isinstance(stream.features["image"], datasets.Image):
                stream = stream.cast_column("image", datasets.Image(decode=False))
            stream = stream.shuffle(seed=self.seed, buffer_size=self.shuffle_buffer)
            stream.set_epoch(epoch)
        except Exception as error:  # datasets' own errors (bad JSON, a torn parquet file): one line
            raise DataError(f"{self.table}: cannot read: {' '.join(str(error).split())[:300]}") from None
        return (StreamRow(row.pop("_index"), row) for row in stream)

    def _batches(self) -> Iterator[tuple[tuple[int, int], list[StreamRow]]]:
        queues: dict[tuple[int, int], list[StreamRow]] = {}  # (bucket, source images) -> rows
        epoch = 0
        while True:
            seen = 0
            try:
                for row in self._rows(epoch):
                    seen += 1
                    probed = self.probe(row.fields, row.index)  # checks the row; its size and source images
                    key = (nearest_bucket(probed["_height"], probed["_width"], self.sizes), probed["_references"])
                    queue = queues.setdefault(key, [])
                    queue.append(row)
                    if len(queue) == self.batch_size:
                        yield self.sizes[key[0]], list(queue)
                        queue.clear()
            except DataError:
                raise
            except Exception as error:
                raise DataError(f"{self.table}: cannot read: {' '.join(str(error).split())[:300]}") from None
            if not seen:
                raise DataError(f"{self.table}: no rows")
            epoch += 1

    def batches(self, step: int) -> tuple[tuple[int, int], list[StreamRow]]:
        """The global batch of ``step``: the ``step``-th the stream makes (read again from the start
        when ``step`` is not the next one, as after a resume)."""
        if self._made is None or step != self._next_step:
            self._made, self._next_step = self._batches(), 0
            for _ in range(step):
                next(self._made)
                self._next_step += 1
        self._next_step += 1
        return next(self._made)

    # ------------------------------------------------------------------ a row's parts
    def where(self, row: StreamRow) -> str:
        return f"{self.name} row {row.index + 1}"

    def caption(self, row: StreamRow) -> str:
        return row.fields[self.caption_column]

    def image(self, row: StreamRow) -> Image.Image:
        return row_image(row.fields, IMAGE_COLUMNS, self.base, self.where(row), self.max_pixels)

    def references(self, row: StreamRow) -> list[Image.Image]:
        return row_references(row.fields, self.base, self.where(row), self.max_pixels)
