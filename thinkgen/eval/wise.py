"""WISE (legacy protocol): prompt files, image naming, judges and the official WiScore.

Prompts are a JSON list of ``{Prompt, Explanation, Category, Subcategory, prompt_id}``; images
are named ``<prompt_id>.png``. A judge scores each image for consistency C, realism R and
aesthetic quality A, each 0-2; ``WiScore = (0.7 C + 0.2 R + 0.1 A) / 2``. The overall score
weights the six categories by prompt-id range: culture 1-400 (0.4), time 401-567 (0.167),
space 568-700 (0.133), biology 701-800, physics 801-900, chemistry 901-1000 (0.1 each).

Judges are pluggable: anything with ``judge(image_path, prompt, explanation) -> JudgeScores``.
Two are provided: a local vision-language model through transformers, and an OpenAI-compatible
chat endpoint the user configures. Neither runs in tests or without being asked to.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

CATEGORY_RANGES = [("culture", 1, 400), ("time", 401, 567), ("space", 568, 700), ("biology", 701, 800),
                   ("physics", 801, 900), ("chemistry", 901, 1000)]
CATEGORY_WEIGHTS = {"culture": 0.4, "time": 0.167, "space": 0.133, "biology": 0.1, "physics": 0.1,
                    "chemistry": 0.1}
FIELDS = ("Prompt", "Explanation", "Category", "Subcategory", "prompt_id")


class WiseFormatError(ValueError):
    """A WISE prompt or judgment file that cannot be read."""


@dataclass(frozen=True)
class WisePrompt:
    prompt_id: int
    prompt: str
    explanation: str
    category: str
    subcategory: str


@dataclass(frozen=True)
class JudgeScores:
    consistency: float
    realism: float
    aesthetic_quality: float

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not 0 <= value <= 2:
                raise ValueError(f"{name} must be in [0, 2], got {value}")

    @property
    def wiscore(self) -> float:
        return (0.7 * self.consistency + 0.2 * self.realism + 0.1 * self.aesthetic_quality) / 2


def read_prompts(path: str | Path) -> list[WisePrompt]:
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise WiseFormatError(f"{path}: not JSON ({error.msg})") from None
    except UnicodeDecodeError:
        raise WiseFormatError(f"{path}: not a text file") from None
    if not isinstance(data, list):
        raise WiseFormatError(f"{path}: expected a JSON list of prompts")
    prompts = []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise WiseFormatError(f"{path}: entry {i} is not an object")
        missing = [f for f in FIELDS if f not in entry]
        if missing:
            raise WiseFormatError(f"{path}: entry {i} lacks {missing}")
        prompt_id = entry["prompt_id"]
        if not isinstance(prompt_id, int) or isinstance(prompt_id, bool) or not 1 <= prompt_id <= 1000:
            raise WiseFormatError(f"{path}: entry {i}: prompt_id must be an integer from 1 to 1000, got {prompt_id!r}")
        if not isinstance(entry["Prompt"], str) or not entry["Prompt"].strip():
            raise WiseFormatError(f"{path}: entry {i} (prompt_id {prompt_id}) has an empty Prompt")
        prompts.append(WisePrompt(prompt_id, entry["Prompt"], entry["Explanation"],
                                  entry["Category"], entry["Subcategory"]))
    return prompts


def image_name(prompt: WisePrompt | int) -> str:
    return f"{prompt if isinstance(prompt, int) else prompt.prompt_id}.png"


def category_of(prompt_id: int) -> str:
    for name, low, high in CATEGORY_RANGES:
        if low <= prompt_id <= high:
            return name
    raise ValueError(f"WISE prompt ids run from 1 to 1000, got {prompt_id}")


def read_judgments(path: str | Path) -> dict[int, JudgeScores]:
    """JSONL lines ``{"prompt_id", "consistency", "realism", "aesthetic_quality"}``."""
    scores = {}
    try:
        text = Path(path).read_text()
    except UnicodeDecodeError:
        raise WiseFormatError(f"{path}: not a text file") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            scores[int(row["prompt_id"])] = JudgeScores(float(row["consistency"]), float(row["realism"]),
                                                        float(row["aesthetic_quality"]))
            category_of(int(row["prompt_id"]))
        except (json.JSONDecodeError, KeyError, ValueError, TypeError, AttributeError) as error:
            raise WiseFormatError(f"{path}:{number}: {error}") from None
    return scores


def overall(scores: dict[int, JudgeScores]) -> dict[str, Any]:
    """Per-category mean WiScore and the weighted overall (over the categories present)."""
    by_category: dict[str, list[float]] = {}
    for prompt_id, s in scores.items():
        by_category.setdefault(category_of(prompt_id), []).append(s.wiscore)
    means = {c: sum(v) / len(v) for c, v in by_category.items()}
    weight = sum(CATEGORY_WEIGHTS[c] for c in means)
    total = sum(CATEGORY_WEIGHTS[c] * m for c, m in means.items()) / weight if weight else 0.0
    return {"categories": means, "overall": total, "judged": len(scores)}


# ----------------------------------------------------------------------------- judges
JUDGE_INSTRUCTIONS = (
    "You judge a generated image against its prompt. The prompt needs world knowledge; the "
    "explanation says what a correct image shows.\nPrompt: {prompt}\nExplanation: {explanation}\n"
    "Give three integer scores from 0 to 2: consistency (does the image show what the explanation "
    "says), realism, aesthetic quality. Answer exactly in the form\n"
    "consistency: <0-2>\nrealism: <0-2>\naesthetic quality: <0-2>"
)


def parse_judge_reply(text: str) -> JudgeScores:
    """Read the three scores from a judge's reply."""
    values = []
    for name in ("consistency", "realism", r"aesthetic[ _]quality"):
        m = re.search(rf"{name}\W*([0-2](?:\.\d+)?)", text, flags=re.IGNORECASE)
        if not m:
            raise ValueError(f"the judge's reply has no {name.replace(chr(92), '')} score: {text[:200]!r}")
        values.append(float(m.group(1)))
    return JudgeScores(*values)


