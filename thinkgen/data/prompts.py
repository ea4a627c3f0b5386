"""Prompts for the RL stages: a ``.txt`` file (one prompt per line) or a ``.jsonl`` file whose rows
hold ``prompt`` and any other fields a reward reads (a reference answer for a judge, a label...),
read through Hugging Face ``datasets``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..validate import DATA_BYTES, read_text
from .images import DataError


@dataclass(frozen=True)
class PromptRow:
    """One prompt and its other fields (what a reward function receives as an item)."""

    prompt: str
    fields: dict[str, Any] = field(default_factory=dict)
    where: str = ""


class PromptRows:
    def __init__(self, path: str | Path) -> None:
        import datasets

        path = Path(path)
        if not path.is_file():
            raise DataError(f"prompt file not found: {path}")
        if path.suffix == ".txt":
            try:
                lines = read_text(path, DATA_BYTES, "prompt file").splitlines()
            except (OSError, UnicodeDecodeError, ValueError) as error:  # FileTooLarge too
                raise DataError(f"{path}: cannot read: {error}") from None
            self.rows = [PromptRow(line.strip(), {}, f"{path} line {n}") for n, line in enumerate(lines, 1)
                         if line.strip()]
        elif path.suffix in (".jsonl", ".json"):
            datasets.disable_progress_bars()
            try:
                table = datasets.load_dataset("json", data_files=str(path), split="train")
            except Exception as error:  # datasets' own errors: one line
                raise DataError(f"{path}: cannot read: {' '.join(str(error).split())[:300]}") from None
            finally:
                datasets.enable_progress_bars()
            self.rows = []
            for index, row in enumerate(table):
                where = f"{path} row {index + 1}"
                prompt = row.get("prompt")
                if not isinstance(prompt, str) or not prompt.strip():
                    raise DataError(f"{where}: no 'prompt' (a non-empty text)")
                self.rows.append(PromptRow(prompt, {k: v for k, v in row.items() if k != "prompt"}, where))
        else:
            raise DataError(f"{path}: a prompt file is .txt (one per line) or .jsonl (a 'prompt' per row)")
        if not self.rows:
            raise DataError(f"{path}: no prompts")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> PromptRow:
        return self.rows[index]
