"""Edit instructions: a small grammar shared by the editing and reflection suites.

Canonical forms (what a thinker should write)::

    add a red circle
    remove the red circle
    make the red circle blue
    move the red circle to the left            (left | right | top | bottom half)
    move the red circle left of the blue square (any GenEval relation to another object)
    replace the red circle with a blue square
    the image is right                          (no edit: what reflection writes for a right image)

:func:`parse_edit` reads them back (and a few natural variants), :func:`apply_edit` carries one
out on a scene, so a written instruction can be checked by whether it fixes the scene.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, replace

from .captions import article
from .rules import RELATIONS, Target, check, relations, satisfies, scene_as_parsed
from .scene import COLORS, MIN_SIZE, SHAPES, Object, Scene, fits

OPS = ("add", "remove", "recolor", "move", "replace")
NO_EDIT = "the image is right"  # what a judge writes when an image needs no edit (reflection)
SIDES = ("left", "right", "top", "bottom")


@dataclass(frozen=True)
class Edit:
    op: str
    shape: str
    color: str
    new_shape: str | None = None  # replace
    new_color: str | None = None  # recolor, replace
    side: str | None = None  # move to a half of the image
    relation: str | None = None  # move relative to another object
    ref_shape: str | None = None
    ref_color: str | None = None


def _the(color: str, shape: str) -> str:
    return f"the {color} {shape}"


def edit_text(edit: Edit) -> str:
    """The canonical instruction."""
    if edit.op == "add":
        return f"add {article(edit.color)} {edit.color} {edit.shape}"
    if edit.op == "remove":
        return f"remove {_the(edit.color, edit.shape)}"
    if edit.op == "recolor":
        return f"make {_the(edit.color, edit.shape)} {edit.new_color}"
    if edit.op == "replace":
        return (f"replace {_the(edit.color, edit.shape)} with {article(edit.new_color)} "
                f"{edit.new_color} {edit.new_shape}")
    if edit.relation:
        return f"move {_the(edit.color, edit.shape)} {edit.relation} {_the(edit.ref_color, edit.ref_shape)}"
    return f"move {_the(edit.color, edit.shape)} to the {edit.side}"


VARIANTS = {
    "add": ["add {a} {c} {s}", "put {a} {c} {s} in the picture", "also draw {a} {c} {s}"],
    "remove": ["remove the {c} {s}", "delete the {c} {s}", "take away the {c} {s}"],
    "recolor": ["make the {c} {s} {c2}", "change the {c} {s} to {c2}", "paint the {c} {s} {c2}"],
    "replace": ["replace the {c} {s} with {a2} {c2} {s2}", "swap the {c} {s} for {a2} {c2} {s2}"],
    "move": ["move the {c} {s} to the {side}", "shift the {c} {s} to the {side}"],
}


def describe_edit(edit: Edit, rng: random.Random) -> str:
    """A varied natural phrasing (relative moves keep the canonical form)."""
    if edit.op == "move" and edit.relation:
        return edit_text(edit)
    template = rng.choice(VARIANTS[edit.op])
    return template.format(a=article(edit.color), c=edit.color, s=edit.shape, c2=edit.new_color,
                           s2=edit.new_shape, a2=article(edit.new_color or "x"), side=edit.side)


_C = "|".join(COLORS)
_S = "|".join(SHAPES)
_R = "|".join(RELATIONS)
_PATTERNS = [
    ("add", rf"(?:add|put|also draw) an? (?P<c>{_C}) (?P<s>{_S})"),
    ("remove", rf"(?:remove|delete|take away) the (?P<c>{_C}) (?P<s>{_S})"),
    ("recolor", rf"(?:make|change|paint) the (?P<c>{_C}) (?P<s>{_S}) (?:to )?(?P<c2>{_C})"),
    ("replace", rf"(?:replace|swap) the (?P<c>{_C}) (?P<s>{_S}) (?:with|for) an? (?P<c2>{_C}) (?P<s2>{_S})"),
    ("move", rf"(?:move|shift) the (?P<c>{_C}) (?P<s>{_S}) (?P<r>{_R}) the (?P<rc>{_C}) (?P<rs>{_S})"),
    ("move", rf"(?:move|shift) the (?P<c>{_C}) (?P<s>{_S}) to the (?P<side>left|right|top|bottom)"),
]


def parse_edit(text: str) -> Edit | None:
    """Read an instruction; None when it is not one (partial credit is the caller's business)."""
    text = " ".join(text.lower().replace(".", " ").split())
    for op, pattern in _PATTERNS:
        m = re.search(pattern, text)
        if m:
            g = m.groupdict()
            return Edit(op, g["s"], g["c"], g.get("s2"), g.get("c2"), g.get("side"), g.get("r"),
                        g.get("rs"), g.get("rc"))
    return None


def _find(scene: Scene, color: str, shape: str) -> int | None:
    for i, obj in enumerate(scene.objects):
        if obj.color == color and obj.shape == shape:
            return i
    return None


def _side_ok(obj: Object, side: str, margin: float = 0.1) -> bool:
    """In the asked half, with a margin so a render cannot sit on the middle line."""
    return {"left": obj.x < 0.5 - margin, "right": obj.x > 0.5 + margin,
            "top": obj.y < 0.5 - margin, "bottom": obj.y > 0.5 + margin}[side]


def _relocate(scene: Scene, index: int, ok, rng: random.Random) -> Scene | None:
    others = [o for j, o in enumerate(scene.objects) if j != index]
    obj = scene.objects[index]
    for _ in range(400):
        h = obj.size / 2 + 0.03
        moved = replace(obj, x=round(rng.uniform(h, 1 - h), 4), y=round(rng.uniform(h, 1 - h), 4))
        if fits(moved, others) and ok(moved):
            objects = list(scene.objects)
            objects[index] = moved
            return replace(scene, objects=tuple(objects))
    return None


def apply_edit(scene: Scene, edit: Edit, rng: random.Random | None = None) -> Scene | None:
    """The scene after the edit, or None when it cannot apply (no such object, no room)."""
    rng = rng or random.Random(0)
    if edit.op == "add":
        others = list(scene.objects)
        for _ in range(400):
            size = rng.uniform(MIN_SIZE, 0.32)
            h = size / 2 + 0.03
            obj = Object(edit.shape, edit.color, round(rng.uniform(h, 1 - h), 4),
                         round(rng.uniform(h, 1 - h), 4), round(size, 4))
            if fits(obj, others):
                return replace(scene, objects=tuple(others + [obj]))
        return None
    index = _find(scene, edit.color, edit.shape)
    if index is None:
        return None
    objects = list(scene.objects)
    if edit.op == "remove":
        del objects[index]
        return replace(scene, objects=tuple(objects))
    if edit.op == "recolor":
        objects[index] = replace(objects[index], color=edit.new_color)
        return replace(scene, objects=tuple(objects))
    if edit.op == "replace":
        objects[index] = replace(objects[index], color=edit.new_color, shape=edit.new_shape)
        return replace(scene, objects=tuple(objects))
    if edit.relation:  # move relative to another object
        ref = _find(scene, edit.ref_color, edit.ref_shape)
        if ref is None or ref == index:
            return None
        anchor = scene_as_parsed(Scene((scene.objects[ref],))).objects[0]

        def ok(moved: Object) -> bool:
            return edit.relation in relations(scene_as_parsed(Scene((moved,))).objects[0], anchor)

        return _relocate(scene, index, ok, rng)
    return _relocate(scene, index, lambda moved: _side_ok(moved, edit.side), rng)


# Every "does this edit fix the scene" check (fixing_edit, the reflection suite and its scorer, the
# DiT's drawn edits) applies the edit with one seed, so they agree on where an added or moved object goes.
FIX_SEED = 1


def apply_fix(scene: Scene, edit: Edit) -> Scene | None:
    """:func:`apply_edit` as every fix check applies it (seeded with :data:`FIX_SEED`)."""
    return apply_edit(scene, edit, random.Random(FIX_SEED))


def _candidates(scene: Scene, target: Target) -> list[Edit]:
    """Every single edit worth trying on ``scene`` for ``target``, the simplest kinds first."""
    edits: list[Edit] = []
    present = [(o.shape, o.color) for o in scene.objects]
    for req in target.include:  # add what is asked (in its colour, or the colour of its kind here)
        colours = [req.color] if req.color else [c for s, c in present if s == req.shape][:1] or list(COLORS)
        edits += [Edit("add", req.shape, c) for c in colours]
    unique = list(dict.fromkeys(present))
    edits += [Edit("remove", s, c) for s, c in unique]
    edits += [Edit("recolor", s, c, new_color=c2) for s, c in unique for c2 in COLORS if c2 != c]
    edits += [Edit("replace", s, c, new_shape=s2, new_color=c) for s, c in unique for s2 in SHAPES if s2 != s]
    for req in target.include:
        if req.position:
            relation, ref = req.position
            anchors = [(s, c) for s, c in unique if s == target.include[ref].shape
                       and target.include[ref].color in (None, c)]
            edits += [Edit("move", s, c, relation=relation, ref_shape=rs, ref_color=rc)
                      for s, c in unique if s == req.shape and req.color in (None, c) for rs, rc in anchors]
    return edits


def _progress(scene: Scene, target: Target) -> int:
    """How much of a target a scene meets: its includes met, less its excludes broken."""
    parsed = scene_as_parsed(scene)
    return len(check(parsed, target).matched) - sum(parsed.count(r.shape) >= r.count for r in target.exclude)


def fixing_edit(scene: Scene, target: Target, partial: bool = False) -> Edit | None:
    """One edit after which ``scene`` meets ``target`` (the first found, simplest kinds first):
    how a drawing judged against its request is corrected. When no single edit does, None; or,
    with ``partial``, the first of the edits that meet most more of the target (a first step)."""
    best, best_progress = None, _progress(scene, target) if partial else 0
    for edit in _candidates(scene, target):
        fixed = apply_fix(scene, edit)
        if fixed is None:
            continue
        if satisfies(fixed, target):
            return edit
        if partial and (progress := _progress(fixed, target)) > best_progress:
            best, best_progress = edit, progress
    return best
