"""Chat-format supervised data for the thinker: TRL's conversational format, in a ``.jsonl`` file.

Each line holds ``messages``: a list of ``{"role": "system" | "user" | "assistant", "content": ...}``
where ``content`` is a text, or a list of parts ``{"type": "text", "text": ...}`` and
``{"type": "image"}`` (a vision-language thinker). The images of a row are given as TRL gives them:
a row-level ``images`` list of paths (relative to the file), in the order of the image parts; a
part may also name its own ``{"type": "image", "image": "path"}``. The loss is taken on the
assistant turns only, so a conversation teaches what the thinker should answer, not the questions.

Example (a reasoning rewrite for T2G's text encoder or ThinkGen's thinker)::

    {"messages": [{"role": "user", "content": "the fruit Newton saw fall, in red"},
                  {"role": "assistant", "content": "<think>Newton and the apple.</think>a red apple"}]}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from .images import DataError, open_image

ROLES = ("system", "user", "assistant")


def _check_message(message: Any, where: str) -> int:
    """A message's shape; returns how many image parts it has."""
    if not isinstance(message, dict) or message.get("role") not in ROLES:
        raise DataError(f"{where}: every message needs a role, one of {ROLES}")
    content = message.get("content")
    if isinstance(content, str):
        return 0
    if not isinstance(content, list) or not content:
        raise DataError(f"{where}: a message's content is a text or a list of parts")
    images = 0
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            continue
        if kind == "image":
            images += 1
            continue
        raise DataError(f"{where}: a content part is {{'type': 'text', 'text': ...}} or {{'type': 'image'}}")
    return images


class ChatRows:
    """The conversations of a chat ``.jsonl`` file, read through Hugging Face ``datasets``:
    ``messages(i)``, ``images(i)`` (PIL images, in order) and ``where(i)`` for messages."""

    def __init__(self, path: str | Path, max_pixels: int = 64_000_000) -> None:
        import datasets

        path = Path(path)
        if not path.is_file() or path.suffix not in (".jsonl", ".json"):
            raise DataError(f"{path}: a chat dataset is a .jsonl file of {{'messages': [...]}} rows")
        self.name, self.base, self.max_pixels = str(path), path.parent, max_pixels
        datasets.disable_progress_bars()
        try:
            self.rows = datasets.load_dataset("json", data_files=str(path), split="train")
        except Exception as error:  # datasets' own errors (bad JSON, mixed types): one line
            raise DataError(f"{path}: cannot read: {' '.join(str(error).split())[:300]}") from None
        finally:
            datasets.enable_progress_bars()
        if len(self.rows) == 0 or "messages" not in self.rows.column_names:
            raise DataError(f"{path}: no rows with 'messages'")
        for index in range(len(self.rows)):  # shapes only; images are opened when a row is drawn
            self._check(index)

    def __len__(self) -> int:
        return len(self.rows)

    def where(self, index: int) -> str:
        return f"{self.name} row {index + 1}"

    def _check(self, index: int) -> None:
        row, where = self.rows[index], self.where(index)
        messages = row["messages"]
        if not isinstance(messages, list) or not messages:
            raise DataError(f"{where}: 'messages' must be a non-empty list")
        parts = sum(_check_message(m, where) for m in messages)
        if not any(m["role"] == "assistant" for m in messages):
            raise DataError(f"{where}: no assistant turn to learn")
        listed = row.get("images") or []
        named = [p.get("image") for m in messages if isinstance(m["content"], list)
                 for p in m["content"] if p.get("type") == "image" and p.get("image")]
        if parts and len(listed) + len(named) != parts:
            raise DataError(f"{where}: {parts} image part(s) but {len(listed) + len(named)} image(s) given")

    def messages(self, index: int) -> list[dict[str, Any]]:
        """The conversation, image parts stripped to ``{"type": "image"}`` (as chat templates want)."""
        out = []
        for m in self.rows[index]["messages"]:
            content = m["content"]
            if isinstance(content, list):
                content = [{"type": "image"} if p["type"] == "image" else {"type": "text", "text": p["text"]}
                           for p in content]
            out.append({"role": m["role"], "content": content})
        return out

    def images(self, index: int) -> list[Image.Image]:
        row, where = self.rows[index], self.where(index)
        paths = list(row.get("images") or [])
        for m in row["messages"]:
            if isinstance(m["content"], list):
                paths += [p["image"] for p in m["content"] if p.get("type") == "image" and p.get("image")]
        return [open_image(p, self.base, where, self.max_pixels).convert("RGB") for p in paths]
