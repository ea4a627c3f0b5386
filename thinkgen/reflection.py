"""Reflection: draw, let the thinker look at its own image, and correct it with an edit.

ThinkGen's fifth scenario. A round is two passes of the same pipeline:

1. *judge*: the thinker sees the prompt and the image (a vision-language thinker is required),
   thinks, and writes after ``</think>`` either :data:`RIGHT` ("the image is right") or an edit
   instruction in the editing suite's grammar ("make the red circle blue");
2. *edit*: when the verdict is an edit, the pipeline applies it as ``thinkgen edit`` does: the
   instruction in direct mode, the image as the DiT's reference.

Rounds stop at the first verdict of :data:`RIGHT`, or after ``rounds`` edits. Every round's image
and verdict are returned, so a caller sees what was judged and changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

    from .pipeline import ThinkGenPipeline

from .world.edits import NO_EDIT as RIGHT  # the verdict that ends reflection

# What the thinker is asked about an image: the same text in generation, the reflection suite's
# evaluation and RL. ``shown`` is SHOWN_ATTACHED for a thinker that sees the image; a text-only
# thinker is given a faithful description of the scene instead (evaluation and RL only).
REFLECTION_PROMPT = ("The request was: {prompt}. The image shows {shown}. Write the one edit instruction that "
                     "makes the image match the request, or say that the image is right.")
SHOWN_ATTACHED = "what is attached"


def judge_prompt(prompt: str, shown: str = SHOWN_ATTACHED) -> str:
    return REFLECTION_PROMPT.format(prompt=prompt, shown=shown)


def is_right(verdict: str) -> bool:
    return " ".join(verdict.lower().split()).rstrip(".") == RIGHT


@dataclass
class ReflectionRound:
    image: Image.Image  # the image the thinker judged
    reasoning: str  # its think block
    verdict: str  # what it wrote after </think>: RIGHT or an edit instruction
    right: bool


@dataclass
class ReflectionOutput:
    images: list[Image.Image]  # the final image of each prompt
    rounds: list[list[ReflectionRound]] = field(default_factory=list)  # per prompt, in order
    first: list[Image.Image] = field(default_factory=list)  # the image before any edit


def generate_with_reflection(pipe: ThinkGenPipeline, prompts: str | list[str], rounds: int = 1,
                             think: bool = True, seed: int = 0, **drawing: Any) -> ReflectionOutput:
    """Draw each prompt, then up to ``rounds`` judge-and-edit rounds. ``drawing`` goes to every
    draw (steps, guidance scales, size). Prompt ``i`` draws with ``seed + i``, as ``pipe(...)``."""
    _check(pipe, rounds)
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    first = pipe(prompts, think=think, seed=seed, **drawing).images
    return reflect(pipe, prompts, first, rounds, seed=seed, **drawing)


def reflect(pipe: ThinkGenPipeline, prompts: list[str], images: list[Image.Image], rounds: int = 1,
            seed: int = 0, **drawing: Any) -> ReflectionOutput:
    """Up to ``rounds`` judge-and-edit rounds on images already drawn (``images[i]`` for
    ``prompts[i]``), by any pipeline whose thinker sees: its own drawings, or another model's.
    The edit of prompt ``i`` draws with ``seed + i``."""
    _check(pipe, rounds)
    if len(images) != len(prompts):
        raise ValueError(f"reflect needs one image per prompt: {len(prompts)} prompts, {len(images)} images")
    current = list(images)
    history: list[list[ReflectionRound]] = [[] for _ in prompts]
    open_rows = list(range(len(prompts)))  # prompts not yet judged right
    for _ in range(rounds):
        if not open_rows:
            break
        judged = pipe.thinker.encode([judge_prompt(prompts[i]) for i in open_rows], think=True,
                                     images=[[current[i]] for i in open_rows], seed=seed)
        to_edit = []
        for row, i in enumerate(open_rows):
            verdict = judged.rewritten[row].strip()
            right = is_right(verdict)
            history[i].append(ReflectionRound(current[i], judged.reasoning[row], verdict, right))
            if not right:
                to_edit.append(i)
        for i in to_edit:  # one call per image: each edit has its own source image and seed
            edited = pipe([history[i][-1].verdict], think=False, images=[[current[i]]], seed=seed + i, **drawing)
            current[i] = edited.images[0]
        open_rows = to_edit
    return ReflectionOutput(current, history, list(images))


def _check(pipe: ThinkGenPipeline, rounds: int) -> None:
    if rounds < 0:
        raise ValueError(f"reflect rounds must be >= 0, got {rounds}")
    if rounds and pipe.thinker.processor is None:
        raise ValueError("reflection needs a thinker that sees images (a vision-language thinker); "
                         "this pipeline's thinker reads text only")
