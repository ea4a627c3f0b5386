"""Targets and GenEval's pass rules, transposed to ShapeWorld.

A :class:`Target` is GenEval's metadata in ShapeWorld terms: ``include`` requirements (a shape
is GenEval's *class*, with a count, an optional colour and an optional position relative to an
earlier requirement) and ``exclude`` requirements (for counting: "not N + 1 of them"), plus the
text and background that other suites ask for. :func:`check` applies GenEval's rules:

* objects are ranked by detection confidence (here the parser's shape IoU) and those below
  ``min_confidence`` are not detected;
* an include needs at least ``count`` objects of its class; its first ``count`` (by confidence)
  must all have the colour, and each must stand in the relation to every object matched by the
  requirement it refers to;
* an exclude fails when ``count`` or more objects of its class are detected;
* relations: centre offset, shrunk by 0.1 x the two boxes' summed sizes per axis, normalised by
  the offset's length; "left of" when dx < -0.5, "right of" dx > 0.5, "above" dy < -0.5,
  "below" dy > 0.5.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .parse import ParsedObject, ParsedScene
from .scene import Object, Scene

RELATIONS = ("left of", "right of", "above", "below")
POSITION_THRESHOLD = 0.1


@dataclass(frozen=True)
class Requirement:
    shape: str
    count: int = 1
    color: str | None = None
    position: tuple[str, int] | None = None  # (relation, index of the include it refers to)

    def to_geneval(self) -> dict:
        out: dict = {"class": self.shape, "count": self.count}
        if self.color:
            out["color"] = self.color
        if self.position:
            out["position"] = list(self.position)
        return out


@dataclass(frozen=True)
class Target:
    include: tuple[Requirement, ...] = ()
    exclude: tuple[Requirement, ...] = ()
    text: str | None = None
    background: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Target:
        def req(r: dict) -> Requirement:
            return Requirement(r["shape"], r.get("count", 1), r.get("color"),
                               tuple(r["position"]) if r.get("position") else None)

        return cls(tuple(req(r) for r in data.get("include", ())), tuple(req(r) for r in data.get("exclude", ())),
                   data.get("text"), data.get("background"))


def relations(a: ParsedObject, b: ParsedObject, threshold: float = POSITION_THRESHOLD,
              cut: float = 0.5) -> set[str]:
    """Relations of ``a`` relative to ``b`` by GenEval's rule (``threshold``, ``cut`` as GenEval;
    scene generators ask for a margin with larger values so renders are never borderline)."""
    box_a, box_b = np.array(a.box, dtype=float), np.array(b.box, dtype=float)
    center_a, center_b = (box_a[:2] + box_a[2:]) / 2, (box_b[:2] + box_b[2:]) / 2
    dim_a, dim_b = box_a[2:] - box_a[:2], box_b[2:] - box_b[:2]
    offset = center_a - center_b
    revised = np.maximum(np.abs(offset) - threshold * (dim_a + dim_b), 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(offset)
    found = set()
    if dx < -cut:
        found.add("left of")
    if dx > cut:
        found.add("right of")
    if dy < -cut:
        found.add("above")
    if dy > cut:
        found.add("below")
    return found


@dataclass
class Verdict:
    correct: bool
    reason: str = ""
    matched: list[int] = field(default_factory=list)  # how many include requirements were met

    def to_dict(self) -> dict:
        return asdict(self)


def check(parsed: ParsedScene, target: Target, min_confidence: float = 0.5) -> Verdict:
    """GenEval's pass/fail rule for one image (see the module docstring)."""
    detected: dict[str, list[ParsedObject]] = {}
    for obj in sorted(parsed.objects, key=lambda o: -o.confidence):
        if obj.confidence >= min_confidence:
            detected.setdefault(obj.shape, []).append(obj)
    groups: list[list[ParsedObject] | None] = []
    correct, reasons, met = True, [], []
    for i, req in enumerate(target.include):
        found = detected.get(req.shape, [])[: req.count]
        ok = len(found) >= req.count
        if not ok:
            reasons.append(f"expected {req.count} {req.shape}, found {len(found)}")
        elif req.color is not None and any(o.color != req.color for o in found):
            ok = False
            reasons.append(f"expected {req.color} {req.shape}, found {[o.color for o in found]}")
        elif req.position is not None:
            relation, ref = req.position
            others = groups[ref] if ref < len(groups) else None
            if others is None:
                ok = False
                reasons.append(f"no {target.include[ref].shape} to be {relation}")
            elif not all(relation in relations(o, other) for o in found for other in others):
                ok = False
                reasons.append(f"{req.shape} not {relation} {target.include[ref].shape}")
        groups.append(found if ok else None)
        correct &= ok
        if ok:
            met.append(i)
    for req in target.exclude:
        if len(detected.get(req.shape, [])) >= req.count:
            correct = False
            reasons.append(f"expected fewer than {req.count} {req.shape}")
    if target.text is not None and parsed.text != target.text:
        correct = False
        reasons.append(f"expected text {target.text!r}, read {parsed.text!r}")
    if target.background is not None and parsed.background != target.background:
        correct = False
        reasons.append(f"expected a {target.background} background, found {parsed.background}")
    return Verdict(correct, "; ".join(reasons), met)