class Judge(Protocol):
    def __call__(self, image_path: str | Path, prompt: str, explanation: str) -> JudgeScores: ...


class OpenAICompatibleJudge:
    """A chat-completions endpoint (``{base_url}/chat/completions``) with an image input."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 120) -> None:
        self.base_url, self.model, self.api_key, self.timeout = base_url.rstrip("/"), model, api_key, timeout

    def request(self, image_path: str | Path, prompt: str, explanation: str) -> dict:
        """The request body (separate so it can be checked without a network)."""
        encoded = base64.b64encode(Path(image_path).read_bytes()).decode()
        content = [{"type": "text", "text": JUDGE_INSTRUCTIONS.format(prompt=prompt, explanation=explanation)},
                   {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{encoded}"}}]
        return {"model": self.model, "messages": [{"role": "user", "content": content}], "temperature": 0}

    def __call__(self, image_path: str | Path, prompt: str, explanation: str) -> JudgeScores:
        body = json.dumps(self.request(image_path, prompt, explanation)).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(f"{self.base_url}/chat/completions", body, headers)
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            reply = json.loads(response.read())
        return parse_judge_reply(reply["choices"][0]["message"]["content"])


class TransformersJudge:
    """A local vision-language model (``AutoModelForImageTextToText`` + its processor)."""

    def __init__(self, model, processor, max_new_tokens: int = 64) -> None:
        self.model, self.processor, self.max_new_tokens = model, processor, max_new_tokens

    def __call__(self, image_path: str | Path, prompt: str, explanation: str) -> JudgeScores:
        from PIL import Image

        messages = [{"role": "user", "content": [
            {"type": "image"}, {"type": "text", "text": JUDGE_INSTRUCTIONS.format(prompt=prompt, explanation=explanation)}]}]
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = self.processor(text=[text], images=[Image.open(image_path).convert("RGB")], return_tensors="pt")
        inputs = inputs.to(self.model.device)
        output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        reply = self.processor.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0]
        return parse_judge_reply(reply)


def judge_folder(judge: Judge, prompts: list[WisePrompt], image_dir: str | Path, out: str | Path) -> dict:
    """Judge every ``<prompt_id>.png`` in a folder, write the JSONL of scores, return :func:`overall`."""
    scores = {}
    with open(out, "w") as f:
        for p in prompts:
            path = Path(image_dir) / image_name(p)
            if not path.exists():
                continue
            s = judge(path, p.prompt, p.explanation)
            scores[p.prompt_id] = s
            f.write(json.dumps({"prompt_id": p.prompt_id, **asdict(s)}) + "\n")
    return overall(scores)
