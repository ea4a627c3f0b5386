"""WISE: prompt files, image naming, judges and the official WiScore, in both official protocols.

Prompts are a JSON list of ``{Prompt, Explanation, Category, Subcategory, prompt_id}``; images
are named ``<prompt_id>.png``. WISE has two scoring protocols (PKU-YuanGroup/WISE), each a
:class:`WiseProtocol`:

- ``legacy`` (``WISE_legacy/``): the judge gives consistency C, realism R and aesthetic quality A,
  each 0-2; ``WiScore = (0.7 C + 0.2 R + 0.1 A) / 2``. Categories by prompt id: culture 1-400
  (weight 0.4), time 401-567 (0.167), space 568-700 (0.133), biology 701-800, physics 801-900,
  chemistry 901-1000 (0.1 each).
- ``verified`` (WISE_Verified, the official default since 2026-04-19): the judge gives one binary
  ``score`` (1 = right and usable). Culture 1-400 (0.4), time 401-520, space 521-640, biology
  641-760, physics 761-880, chemistry 881-1000 (0.12 each).

Judgment files are the official judges' score files (JSONL, one ``{"prompt_id", "Subcategory",
<the protocol's fields>}`` per line; the judges write one per category file); thinkgen's judge
writes the same format. The overall score needs all 1,000 ids, as the official scripts do.

Judges are pluggable: anything with ``judge(image_path, prompt, explanation) -> dict`` of the
protocol's fields. Two are provided: an OpenAI-compatible chat endpoint and a local
vision-language model through transformers. The rubric they send is thinkgen's own unless the
user supplies the official text (``--rubric``); scores are comparable with published ones only then.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..validate import DATA_BYTES, FileTooLarge, read_text

FIELDS = ("Prompt", "Explanation", "Category", "Subcategory", "prompt_id")
# The ``Category`` strings of the official prompt files, by thinkgen's category names.
CATEGORY_NAMES = {"cultural knowledge": "culture", "time": "time", "space": "space", "biology": "biology",
                  "physical knowledge": "physics", "chemistry": "chemistry"}
RUBRIC_LIMIT = 100_000  # characters; the official rubrics are about 4,000


class WiseFormatError(ValueError):
    """A WISE prompt, judgment or rubric file that cannot be read."""


class WiseIncompleteError(ValueError):
    """Judgments that do not cover every prompt id the overall score needs."""


@dataclass(frozen=True)
class WisePrompt:
    prompt_id: int
    prompt: str
    explanation: str
    category: str
    subcategory: str


# ----------------------------------------------------------------------------- judge replies
# Both parsers accept exactly the reply formats the official judges accept (same patterns, same
# choice among several matches), and then refuse a score outside the protocol's range.
_LEGACY_LABELLED = re.compile(r"\*{0,2}(Consistency|Realism|Aesthetic Quality)\*{0,2}\s*[:]?\s*(\d)", re.IGNORECASE)
_LEGACY_BARE = re.compile(r"(?m)^\s*([0-2])\s*$")
_VERIFIED_LABELLED = re.compile(r"\*{0,2}Score\*{0,2}\s*[:]?\s*([01])\b", re.IGNORECASE)
_VERIFIED_BARE = re.compile(r"(?m)^\s*([01])\s*$")
_THINK = re.compile(r"<think>.*?</think>\s*", re.DOTALL)


def parse_legacy_reply(text: str) -> dict[str, float]:
    """``Consistency: 2`` style labels (optionally bold, any case; the last of repeats wins), else
    the first three lines that hold only a digit 0-2 (``"2\\n1\\n0"``)."""
    found = {label.lower().replace(" ", "_"): float(digit) for label, digit in _LEGACY_LABELLED.findall(text)}
    if not found:
        bare = _LEGACY_BARE.findall(text)
        if len(bare) >= 3:
            found = dict(zip(LEGACY.fields, map(float, bare[:3]), strict=False))
    missing = [name for name in LEGACY.fields if name not in found]
    if missing:
        raise ValueError(f"the judge's reply has no {', '.join(missing)} score: {text[:200]!r}")
    return LEGACY.check(found)


def parse_verified_reply(text: str) -> dict[str, float]:
    """``Score: 1`` (optionally bold, any case; the first one counts), else a reply with exactly one
    line that holds only 0 or 1. Thinking (``<think>…</think>``) is removed first."""
    text = _THINK.sub("", text).replace("</think>", "").strip()
    labelled = _VERIFIED_LABELLED.search(text)
    if labelled:
        return {"score": float(labelled.group(1))}
    bare = _VERIFIED_BARE.findall(text)
    if len(bare) == 1:
        return {"score": float(bare[0])}
    raise ValueError(f"the judge's reply has no binary score: {text[:200]!r}")


# ----------------------------------------------------------------------------- protocols
@dataclass(frozen=True)
class WiseProtocol:
    """How one WISE protocol groups prompt ids, what its judge returns and how that is scored."""

    name: str
    ranges: tuple[tuple[str, int, int], ...]  # (category, first id, last id)
    weights: dict[str, float]
    fields: tuple[str, ...]  # what the judge returns, as in the official score files
    wiscore: Callable[[dict[str, float]], float]
    parse_reply: Callable[[str], dict[str, float]] = field(repr=False)
    valid: Callable[[float], bool] = field(repr=False)
    max_tokens: int = 2000  # the official judge's reply budget
    rubric: str = field(default="", repr=False)  # thinkgen's own instruction, used without --rubric

    def category_of(self, prompt_id: int) -> str:
        for name, low, high in self.ranges:
            if low <= prompt_id <= high:
                return name
        raise ValueError(f"WISE prompt ids run from 1 to 1000, got {prompt_id}")

    def check(self, values: dict[str, float]) -> dict[str, float]:
        for name in self.fields:
            if not self.valid(values[name]):
                raise ValueError(f"{name} = {values[name]:g} is outside the {self.name} protocol's range")
        return {name: values[name] for name in self.fields}


LEGACY = WiseProtocol(
    name="legacy",
    ranges=(("culture", 1, 400), ("time", 401, 567), ("space", 568, 700), ("biology", 701, 800),
            ("physics", 801, 900), ("chemistry", 901, 1000)),
    weights={"culture": 0.4, "time": 0.167, "space": 0.133, "biology": 0.1, "physics": 0.1, "chemistry": 0.1},
    fields=("consistency", "realism", "aesthetic_quality"),
    wiscore=lambda s: (0.7 * s["consistency"] + 0.2 * s["realism"] + 0.1 * s["aesthetic_quality"]) / 2,
    parse_reply=parse_legacy_reply,
    valid=lambda v: 0 <= v <= 2,
    rubric=("You judge a generated image against its prompt. The prompt needs world knowledge; the "
            "explanation says what a correct image shows.\nPrompt: {Prompt}\nExplanation: {Explanation}\n"
            "Give three integer scores from 0 to 2: consistency (does the image show what the explanation "
            "says), realism, aesthetic quality. Answer exactly in the form\n"
            "Consistency: <0-2>\nRealism: <0-2>\nAesthetic Quality: <0-2>"),
)
VERIFIED = WiseProtocol(
    name="verified",
    ranges=(("culture", 1, 400), ("time", 401, 520), ("space", 521, 640), ("biology", 641, 760),
            ("physics", 761, 880), ("chemistry", 881, 1000)),
    weights={"culture": 0.4, "time": 0.12, "space": 0.12, "biology": 0.12, "physics": 0.12, "chemistry": 0.12},
    fields=("score",),
    wiscore=lambda s: s["score"],
    parse_reply=parse_verified_reply,
    valid=lambda v: v in (0, 1),
    max_tokens=500,
    rubric=("You judge a generated image against its prompt. The prompt needs world knowledge; the "
            "explanation says what a correct image shows.\nPrompt: {Prompt}\nExplanation: {Explanation}\n"
            "Answer 1 if the image shows what the explanation says and is visually usable, else 0. "
            "Answer exactly in the form\nScore: <0 or 1>"),
)
PROTOCOLS = {p.name: p for p in (LEGACY, VERIFIED)}
ALL_IDS = range(1, 1001)


# ----------------------------------------------------------------------------- prompt files
def read_prompts(path: str | Path) -> list[WisePrompt]:
    try:
        data = json.loads(read_text(path, DATA_BYTES, "prompt file"))
    except FileTooLarge as error:
        raise WiseFormatError(str(error)) from None
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


def protocols_matching(prompts: Iterable[WisePrompt]) -> list[WiseProtocol]:
    """The protocols whose id ranges agree with every prompt's official ``Category`` (prompts with
    another category string say nothing). Culture-only files match both."""
    known = [(p.prompt_id, CATEGORY_NAMES[p.category.lower()]) for p in prompts
             if isinstance(p.category, str) and p.category.lower() in CATEGORY_NAMES]
    return [protocol for protocol in PROTOCOLS.values()
            if all(protocol.category_of(prompt_id) == category for prompt_id, category in known)]


def choose_protocol(candidates: list[WiseProtocol], requested: str | None, what: str) -> WiseProtocol:
    """The requested protocol if the files allow it, else the only one they allow."""
    names = [p.name for p in candidates]
    if requested is not None:
        if requested not in names:
            raise WiseFormatError(f"{what} are not in the {requested} protocol's format (they match: "
                                  f"{', '.join(names) or 'neither protocol'})")
        return PROTOCOLS[requested]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise WiseFormatError(f"{what} match neither WISE protocol")
    raise WiseFormatError(f"{what} fit both protocols ({', '.join(names)}): say which with --protocol")


# ----------------------------------------------------------------------------- judgment files
@dataclass
class Judgments:
    """Judge scores by prompt id, read from one or more files, and the protocol they are in."""

    protocol: WiseProtocol
    scores: dict[int, dict[str, float]]
    files: list[Path]


def judgment_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; a folder stands for the ``*.jsonl`` files directly inside it."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(path.glob("*.jsonl"))
            if not found:
                raise WiseFormatError(f"{path}: a folder with no .jsonl judgment files")
            files += found
        elif path.exists():
            files.append(path)
        else:
            raise WiseFormatError(f"{path}: no such file or folder")
    if len(set(f.resolve() for f in files)) != len(files):
        raise WiseFormatError("the same judgment file is given twice")
    return files


def _row_protocol(row: dict) -> str:
    legacy = all(name in row for name in LEGACY.fields)
    verified = "score" in row
    if legacy == verified:
        raise ValueError("a judgment needs either a binary 'score' (verified) or consistency, realism and "
                         "aesthetic_quality (legacy)" + (", not both" if legacy else ""))
    return "legacy" if legacy else "verified"


def read_judgments(paths: str | Path | Iterable[str | Path], protocol: str | None = None) -> Judgments:
    """Read official-format judgment files (or folders of them); detect the protocol from the fields."""
    files = judgment_files([paths] if isinstance(paths, str | Path) else paths)
    rows: dict[int, tuple[dict, str]] = {}
    kinds: dict[str, str] = {}  # protocol -> first place it was seen
    for path in files:
        try:
            text = read_text(path, DATA_BYTES, "judgment file")
        except UnicodeDecodeError:
            raise WiseFormatError(f"{path}: not a text file") from None
        except FileTooLarge as error:
            raise WiseFormatError(str(error)) from None
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            place = f"{path}:{number}"
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError("a judgment is a JSON object")
                prompt_id = row.get("prompt_id")
                if not isinstance(prompt_id, int) or isinstance(prompt_id, bool) or prompt_id not in ALL_IDS:
                    raise ValueError(f"prompt_id must be an integer from 1 to 1000, got {prompt_id!r}")
                kind = _row_protocol(row)
                values = {name: row[name] for name in PROTOCOLS[kind].fields}
                for name, value in values.items():
                    if not isinstance(value, int | float) or isinstance(value, bool):
                        raise ValueError(f"{name} must be a number, got {value!r}")
                values = PROTOCOLS[kind].check({k: float(v) for k, v in values.items()})
            except json.JSONDecodeError as error:
                raise WiseFormatError(f"{place}: not JSON ({error.msg})") from None
            except ValueError as error:
                raise WiseFormatError(f"{place}: {error}") from None
            if prompt_id in rows:
                raise WiseFormatError(f"{place}: prompt_id {prompt_id} is judged twice (also at {rows[prompt_id][1]})")
            rows[prompt_id] = (values, place)
            kinds.setdefault(kind, place)
    if len(kinds) > 1:
        raise WiseFormatError(f"the files mix protocols: legacy at {kinds['legacy']}, verified at {kinds['verified']}")
    if not rows:
        raise WiseFormatError(f"no judgments in {', '.join(map(str, files))}")
    chosen = choose_protocol([PROTOCOLS[next(iter(kinds))]], protocol, "the judgments")
    return Judgments(chosen, {prompt_id: values for prompt_id, (values, _) in rows.items()}, files)


def id_ranges(ids: Iterable[int]) -> str:
    """``1-3, 7, 9-12``: a readable list of prompt ids."""
    spans: list[list[int]] = []
    for i in sorted(ids):
        if spans and i == spans[-1][1] + 1:
            spans[-1][1] = i
        else:
            spans.append([i, i])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def overall(judgments: Judgments, allow_partial: bool = False) -> dict[str, Any]:
    """Per-category mean WiScore and the weighted overall, as the official scripts compute them.

    Every id from 1 to 1000 must be judged (the official scripts refuse otherwise, listing the
    missing ids). With ``allow_partial`` the overall is re-weighted over the categories present and
    the result says how much is covered (``complete`` is then False)."""
    protocol, scores = judgments.protocol, judgments.scores
    missing = sorted(set(ALL_IDS) - set(scores))
    if missing and not allow_partial:
        raise WiseIncompleteError(f"{len(missing)} of 1000 prompt ids have no judgment: {id_ranges(missing)} "
                                  f"(--allow-partial scores what is there)")
    by_category: dict[str, list[float]] = {}
    for prompt_id, values in sorted(scores.items()):
        by_category.setdefault(protocol.category_of(prompt_id), []).append(protocol.wiscore(values))
    means = {c: sum(v) / len(v) for c, v in by_category.items()}
    weight = sum(protocol.weights[c] for c in means)
    total = sum(protocol.weights[c] * m for c, m in means.items()) / weight
    expected = {name: high - low + 1 for name, low, high in protocol.ranges}
    return {"protocol": protocol.name, "categories": means, "overall": total, "judged": len(scores),
            "complete": not missing, "missing": missing,
            "coverage": {c: (len(by_category.get(c, [])), n) for c, n in expected.items()}}


# ----------------------------------------------------------------------------- judges
def read_rubric(path: str | Path) -> str:
    """A user-supplied rubric: text with ``{Prompt}`` and ``{Explanation}`` where the prompt's
    fields go (every other brace is left as written)."""
    try:
        text = read_text(path, 4 * RUBRIC_LIMIT, "rubric")
    except UnicodeDecodeError:
        raise WiseFormatError(f"{path}: not a text file") from None
    except FileTooLarge as error:
        raise WiseFormatError(str(error)) from None
    if len(text) > RUBRIC_LIMIT:
        raise WiseFormatError(f"{path}: {len(text):,} characters; a rubric is at most {RUBRIC_LIMIT:,}")
    lacking = [name for name in ("{Prompt}", "{Explanation}") if name not in text]
    if lacking:
        raise WiseFormatError(f"{path}: the rubric has no {' or '.join(lacking)} placeholder for the prompt's fields")
    return text


def render_rubric(rubric: str, prompt: str, explanation: str) -> str:
    return rubric.replace("{Prompt}", prompt).replace("{Explanation}", explanation)


class Judge(Protocol):
    def __call__(self, image_path: str | Path, prompt: str, explanation: str) -> dict[str, float]: ...


class OpenAICompatibleJudge:
    """A chat-completions endpoint (``{base_url}/chat/completions``) with an image input."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 120,
                 protocol: WiseProtocol = LEGACY, rubric: str | None = None, system: str | None = None) -> None:
        self.base_url, self.model, self.api_key, self.timeout = base_url.rstrip("/"), model, api_key, timeout
        self.protocol, self.rubric, self.system = protocol, rubric or protocol.rubric, system

    def request(self, image_path: str | Path, prompt: str, explanation: str) -> dict:
        """The request body (separate so it can be checked without a network)."""
        encoded = base64.b64encode(Path(image_path).read_bytes()).decode()
        content = [{"type": "text", "text": render_rubric(self.rubric, prompt, explanation)},
                   {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{encoded}"}}]
        messages = [{"role": "user", "content": content}]
        if self.system:
            messages.insert(0, {"role": "system", "content": [{"type": "text", "text": self.system}]})
        return {"model": self.model, "messages": messages, "temperature": 0, "max_tokens": self.protocol.max_tokens}

    def __call__(self, image_path: str | Path, prompt: str, explanation: str) -> dict[str, float]:
        body = json.dumps(self.request(image_path, prompt, explanation)).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(f"{self.base_url}/chat/completions", body, headers)
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            reply = json.loads(response.read())  # not JSON: a ValueError, asked again like a bad reply
        try:
            content = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise ValueError(f"the endpoint's reply has no message: {str(reply)[:200]}") from None
        return self.protocol.parse_reply(content)


class TransformersJudge:
    """A local vision-language model (``AutoModelForImageTextToText`` + its processor)."""

    def __init__(self, model, processor, protocol: WiseProtocol = LEGACY, rubric: str | None = None,
                 max_new_tokens: int = 64) -> None:
        self.model, self.processor, self.max_new_tokens = model, processor, max_new_tokens
        self.protocol, self.rubric = protocol, rubric or protocol.rubric

    def __call__(self, image_path: str | Path, prompt: str, explanation: str) -> dict[str, float]:
        from PIL import Image

        messages = [{"role": "user", "content": [
            {"type": "image"}, {"type": "text", "text": render_rubric(self.rubric, prompt, explanation)}]}]
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = self.processor(text=[text], images=[Image.open(image_path).convert("RGB")], return_tensors="pt")
        inputs = inputs.to(self.model.device)
        output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        reply = self.processor.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0]
        return self.protocol.parse_reply(reply)


def judge_folder(judge: Judge, prompts: list[WisePrompt], image_dir: str | Path, out: str | Path,
                 protocol: WiseProtocol = LEGACY, attempts: int = 3) -> dict[str, Any]:
    """Judge every ``<prompt_id>.png`` in a folder into the official score format (JSONL).

    Each judgment is appended as it comes, so an interrupted run keeps what it paid for; run again,
    the ids already in ``out`` are skipped (as the official judges resume). A reply that cannot be
    read is asked again, ``attempts`` times in all, as the official judges do; then that id is left
    out and listed in ``failed``. At the end the file is rewritten sorted by id. Returns the counts."""
    out = Path(out)
    done = read_judgments(out, protocol.name).scores if out.exists() and out.read_text().strip() else {}
    failed, absent = [], []
    with open(out, "a") as f:
        for p in sorted(prompts, key=lambda p: p.prompt_id):
            path = Path(image_dir) / image_name(p)
            if p.prompt_id in done:
                continue
            if not path.exists():
                absent.append(p.prompt_id)
                continue
            for _ in range(attempts):
                try:
                    values = protocol.check(judge(path, p.prompt, p.explanation))
                    break
                except ValueError:
                    continue
            else:
                failed.append(p.prompt_id)
                continue
            f.write(json.dumps({"prompt_id": p.prompt_id, "Subcategory": p.subcategory, **values}) + "\n")
            f.flush()
    rows = sorted((json.loads(line) for line in out.read_text().splitlines() if line.strip()),
                  key=lambda row: row["prompt_id"])
    partial = out.with_name(out.name + ".partial")
    partial.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    partial.replace(out)
    return {"judged": len(rows), "resumed": len(done), "failed": failed, "absent": absent}