def scene_as_parsed(scene: Scene) -> ParsedScene:
    """What a perfect parser would read from a scene (for rule checks without rendering)."""
    objects = [ParsedObject(o.shape, o.color, o.box, (o.x, o.y), o.size * o.size, 1.0) for o in scene.objects]
    return ParsedScene(objects, scene.text, scene.background)


def parsed_as_scene(parsed: ParsedScene, min_confidence: float = 0.5) -> Scene:
    """A scene of what the parser read (objects it is sure of, as :func:`check` counts them), so
    edits and rules apply to a drawing as to a generated scene."""
    objects = tuple(Object(o.shape, o.color, o.center[0], o.center[1], o.size)
                    for o in parsed.objects if o.confidence >= min_confidence)
    return Scene(objects, parsed.background, parsed.text)


def _meets(obj: ParsedObject, req: Requirement) -> bool:
    return obj.shape == req.shape and req.color in (None, obj.color)


def satisfies(scene: Scene, target: Target, margin: bool = False) -> bool:
    """Whether a scene meets a target; ``margin`` also demands every asked relation hold with
    room to spare (threshold 0.15, cut 0.65), so that rendering and parsing cannot flip it."""
    if not check(scene_as_parsed(scene), target).correct:
        return False
    if margin:
        parsed = scene_as_parsed(scene).objects
        for req in target.include:
            if req.position:
                relation, ref = req.position
                subjects = [o for o in parsed if _meets(o, req)]
                anchors = [o for o in parsed if _meets(o, target.include[ref])]
                if not all(relation in relations(a, b, 0.15, 0.65) for a in subjects for b in anchors):
                    return False
    return True


INVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def _statements(target: Target) -> set[tuple]:
    """What a target's words assert, as facts: each shape is there (with its colour, if named), and
    each relation, read both ways round ("a square left of a triangle" = "a triangle right of a square")."""
    facts: set[tuple] = set()
    for req in target.include:
        facts.add(("has", req.shape, None))
        if req.color:
            facts.add(("has", req.shape, req.color))
        if req.position:
            relation, index = req.position
            other = target.include[index].shape
            facts |= {("rel", req.shape, relation, other), ("rel", other, INVERSE[relation], req.shape)}
    return facts


def entails(caption: Target, statement: Target) -> bool:
    """Whether a caption says all that ``statement`` says (perhaps more, and in another order):
    "two red circles and a yellow square" entails "a red circle and a yellow square"; "a square and
    a triangle" does not entail "a square left of a triangle", even when its scene shows one.
    Counts and excludes are not compared (held-out statements ask for one of each)."""
    return _statements(statement) <= _statements(caption)
