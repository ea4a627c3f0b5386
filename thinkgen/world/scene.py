"""ShapeWorld scenes: coloured shapes (and optional short text) on a plain background.

Coordinates are resolution-free: an object's centre ``(x, y)`` and its ``size`` (the side of the
square box the shape fills) are fractions of the image side, so one scene renders at any size.
``y`` grows downwards, as in images.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field

SHAPES = ("circle", "square", "triangle", "star")
BASIC_SHAPES = ("circle", "square", "triangle")  # the ones a 32 px tiny model is asked to draw

# Well separated in RGB (every pair at least ~100 apart), and far from the backgrounds and ink.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (240, 220, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "purple": (140, 40, 170),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (255, 255, 255),
    "gray": (160, 160, 160),
    "black": (0, 0, 0),
}
INK = {"black": (0, 0, 0), "white": (255, 255, 255)}  # text is black, or white on black

SIZES = {"small": 0.26, "medium": 0.32, "large": 0.40}  # named sizes, fractions of the side
MIN_SIZE, MAX_SIZE = 0.24, 0.42  # objects drawn outside this range are hard to read at 32 px
MIN_GAP = 0.06  # free space between boxes, so touching objects never merge when parsed


@dataclass(frozen=True)
class Object:
    shape: str
    color: str
    x: float  # centre, fraction of the width
    y: float  # centre, fraction of the height
    size: float = SIZES["medium"]

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; shapes are {SHAPES}")
        if self.color not in COLORS:
            raise ValueError(f"unknown colour {self.color!r}; colours are {tuple(COLORS)}")

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the square the shape fills."""
        h = self.size / 2
        return (self.x - h, self.y - h, self.x + h, self.y + h)


@dataclass(frozen=True)
class Scene:
    objects: tuple[Object, ...] = ()
    background: str = "white"
    text: str = ""  # 0-4 characters, A-Z and 0-9

    def __post_init__(self) -> None:
        if self.background not in BACKGROUNDS:
            raise ValueError(f"unknown background {self.background!r}")
        if len(self.text) > 4 or any(c not in GLYPH_CHARS for c in self.text):
            raise ValueError(f"text must be 0-4 characters of A-Z 0-9, got {self.text!r}")
        object.__setattr__(self, "objects", tuple(self.objects))

    @property
    def ink(self) -> str:
        return "white" if self.background == "black" else "black"

    def to_dict(self) -> dict:
        return {"objects": [asdict(o) for o in self.objects], "background": self.background, "text": self.text}

    @classmethod
    def from_dict(cls, data: dict) -> Scene:
        return cls(tuple(Object(**o) for o in data.get("objects", [])), data.get("background", "white"),
                   data.get("text", ""))


GLYPH_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _boxes_apart(a: Object, b: Object, gap: float = MIN_GAP) -> bool:
    ax0, ay0, ax1, ay1 = a.box
    bx0, by0, bx1, by1 = b.box
    return ax1 + gap <= bx0 or bx1 + gap <= ax0 or ay1 + gap <= by0 or by1 + gap <= ay0


def fits(obj: Object, others: list[Object] | tuple[Object, ...], margin: float = 0.03) -> bool:
    """Inside the image (with a margin) and clear of every other object."""
    x0, y0, x1, y1 = obj.box
    inside = x0 >= margin and y0 >= margin and x1 <= 1 - margin and y1 <= 1 - margin
    return inside and all(_boxes_apart(obj, o) for o in others)


def place(rng: random.Random, specs: list[tuple[str, str]], sizes: tuple[float, float] = (MIN_SIZE, MAX_SIZE),
          tries: int = 200, text_band: bool = False) -> list[Object] | None:
    """Random non-overlapping positions for ``(shape, colour)`` specs, or None if none was found.

    ``text_band`` keeps the lower quarter free for text. Smaller sizes are tried when crowded.
    """
    for attempt in range(tries):
        shrink = 1.0 - 0.4 * attempt / tries  # crowded scenes get smaller objects
        placed: list[Object] = []
        for shape, color in specs:
            for _ in range(50):
                size = rng.uniform(sizes[0], max(sizes[0], sizes[1] * shrink))
                half = size / 2 + 0.03
                bottom = 0.72 if text_band else 1.0
                if bottom - 2 * half <= 0:
                    break
                x = rng.uniform(half, 1 - half)
                y = rng.uniform(half, bottom - half)
                obj = Object(shape, color, round(x, 4), round(y, 4), round(size, 4))
                if fits(obj, placed):
                    placed.append(obj)
                    break
            else:
                break
        if len(placed) == len(specs):
            return placed
    return None


@dataclass
class SceneSampler:
    """Random scenes of 1..max_objects objects for parser tests, corpora and pretraining data."""

    max_objects: int = 4
    shapes: tuple[str, ...] = SHAPES
    colors: tuple[str, ...] = tuple(COLORS)
    backgrounds: tuple[str, ...] = ("white",)
    text_probability: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def __call__(self) -> Scene:
        rng = self.rng
        while True:
            n = rng.randint(1, self.max_objects)
            specs = [(rng.choice(self.shapes), rng.choice(self.colors)) for _ in range(n)]
            text = ""
            if rng.random() < self.text_probability:
                text = "".join(rng.choice(GLYPH_CHARS) for _ in range(rng.randint(1, 4)))
            objects = place(rng, specs, text_band=bool(text))
            if objects is not None:
                return Scene(tuple(objects), rng.choice(self.backgrounds), text)
