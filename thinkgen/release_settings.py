"""The releases' own prompts, read from your copy of their code: ``thinkgen release-settings MODEL
--from-code CODE``.

Both releases keep texts in their Python code that their weights folders do not carry: ThinkGen's
system prompt (the ``SYSPROMPT`` its pipeline sets) and default negative prompt (the default of
``negative_prompt`` in its chat wrapper), T2G's instruction before the user's prompt (the
``SYSTEM_PROMPT`` of its ``inference.py``). thinkgen does not ship them (they are the releases'
prose); this reads them from a clone of the release's repository — by parsing, never by running it
— and records them in the model folder's ``model_index.json`` (under ``_thinkgen``, which diffusers
ignores), with the file and line each came from. From then on loading the folder applies them, so
it draws what the release's own scripts draw.
"""

from __future__ import annotations

import ast
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .loading import FOREIGN, MODEL_INDEX, layout_of, read_index
from .validate import read_text

# what each layout's conditioning calls the text, and the name the release's code gives it
SYSTEM_TEXT = {"thinkgen-release": ("system_prompt", "SYSPROMPT"), "qwen-image": ("instruction", "SYSTEM_PROMPT")}
MAX_FILE_BYTES = 5_000_000


@dataclass
class Found:
    settings: dict[str, str] = field(default_factory=dict)  # conditioning settings
    defaults: dict[str, str] = field(default_factory=dict)  # pipeline defaults (negative_prompt)
    sources: dict[str, str] = field(default_factory=dict)  # what -> "file:line"


def _text(node: ast.AST) -> str | None:
    """A string literal (implicit concatenation and parentheses included), or None."""
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, str) else None


def read_release_code(conditioning: str, code: Path) -> Found:
    """The texts of ``conditioning``'s release found in the ``.py`` files under ``code``."""
    if conditioning not in SYSTEM_TEXT:
        raise ValueError(f"{conditioning!r} is not a release's conditioning; known: {sorted(SYSTEM_TEXT)}")
    setting, name = SYSTEM_TEXT[conditioning]
    found = Found()
    files = sorted(code.rglob("*.py")) if code.is_dir() else [code]
    for path in files:
        if path.stat().st_size > MAX_FILE_BYTES:
            continue
        try:
            tree = ast.parse(read_text(path, MAX_FILE_BYTES), filename=str(path))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        where = path.relative_to(code) if code.is_dir() else path.name
        for node in ast.walk(tree):
            # NAME = "..." (a module or class constant) or self.NAME = "..." (set in __init__)
            if isinstance(node, ast.Assign) and any((isinstance(t, ast.Name) and t.id == name)
                                                    or (isinstance(t, ast.Attribute) and t.attr == name)
                                                    for t in node.targets):
                text = _text(node.value)
                if text is not None and setting not in found.settings:
                    found.settings[setting] = text
                    found.sources[setting] = f"{where}:{node.lineno}"
            # ThinkGen's chat wrapper: kwargs.get("negative_prompt", "<the default>")
            if (conditioning == "thinkgen-release" and isinstance(node, ast.Call) and len(node.args) == 2
                    and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                    and _text(node.args[0]) == "negative_prompt"):
                text = _text(node.args[1])
                if text is not None and "negative_prompt" not in found.defaults:
                    found.defaults["negative_prompt"] = text
                    found.sources["negative_prompt"] = f"{where}:{node.lineno}"
    if setting not in found.settings:
        raise ValueError(f"no {name} string found in the .py files of {code}: is it the release's repository?")
    return found


def adopt(model: Path, code: Path) -> Found:
    """Record the release's texts from ``code`` in ``model``'s model_index.json (written aside, then
    renamed); the weights are not touched."""
    index = read_index(model)
    layout = FOREIGN.get(layout_of(index))
    if layout is None:
        raise ValueError(f"{model} is not a release's folder (a T2G / QwenImagePipeline or ThinkGen folder)")
    found = read_release_code(layout.conditioning, code)
    own: dict[str, Any] = dict(index.get("_thinkgen") or {})
    conditioning = dict(own.get("conditioning") or {"name": layout.conditioning})
    conditioning["settings"] = {**(conditioning.get("settings") or {}), **found.settings}
    own["conditioning"] = conditioning
    own["defaults"] = {**(own.get("defaults") or {}), **found.defaults}
    own["release_settings_from"] = found.sources
    index["_thinkgen"] = own
    temporary = model / f".{MODEL_INDEX}.tmp"
    temporary.write_text(json.dumps(index, indent=2) + "\n")
    os.replace(temporary, model / MODEL_INDEX)
    return found
