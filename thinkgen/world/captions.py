"""Captions: a canonical form (the thinker's "rewritten instruction") and varied English.

The canonical form is short, fixed-order and unambiguous: ``two red circles``, ``a red circle
left of a blue square``, ``a yellow triangle and a green star``, ``the text "AB"``, with
``on a black background`` when the background is not white. Natural captions draw on a closed
set of templates and synonyms, so a word-level tokenizer can cover them.
"""

from __future__ import annotations

import random

from .rules import Requirement, Target, relations, scene_as_parsed
from .scene import COLORS, SHAPES, Scene

NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "star": "stars"}
# the readers' inverses: "three" -> 3 ("a"/"an": 1), "circles" -> "circle"
QUANTITIES = {word: n for n, word in NUMBER_WORDS.items()} | {"a": 1, "an": 1}
SINGULARS = {plural: shape for shape, plural in PLURALS.items()}


def noun(shape: str, count: int = 1) -> str:
    return shape if count == 1 else PLURALS[shape]


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def phrase(req: Requirement) -> str:
    """``a red circle`` / ``an orange star`` / ``three circles`` / ``two blue squares``."""
    rest = ([req.color] if req.color else []) + [noun(req.shape, req.count)]
    quantity = article(rest[0]) if req.count == 1 else NUMBER_WORDS[req.count]
    return " ".join([quantity] + rest)


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def canonical(target: Target) -> str:
    """The one canonical caption of a target."""
    parts: list[str] = []
    positioned = {i for i, r in enumerate(target.include) if r.position}
    referenced = {r.position[1] for r in target.include if r.position}
    for i, req in enumerate(target.include):
        if i in positioned:
            relation, ref = req.position
            parts.append(f"{phrase(req)} {relation} {phrase(target.include[ref])}")
        elif i not in referenced:
            parts.append(phrase(req))
    if target.text:
        parts.append(f'the text "{target.text}"')
    caption = _join(parts) if parts else "nothing"
    if target.background and target.background != "white":
        caption += f" on a {target.background} background"
    return caption


def parse_objects(caption: str) -> Target | None:
    """The inverse of :func:`canonical` for captions that only list objects ("a red circle and
    three squares"): their target, or None for anything else (a relation, text, a background, a
    word outside the world's). A count is exact, as the counting tag's targets read it."""
    parts = caption.split(" and ")
    parts = [p for part in parts[:-1] for p in part.split(", ")] + parts[-1:]
    include = []
    for part in parts:
        words = part.split()
        if len(words) not in (2, 3) or words[0] not in QUANTITIES:
            return None
        count, shape = QUANTITIES[words[0]], SINGULARS.get(words[-1], words[-1])
        color = words[1] if len(words) == 3 else None
        if shape not in SHAPES or (color is not None and color not in COLORS) or phrase(
                Requirement(shape, count, color)) != part:
            return None
        include.append(Requirement(shape, count, color))
    # "three circles" is exactly three, as the counting tag reads it: not four (a shape named once)
    shapes = [r.shape for r in include]
    exclude = tuple(Requirement(r.shape, r.count + 1) for r in include if r.count > 1 and shapes.count(r.shape) == 1)
    return Target(tuple(include), exclude)


def target_of(scene: Scene) -> Target:
    """What a scene shows, as a target: objects grouped by (colour, shape) in a fixed order;
    with exactly two objects, the first's relation to the second when one is clear."""
    if len(scene.objects) == 2:
        a, b = scene.objects
        parsed = scene_as_parsed(scene).objects
        rels = sorted(relations(parsed[0], parsed[1]))
        if len(rels) == 1 and a.shape != b.shape:  # GenEval position items use two classes
            include = (Requirement(b.shape, 1, b.color), Requirement(a.shape, 1, a.color, (rels[0], 0)))
            return Target(include, text=scene.text or None, background=scene.background)
    counts: dict[tuple[str, str], int] = {}
    for obj in scene.objects:
        counts[(obj.shape, obj.color)] = counts.get((obj.shape, obj.color), 0) + 1
    order = sorted(counts, key=lambda k: (SHAPES.index(k[0]), list(COLORS).index(k[1])))
    include = tuple(Requirement(shape, counts[(shape, color)], color) for shape, color in order)
    return Target(include, text=scene.text or None, background=scene.background)


# --------------------------------------------------------------------------- varied English
FRAMES = ["{}", "a picture of {}", "an image of {}", "draw {}", "show {}", "{} on a plain background",
          "a simple drawing of {}", "please draw {}", "a scene with {}", "generate {}"]
RELATION_WORDS = {"left of": ["left of", "to the left of", "on the left of"],
                  "right of": ["right of", "to the right of", "on the right of"],
                  "above": ["above", "over", "on top of"],
                  "below": ["below", "under", "beneath"]}


def varied_phrase(req: Requirement, rng: random.Random) -> str:
    n = req.count
    first = req.color or req.shape
    if n == 1:
        quantity = rng.choice([article(first), "one", article(first) if first[0] in "aeiou" else "a single"])
    else:
        quantity = rng.choice([NUMBER_WORDS[n], NUMBER_WORDS[n], str(n)])
    if req.color and rng.random() < 0.2 and n == 1:
        quantity = quantity if quantity == "one" else article(req.shape)
        return f"{quantity} {req.shape} that is {req.color}"
    if req.color and rng.random() < 0.15:
        quantity = quantity if n > 1 or quantity == "one" else article(req.shape)
        return f"{quantity} {noun(req.shape, n)} coloured {req.color}"
    return " ".join([quantity] + ([req.color] if req.color else []) + [noun(req.shape, n)])


def describe(target: Target, rng: random.Random) -> str:
    """A natural, varied caption of a target."""
    parts = []
    positioned = {i for i, r in enumerate(target.include) if r.position}
    referenced = {r.position[1] for r in target.include if r.position}
    for i, req in enumerate(target.include):
        if i in positioned:
            relation, ref = req.position
            parts.append(f"{varied_phrase(req, rng)} {rng.choice(RELATION_WORDS[relation])} "
                         f"{varied_phrase(target.include[ref], rng)}")
        elif i not in referenced:
            parts.append(varied_phrase(req, rng))
    if not positioned:
        rng.shuffle(parts)
    if target.text:
        parts.append(rng.choice([f'the text "{target.text}"', f'the word "{target.text}"',
                                 f'the letters "{target.text}"']))
    body = _join(parts) if parts else "nothing"
    frames = FRAMES
    if target.background and target.background != "white":
        body += rng.choice([f" on a {target.background} background", f" against {target.background}"])
        frames = [f for f in FRAMES if "background" not in f]
    return rng.choice(frames).format(body)
