"""Text corpora for the thinker, made from the same generators as the suites.

* :func:`knowledge_corpus` — questions and answers about **every** fact, in varied phrasings
  (the thinker's "world knowledge", pretraining);
* :func:`caption_corpus` — captions of random scenes (canonical and varied);
* :func:`think_examples` — think-then-rewrite examples: prompt -> ``<think> reasoning </think>``
  canonical caption. Reasoning examples use the **supervised** fact group only; composition
  prompts are included with a short trace so the thinker also learns plain rewriting;
* :func:`seeing_examples` — examples with an image, for a thinker that sees: describe a scene,
  write the canonical edit for a request about a source image (editing suite, train split), judge
  an image against its prompt and write the fix or "the image is right" (reflection suite).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from PIL import Image

from .captions import canonical, describe, parse_objects, target_of
from .edits import NO_EDIT, apply_fix, edit_text, fixing_edit, parse_edit
from .facts import FACTS, questions
from .parse import ParsedScene, parse
from .rules import Target, check, parsed_as_scene, satisfies
from .scene import BASIC_SHAPES, Object, Scene, SceneSampler
from .suites import composition_items, editing_items, reasoning_items, reflection_items, text_items

ANSWER_FORMS = ["{statement}", "{statement}", "The answer: {answer}. {statement}"]


def knowledge_corpus(seed: int = 0) -> list[dict[str, str]]:
    """Every fact, asked every way, with its answer: ``{"question", "answer", "fact"}``."""
    rng = random.Random(f"knowledge-{seed}")
    rows = []
    for fact in FACTS:
        for question in questions(fact):
            answer = rng.choice(ANSWER_FORMS).format(statement=fact.statement, answer=fact.answer)
            rows.append({"question": question, "answer": answer, "fact": fact.id})
        if fact.kind in ("color", "shape"):  # noun subjects; count and direction ones are clauses
            rows.append({"question": f"Tell me a fact about {fact.subject}.", "answer": fact.statement,
                         "fact": fact.id})
    rng.shuffle(rows)
    return rows


def caption_corpus(n: int, seed: int = 0, shapes: tuple[str, ...] = BASIC_SHAPES) -> list[dict[str, str]]:
    """Captions of random scenes: ``{"caption", "canonical"}``."""
    sampler = SceneSampler(max_objects=4, shapes=shapes, rng=random.Random(f"captions-{seed}"))
    rng = random.Random(f"captions-words-{seed}")
    rows = []
    for _ in range(n):
        target = target_of(sampler())
        rows.append({"caption": describe(target, rng), "canonical": canonical(target)})
    return rows


def think_completion(reasoning: str, rewrite: str, think_open: str = "<think>",
                     think_close: str = "</think>") -> str:
    """The assistant turn a thinker is taught to write (the same layout as the pseudo-CoT template)."""
    return f"{think_open}\n{reasoning}\n{think_close}\n\n{rewrite}"


def think_examples(n_reasoning: int, n_composition: int, seed: int = 0, n_text: int = 0,
                   n_photo: int = 0) -> list[dict[str, str]]:
    """``{"prompt", "reasoning", "rewrite", "completion", "suite"}`` rows from the train splits.
    Text prompts (``n_text``) are rewritten to the canonical ``the text "..."``: the string itself
    is copied letter by letter, which a thinker never taught it turns into shapes. ``n_photo``
    composition prompts are asked as GenEval asks, ``a photo of <canonical caption>`` (still
    train-split targets): a thinker that never saw the word "photo" in a request may read it as
    a riddle to reason about."""
    rows = []
    for item in reasoning_items(n_reasoning, "train", seed):
        assert item.group == "supervised"  # the train split holds supervised facts only
        rows.append({"prompt": item.prompt, "reasoning": item.reasoning, "rewrite": item.canonical,
                     "completion": think_completion(item.reasoning, item.canonical), "suite": "reasoning"})
    per_tag = max(1, n_composition // 6)
    plain = composition_items(per_tag, "train", seed) + (text_items(n_text, "train", seed) if n_text else [])
    requests = [(item, item.prompt) for item in plain]
    if n_photo:
        requests += [(item, f"a photo of {item.canonical}")
                     for item in composition_items(max(1, n_photo // 6), "train", seed + 1)]
    for item, prompt in requests:  # nothing to know: the rewrite restates the request
        reasoning = f"The prompt asks for {item.canonical}. No extra knowledge is needed. So I draw {item.canonical}."
        rows.append({"prompt": prompt, "reasoning": reasoning, "rewrite": item.canonical,
                     "completion": think_completion(reasoning, item.canonical), "suite": item.suite})
    random.Random(f"think-{seed}").shuffle(rows)
    return rows


DESCRIBE_QUESTIONS = ["What does the image show?", "Describe the image.", "What is in this picture?"]


def seeing_examples(kind: str, n: int, seed: int = 0) -> list[dict]:
    """``n`` examples with an image: ``{"scene", "request", "completion", "kind"}``.

    * ``describe``: a random scene of 1-4 objects; the request is a question, the completion its
      canonical caption (no think block: this is perception, taught in pretraining);
    * ``edit``: an editing-suite train item; the request is its (varied) instruction, the
      completion a trace that reads the source image, then the canonical instruction;
    * ``reflect``: a reflection-suite train item; the request is the prompt the (wrong or right)
      image was drawn for, the completion compares request and image, then writes the fix, or
      "the image is right". The caller wraps the request in its judge prompt.
    """
    rows: list[dict] = []
    if kind == "describe":
        sampler = SceneSampler(max_objects=4, rng=random.Random(f"describe-{seed}"))
        rng = random.Random(f"describe-questions-{seed}")
        for _ in range(n):
            scene = sampler()
            rows.append({"scene": scene, "request": rng.choice(DESCRIBE_QUESTIONS),
                         "completion": canonical(target_of(scene)), "kind": kind})
    elif kind == "edit":
        for item in editing_items(n, "train", seed):
            reasoning = f"The image shows {_shown(item.source)}. The request is to {item.canonical}."
            rows.append({"scene": item.source, "request": item.prompt,
                         "completion": think_completion(reasoning, item.canonical), "kind": kind})
    elif kind == "reflect":
        for item in reflection_items(n, "train", seed):
            rows.append({"scene": item.source, "request": item.prompt, "kind": kind,
                         "completion": reflect_completion(canonical(item.target), _shown(item.source),
                                                          item.canonical)})
    else:
        raise ValueError(f"kind must be describe, edit or reflect, got {kind!r}")
    return rows


def reflect_completion(asked: str, shown: str, verdict: str) -> str:
    """A judge's answer: compare what the request asks for with what the image shows, then write
    the fix, or :data:`~thinkgen.world.edits.NO_EDIT` ("the image is right")."""
    match = "They match." if verdict == NO_EDIT else "They differ."
    return think_completion(f"The request asks for {asked}. The image shows {shown}. {match}", verdict)


def judge_reading(reasoning: str) -> str | None:
    """What a judge's trace (as :func:`reflect_completion` writes it) says the image shows, or None
    when the trace does not say."""
    said = re.search(r"The image shows (.*?)\. They", reasoning)
    return said.group(1) if said else None


def reading_matches(reasoning: str) -> bool | None:
    """Whether a judge's trace says the image shows what the request asks for, by the world's
    rules: its "The request asks for ..." and "The image shows ..." read back as targets, the
    objects read placed apart. None when either does not read as a list of objects (a relation, a
    text, a phrase outside the world's): the trace then says nothing the rules can check."""
    asked = re.search(r"The request asks for (.*?)\. The image shows", reasoning)
    shown = judge_reading(reasoning)
    asked = parse_objects(asked.group(1)) if asked else None
    shown = parse_objects(shown) if shown else None
    if asked is None or shown is None:
        return None
    if any(r.color is None for r in shown.include):  # a drawing's reading names every colour
        return None
    read = [(r.shape, r.color) for r in shown.include for _ in range(r.count)]
    row = [Object(shape, color, 0.1 + 0.8 * k / len(read), 0.5, 0.06) for k, (shape, color) in enumerate(read)]
    return satisfies(Scene(tuple(row)), asked)  # in one row, apart: only what and how many count


def _shown(scene: Scene) -> str:
    return canonical(target_of(scene))


# ----------------------------------------------------------------------------- a model's own drawings
DRAWN_REFLECTION_ROWS = "rows.jsonl"


def drawn_reflection_row(prompt: str, target: Target, parsed: ParsedScene) -> dict | None:
    """What a judge should answer about a drawing of ``prompt``, read by the parser: the image
    shows what was parsed; the verdict is "the image is right" when it meets ``target``, else the
    edit that fixes it, or the one that gets nearest (None when no edit gets nearer: left out)."""
    scene = parsed_as_scene(parsed)
    shown = canonical(target_of(scene)) if scene.objects else "nothing"
    if check(parsed, target).correct:
        verdict = NO_EDIT
    else:
        edit = fixing_edit(scene, target, partial=True)
        if edit is None:
            return None
        verdict = edit_text(edit)
    return {"prompt": prompt, "asked": canonical(target), "shown": shown, "verdict": verdict}


def drawn_reflection_rows(folder: str | Path) -> list[dict]:
    """The rows of a folder of judged drawings (``experiments/scripts/draw_reflection_data.py``): each has
    ``image`` (a path in the folder), ``prompt``, ``asked``, ``shown`` and ``verdict``."""
    path = Path(folder) / DRAWN_REFLECTION_ROWS
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no {DRAWN_REFLECTION_ROWS} (write it with experiments/scripts/draw_reflection_data.py)")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for i, row in enumerate(rows):
        missing = {"image", "prompt", "asked", "shown", "verdict"} - set(row)
        if missing:
            raise ValueError(f"{path}: row {i + 1} lacks {sorted(missing)}")
    return rows


def drawn_edit_examples(folder: str | Path) -> list[tuple[Path, str, Scene]]:
    """The drawings of a folder of judged drawings that need a fix, as edit examples for the DiT:
    ``(image path, the fix, the scene after it)``. The scene after it is the parsed drawing with
    the fix applied as :func:`~thinkgen.world.edits.fixing_edit` applied it (``apply_fix``, so a
    full fix meets the request), drawn clean: the DiT learns to correct *its own* drawings, the
    sources a reflection round gives it, not only the clean renders of the editing suite."""
    examples = []
    for row in drawn_reflection_rows(folder):
        edit = parse_edit(row["verdict"])
        if edit is None:  # "the image is right"
            continue
        path = Path(folder) / row["image"]
        scene = parsed_as_scene(parse(Image.open(path).convert("RGB")))
        fixed = apply_fix(scene, edit)
        if fixed is not None:
            examples.append((path, row["verdict"], fixed))
    return examples
