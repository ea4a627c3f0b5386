"""The five scenario suites: seeded item generators with fixed splits, and their scorers.

Every item carries an exact target and a ground-truth scene that satisfies it. Splits are fixed
by hashing an item's content, so they never change with the number of items asked for:

* composition — GenEval's six tags. ``position`` and ``color_attr`` specs are split disjointly
  (their spaces are large); single_object, two_object, colors and counting have too few specs
  (a handful of shapes) to hold any out, so their test items differ only in wording and seed.
* reasoning — WISE-like prompts over the fact base. ``train``: supervised facts only (the SFT
  set); ``test``: supervised facts in unseen combinations, and held-out facts; ``rl``: other
  held-out-fact items, for reinforcement learning. Items record their fact group.
* text — short strings to draw; split by string.
* editing — (source scene, instruction, target scene) for add / remove / recolor / move / replace.
* reflection — (prompt, wrong scene) → the instruction that fixes it; or (prompt, right scene) →
  "the image is right".
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

from . import facts as fact_base
from .captions import article, canonical, describe, noun, target_of
from .edits import NO_EDIT, Edit, apply_edit, apply_fix, describe_edit, edit_text, parse_edit
from .parse import ParsedScene
from .rules import RELATIONS, Requirement, Target, check, satisfies
from .scene import BASIC_SHAPES, COLORS, GLYPH_CHARS, MAX_SIZE, MIN_SIZE, Object, Scene, place

SUITES = ("composition", "reasoning", "text", "editing", "reflection")
RESOLUTION = {"text": 64}  # image side per suite; 32 px otherwise (text needs bigger glyphs)
TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")


@dataclass
class Item:
    id: str
    suite: str
    split: str  # train | test (| rl for reasoning)
    category: str  # composition: GenEval tag; reasoning: WISE category; editing: op; ...
    prompt: str
    canonical: str  # the rewritten instruction (reflection: the reference correction)
    target: Target | None = None  # what the output image must show
    scene: Scene | None = None  # a ground-truth scene that satisfies the target
    source: Scene | None = None  # editing and reflection: the input image's scene
    reasoning: str = ""  # reasoning suite: a step-by-step trace for think-then-rewrite SFT
    group: str = ""  # reasoning: supervised | held_out
    facts: tuple[str, ...] = ()
    edit: dict | None = None  # editing: the edit asked for

    def to_dict(self) -> dict:
        out = asdict(self)
        for key in ("scene", "source"):
            out[key] = getattr(self, key).to_dict() if getattr(self, key) else None
        out["target"] = self.target.to_dict() if self.target else None
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Item:
        data = dict(data)
        for key in ("scene", "source"):
            data[key] = Scene.from_dict(data[key]) if data.get(key) else None
        data["target"] = Target.from_dict(data["target"]) if data.get("target") else None
        data["facts"] = tuple(data.get("facts", ()))
        return cls(**data)


def stable_fraction(key: str) -> float:
    """A stable number in [0, 1) from a string (not Python's salted hash)."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 2**32


def scene_for(target: Target, rng: random.Random, background: str = "white",
               sizes: tuple[float, float] = (MIN_SIZE, MAX_SIZE)) -> Scene | None:
    """A random scene satisfying ``target`` (colours of unspecified requirements are random)."""
    specs, owners = [], []
    for i, req in enumerate(target.include):
        color = req.color or rng.choice(list(COLORS))
        for _ in range(req.count):
            specs.append((req.shape, color))
            owners.append(i)
    for _ in range(20):
        objects = place(rng, specs, sizes=sizes, text_band=bool(target.text))
        if objects is None:
            continue
        scene = Scene(tuple(objects), target.background or background, target.text or "")
        if satisfies(scene, target, margin=True):
            return scene
    return None


# ----------------------------------------------------------------------------- composition
def composition_target(tag: str, rng: random.Random, shapes: tuple[str, ...]) -> Target:
    colors = list(COLORS)
    if tag == "single_object":
        return Target((Requirement(rng.choice(shapes)),))
    if tag == "colors":
        return Target((Requirement(rng.choice(shapes), 1, rng.choice(colors)),))
    if tag == "counting":
        shape, n = rng.choice(shapes), rng.randint(2, 4)
        return Target((Requirement(shape, n),), (Requirement(shape, n + 1),))
    a, b = rng.sample(shapes, 2)
    if tag == "two_object":
        return Target((Requirement(a), Requirement(b)))
    if tag == "position":
        return Target((Requirement(b), Requirement(a, position=(rng.choice(RELATIONS), 0))))
    ca, cb = rng.sample(colors, 2)
    return Target((Requirement(a, 1, ca), Requirement(b, 1, cb)))


def composition_items(n_per_tag: int, split: str, seed: int = 0,
                      shapes: tuple[str, ...] = BASIC_SHAPES) -> list[Item]:
    rng = random.Random(f"composition-{split}-{seed}")
    items = []
    for tag in TAGS:
        made, tries = 0, 0
        while made < n_per_tag and tries < 200 * n_per_tag:
            tries += 1
            target = composition_target(tag, rng, shapes)
            if tag in ("position", "color_attr"):  # disjoint specs between the splits
                in_test = stable_fraction(canonical(target)) < 0.2
                if in_test != (split == "test"):
                    continue
            scene = scene_for(target, rng)
            if scene is None:
                continue
            prompt = f"a photo of {canonical(target)}" if split == "test" else describe(target, rng)
            items.append(Item(f"composition-{split}-{tag}-{made:04d}", "composition", split, tag, prompt,
                              canonical(target), target, scene))
            made += 1
    return items


# ----------------------------------------------------------------------------- reasoning
def _reasoning_candidate(rng: random.Random, shapes: tuple[str, ...]):
    """(template, facts, target, prompt) for one random reasoning prompt."""
    pick = {kind: fact_base.facts(kind, shapes=shapes) for kind in ("color", "count", "shape", "direction")}
    template = rng.choice(["color", "count", "shape", "count+color", "direction", "shape+color"])
    shape, color = rng.choice(shapes), rng.choice(list(COLORS))
    if template == "color":
        f = rng.choice(pick["color"])
        return template, [f], Target((Requirement(shape, 1, f.answer),)), \
            f"{article(shape)} {shape} in the colour of {f.subject}"
    if template == "count":
        f = rng.choice(pick["count"])
        n = f.value
        return template, [f], Target((Requirement(shape, n, color),), (Requirement(shape, n + 1),)), \
            f"as many {color} {noun(shape, 2)} as {f.subject}"
    if template == "shape":
        f = rng.choice(pick["shape"])
        return template, [f], Target((Requirement(f.answer, 1, color),)), \
            f"{article(color)} {color} object shaped like {f.subject}"
    if template == "count+color":
        fn, fc = rng.choice(pick["count"]), rng.choice(pick["color"])
        n = fn.value
        return template, [fn, fc], Target((Requirement(shape, n, fc.answer),), (Requirement(shape, n + 1),)), \
            f"as many {noun(shape, 2)} as {fn.subject}, in the colour of {fc.subject}"
    if template == "shape+color":
        fs, fc = rng.choice(pick["shape"]), rng.choice(pick["color"])
        return template, [fs, fc], Target((Requirement(fs.answer, 1, fc.answer),)), \
            f"an object shaped like {fs.subject}, in the colour of {fc.subject}"
    f = rng.choice(pick["direction"])
    other, other_color = rng.choice([s for s in shapes if s != shape]), rng.choice(list(COLORS))
    relation = fact_base.DIRECTIONS[f.answer]
    target = Target((Requirement(other, 1, other_color), Requirement(shape, 1, color, (relation, 0))))
    return template, [f], target, (f"{article(color)} {color} {shape} next to {article(other_color)} "
                                   f"{other_color} {other}, the {shape} placed {f.subject}")


def reasoning_trace(used: list[fact_base.Fact], target: Target) -> str:
    """The supervised think text: the facts, then the plan."""
    return " ".join(f.statement for f in used) + f" So I draw {canonical(target)}."


def reasoning_items(n: int, split: str, seed: int = 0, shapes: tuple[str, ...] = BASIC_SHAPES) -> list[Item]:
    if split not in ("train", "test", "rl"):
        raise ValueError(f"reasoning splits are train, test and rl, got {split!r}")
    rng = random.Random(f"reasoning-{split}-{seed}")
    items, seen = [], set()
    for _ in range(400 * n):
        if len(items) >= n:
            break
        template, used, target, prompt = _reasoning_candidate(rng, shapes)
        if prompt in seen:
            continue
        group = "held_out" if any(f.group == "held_out" for f in used) else "supervised"
        u = stable_fraction(prompt)
        item_split = ("test" if u < 0.5 else "rl") if group == "held_out" else ("test" if u < 0.15 else "train")
        if item_split != split:
            continue
        scene = scene_for(target, rng)
        if scene is None:
            continue
        seen.add(prompt)
        items.append(Item(f"reasoning-{split}-{len(items):04d}", "reasoning", split, used[0].category, prompt,
                          canonical(target), target, scene, reasoning=reasoning_trace(used, target),
                          group=group, facts=tuple(f.id for f in used)))
    return items


# ----------------------------------------------------------------------------- text
def text_items(n: int, split: str, seed: int = 0) -> list[Item]:
    rng = random.Random(f"text-{split}-{seed}")
    items, seen = [], set()
    frames = ['the text "{}"', 'write "{}"', 'a sign that says "{}"', 'the word "{}"']
    for _ in range(100 * n):
        if len(items) >= n:
            break
        word = "".join(rng.choice(GLYPH_CHARS) for _ in range(rng.randint(1, 4)))
        if word in seen or (stable_fraction("text:" + word) < 0.2) != (split == "test"):
            continue
        seen.add(word)
        target = Target(text=word)
        prompt = frames[0].format(word) if split == "test" else rng.choice(frames).format(word)
        items.append(Item(f"text-{split}-{len(items):04d}", "text", split, f"{len(word)} chars", prompt,
                          canonical(target), target, Scene(text=word)))
    return items


# ----------------------------------------------------------------------------- editing
def _unique(scene: Scene) -> list[Object]:
    keys = [(o.shape, o.color) for o in scene.objects]
    return [o for o in scene.objects if keys.count((o.shape, o.color)) == 1]


def _random_edit(scene: Scene, rng: random.Random, shapes: tuple[str, ...]) -> Edit | None:
    op = rng.choice(["add", "remove", "recolor", "move", "replace"])
    colors = list(COLORS)
    if op == "add":
        return Edit("add", rng.choice(shapes), rng.choice(colors))
    candidates = _unique(scene)
    if not candidates:
        return None
    obj = rng.choice(candidates)
    if op == "remove":
        return Edit("remove", obj.shape, obj.color)
    if op == "recolor":
        return Edit("recolor", obj.shape, obj.color, new_color=rng.choice([c for c in colors if c != obj.color]))
    if op == "replace":
        return Edit("replace", obj.shape, obj.color, new_shape=rng.choice([s for s in shapes if s != obj.shape]),
                    new_color=rng.choice(colors))
    side = rng.choice([s for s, bad in (("left", obj.x < 0.5), ("right", obj.x > 0.5),
                                        ("top", obj.y < 0.5), ("bottom", obj.y > 0.5)) if not bad])
    return Edit("move", obj.shape, obj.color, side=side)


def editing_items(n: int, split: str, seed: int = 0, shapes: tuple[str, ...] = BASIC_SHAPES) -> list[Item]:
    rng = random.Random(f"editing-{split}-{seed}")
    items = []
    while len(items) < n:
        specs = [(rng.choice(shapes), rng.choice(list(COLORS))) for _ in range(rng.randint(1, 3))]
        objects = place(rng, specs, sizes=(0.24, 0.34))
        if objects is None:
            continue
        source = Scene(tuple(objects))
        edit = _random_edit(source, rng, shapes)
        result = apply_edit(source, edit, rng) if edit else None
        if result is None or not result.objects:
            continue
        instruction = edit_text(edit) if split == "test" else describe_edit(edit, rng)
        items.append(Item(f"editing-{split}-{len(items):04d}", "editing", split, edit.op, instruction,
                          edit_text(edit), target_of(result), result,
                          source=source, edit=asdict(edit)))
    return items


# ----------------------------------------------------------------------------- reflection
ERRORS = ("color", "missing", "extra", "shape", "position", "none")  # none: the image is right already


def _corrupt(scene: Scene, target: Target, error: str, rng: random.Random, shapes: tuple[str, ...]):
    """A wrong version of a correct scene and the instruction that fixes it, or None."""
    unique = _unique(scene)
    colors = list(COLORS)
    if error == "position":  # move the object to the other side: the relation turns around
        positioned = [r for r in target.include if r.position]
        if not positioned:
            return None
        req = positioned[0]
        ref = target.include[req.position[1]]
        flipped = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
        bad = Edit("move", req.shape, req.color, relation=flipped[req.position[0]], ref_shape=ref.shape,
                   ref_color=ref.color)
        fix = Edit("move", req.shape, req.color, relation=req.position[0], ref_shape=ref.shape, ref_color=ref.color)
    elif error == "extra":
        req = target.include[0]
        color = req.color or rng.choice(colors)
        bad, fix = Edit("add", req.shape, color), Edit("remove", req.shape, color)
    elif not unique:
        return None
    else:
        obj = rng.choice(unique)
        if error == "color":
            wrong = rng.choice([c for c in colors if c != obj.color])
            bad, fix = (Edit("recolor", obj.shape, obj.color, new_color=wrong),
                        Edit("recolor", obj.shape, wrong, new_color=obj.color))
        elif error == "missing":
            bad, fix = Edit("remove", obj.shape, obj.color), Edit("add", obj.shape, obj.color)
        else:
            wrong = rng.choice([s for s in shapes if s != obj.shape])
            bad = Edit("replace", obj.shape, obj.color, new_shape=wrong, new_color=obj.color)
            fix = Edit("replace", wrong, obj.color, new_shape=obj.shape, new_color=obj.color)
    wrong_scene = apply_edit(scene, bad, rng)
    if wrong_scene is None or satisfies(wrong_scene, target):
        return None
    fixed = apply_fix(wrong_scene, fix)
    if fixed is None or not satisfies(fixed, target):
        return None
    return error, wrong_scene, fix


def reflection_items(n: int, split: str, seed: int = 0, shapes: tuple[str, ...] = BASIC_SHAPES) -> list[Item]:
    rng = random.Random(f"reflection-{split}-{seed}")
    items = []
    while len(items) < n:
        error = ERRORS[len(items) % len(ERRORS)]  # balanced error types
        tag = {"position": "position", "extra": "counting"}.get(
            error, rng.choice(["colors", "counting", "position", "color_attr"]))
        target = composition_target(tag, rng, shapes)
        if tag in ("counting", "position"):  # colour every object so a fix can name it
            include = tuple(replace(r, color=rng.choice(list(COLORS))) for r in target.include)
            target = replace(target, include=include)
        scene = scene_for(target, rng, sizes=(MIN_SIZE, 0.3))  # small: room to move things
        if error == "none" and scene is not None:  # a right image: the judge must leave it alone
            items.append(Item(f"reflection-{split}-{len(items):04d}", "reflection", split, error,
                              f"a photo of {canonical(target)}", NO_EDIT, target, scene, source=scene))
            continue
        corrupted = _corrupt(scene, target, error, rng, shapes) if scene else None
        if corrupted is None:
            continue
        error, wrong_scene, fix = corrupted
        items.append(Item(f"reflection-{split}-{len(items):04d}", "reflection", split, error,
                          f"a photo of {canonical(target)}", edit_text(fix), target, scene,
                          source=wrong_scene, edit=asdict(fix)))
    return items


BUILDERS: dict[str, Callable[..., list[Item]]] = {
    "composition": lambda n, split, seed=0: composition_items(max(1, n // len(TAGS)), split, seed),
    "reasoning": reasoning_items, "text": text_items, "editing": editing_items, "reflection": reflection_items,
}


def build(suite: str, n: int, split: str = "test", seed: int = 0) -> list[Item]:
    """``n`` items of a suite's split (composition: ``n // 6`` per tag)."""
    if suite not in BUILDERS:
        raise ValueError(f"unknown suite {suite!r}; suites are {SUITES}")
    return BUILDERS[suite](n, split, seed)


# ----------------------------------------------------------------------------- scoring
def edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def ned(a: str, b: str) -> float:
    """Normalised edit-distance *similarity*: 1 - distance / longer length (1 = identical)."""
    return 1.0 if not a and not b else 1 - edit_distance(a, b) / max(len(a), len(b))


def _multiset_f1(got: list[tuple[str, str]], want: list[tuple[str, str]]) -> float:
    remaining, hits = list(want), 0
    for key in got:
        if key in remaining:
            remaining.remove(key)
            hits += 1
    if not got and not want:
        return 1.0
    return 2 * hits / (len(got) + len(want)) if got or want else 0.0


@dataclass
class Score:
    score: float  # the suite's headline number for this image (0..1)
    details: dict = field(default_factory=dict)


def score_image(item: Item, parsed: ParsedScene, min_confidence: float = 0.5) -> Score:
    """Score an output image (already parsed) against an item."""
    if item.suite in ("composition", "reasoning"):
        verdict = check(parsed, item.target, min_confidence)
        return Score(float(verdict.correct), {"reason": verdict.reason, "matched": verdict.matched})
    if item.suite == "text":
        word = item.target.text
        return Score(float(parsed.text == word), {"read": parsed.text, "ned": ned(parsed.text, word)})
    if item.suite == "editing":
        got = [(o.shape, o.color) for o in parsed.objects if o.confidence >= min_confidence]
        want = [(o.shape, o.color) for o in item.scene.objects]
        exact = sorted(got) == sorted(want)
        edit = Edit(**item.edit)
        if exact and edit.op == "move":  # the moved object must be on the asked side
            moved = [o for o in parsed.objects if (o.shape, o.color) == (edit.shape, edit.color)]
            cx, cy = moved[0].center
            exact = {"left": cx < 0.5, "right": cx > 0.5, "top": cy < 0.5, "bottom": cy > 0.5}[edit.side]
        return Score(float(exact), {"f1": _multiset_f1(got, want)})
    raise ValueError(f"{item.suite} items are scored with score_instruction")


def score_instruction(item: Item, instruction: str) -> Score:
    """Reflection: does the written instruction fix the wrong scene (or, for a right image, say so
    and change nothing), and how close is it to the reference (normalised edit-distance similarity)?"""
    written = " ".join(instruction.lower().split())
    similarity = ned(written, item.canonical)
    if item.category == "none":
        return Score(float(written.rstrip(".") == NO_EDIT), {"ned": similarity, "parsed": written.rstrip(".") == NO_EDIT})
    edit = parse_edit(instruction)
    fixed = False
    if edit is not None:
        result = apply_fix(item.source, edit)
        fixed = result is not None and satisfies(result, item.target)
    return Score(float(fixed), {"ned": similarity, "parsed": edit is not None})


