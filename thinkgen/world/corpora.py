"""Text corpora for the thinker, made from the same generators as the suites.

* :func:`knowledge_corpus` — questions and answers about **every** fact, in varied phrasings
  (the thinker's "world knowledge", pretraining);
* :func:`caption_corpus` — captions of random scenes (canonical and varied);
* :func:`think_examples` — think-then-rewrite examples: prompt -> ``<think> reasoning </think>``
  canonical caption. Reasoning examples use the **supervised** fact group only; composition
  prompts are included with a short trace so the thinker also learns plain rewriting.
"""

from __future__ import annotations

import random

from .captions import canonical, describe, target_of
from .facts import FACTS, questions
from .scene import BASIC_SHAPES, SceneSampler
from .suites import composition_items, reasoning_items

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


def think_examples(n_reasoning: int, n_composition: int, seed: int = 0) -> list[dict[str, str]]:
    """``{"prompt", "reasoning", "rewrite", "completion", "suite"}`` rows from the train splits."""
    rows = []
    for item in reasoning_items(n_reasoning, "train", seed):
        assert item.group == "supervised"  # the train split holds supervised facts only
        rows.append({"prompt": item.prompt, "reasoning": item.reasoning, "rewrite": item.canonical,
                     "completion": think_completion(item.reasoning, item.canonical), "suite": "reasoning"})
    per_tag = max(1, n_composition // 6)
    for item in composition_items(per_tag, "train", seed):
        reasoning = f"The prompt asks for {item.canonical}. No extra knowledge is needed. So I draw {item.canonical}."
        rows.append({"prompt": item.prompt, "reasoning": reasoning, "rewrite": item.canonical,
                     "completion": think_completion(reasoning, item.canonical), "suite": "composition"})
    random.Random(f"think-{seed}").shuffle(rows)
    return rows
