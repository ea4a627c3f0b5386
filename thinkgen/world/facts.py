"""The fact base behind ShapeWorld's reasoning prompts (WISE-like).

Each fact links a phrase that needs knowledge ("a ripe banana") to something drawable: a colour,
a count (1-4), a shape, or a direction (a relation between two objects). Facts are grouped in
WISE's six categories so scores can use WISE's weighting.

Facts are split into a *supervised* group and a *held-out* group. The thinker's knowledge corpus
states every fact; think-then-rewrite examples use only the supervised group, so the held-out
facts are known but never practised for drawing (the setting in which the papers' reinforcement
learning helps). The split is fixed: every third fact of each kind is held out.
"""

from __future__ import annotations

from dataclasses import dataclass

CATEGORIES = ("culture", "time", "space", "biology", "physics", "chemistry")
WISE_WEIGHTS = {"culture": 0.4, "time": 0.167, "space": 0.133, "biology": 0.1, "physics": 0.1,
                "chemistry": 0.1}
DIRECTIONS = {"left": "left of", "right": "right of", "up": "above", "down": "below"}


@dataclass(frozen=True)
class Fact:
    id: str
    kind: str  # "color" | "count" | "shape" | "direction"
    category: str  # one of CATEGORIES
    subject: str  # the phrase used in prompts
    answer: str  # colour name, count as a digit, shape name, or a DIRECTIONS key
    statement: str  # one true sentence, for the knowledge corpus and the reasoning trace
    group: str = "supervised"  # or "held_out"

    @property
    def value(self) -> int | str:
        return int(self.answer) if self.kind == "count" else self.answer


# (category, subject, answer, statement); statements are plain and reusable in reasoning traces.
_COLOR = [
    ("biology", "a ripe banana", "yellow", "A ripe banana is yellow."),
    ("biology", "fresh grass", "green", "Fresh grass is green."),
    ("biology", "a carrot", "orange", "A carrot is orange."),
    ("biology", "an eggplant", "purple", "An eggplant is purple."),
    ("biology", "a ripe tomato", "red", "A ripe tomato is red."),
    ("biology", "a lemon", "yellow", "A lemon is yellow."),
    ("biology", "a ripe strawberry", "red", "A ripe strawberry is red."),
    ("biology", "a blueberry", "blue", "A blueberry is blue."),
    ("biology", "a frog", "green", "A frog is green."),
    ("culture", "a fire truck", "red", "A fire truck is red."),
    ("culture", "a school bus", "yellow", "A school bus is yellow."),
    ("culture", "a stop sign", "red", "A stop sign is red."),
    ("culture", "the traffic light that means go", "green", "The traffic light that means go is green."),
    ("culture", "the Dutch football shirt", "orange", "The Dutch football shirt is orange."),
    ("culture", "a New York taxi", "yellow", "A New York taxi is yellow."),
    ("culture", "a Halloween pumpkin", "orange", "A Halloween pumpkin is orange."),
    ("time", "maple leaves in autumn", "orange", "Maple leaves in autumn are orange."),
    ("time", "tree leaves in summer", "green", "Tree leaves in summer are green."),
    ("time", "the sky at noon on a clear day", "blue", "The sky at noon on a clear day is blue."),
    ("space", "the planet Mars", "red", "The planet Mars looks red."),
    ("space", "the Earth's oceans seen from space", "blue", "The Earth's oceans seen from space are blue."),
    ("physics", "the outermost band of a rainbow", "red", "The outermost band of a rainbow is red."),
    ("physics", "the innermost band of a rainbow", "purple", "The innermost band of a rainbow is violet, a purple."),
    ("physics", "the light of a sodium street lamp", "orange", "The light of a sodium street lamp is orange."),
    ("chemistry", "rust", "orange", "Rust is orange."),
    ("chemistry", "chlorophyll", "green", "Chlorophyll is green."),
    ("chemistry", "copper sulfate solution", "blue", "Copper sulfate solution is blue."),
    ("chemistry", "iodine vapour", "purple", "Iodine vapour is purple."),
    ("chemistry", "sulfur", "yellow", "Sulfur is yellow."),
    ("chemistry", "litmus paper in acid", "red", "Litmus paper in acid turns red."),
]
_COUNT = [
    ("biology", "a bird has legs", "2", "A bird has two legs."),
    ("biology", "a dog has legs", "4", "A dog has four legs."),
    ("biology", "a dromedary camel has humps", "1", "A dromedary camel has one hump."),
    ("biology", "a person has eyes", "2", "A person has two eyes."),
    ("biology", "a horse has legs", "4", "A horse has four legs."),
    ("culture", "a tricycle has wheels", "3", "A tricycle has three wheels."),
    ("culture", "a bicycle has wheels", "2", "A bicycle has two wheels."),
    ("culture", "a car has wheels", "4", "A car has four wheels."),
    ("culture", "a unicycle has wheels", "1", "A unicycle has one wheel."),
    ("culture", "there are musketeers in the famous novel", "3", "There are three musketeers in the famous novel."),
    ("culture", "a violin has strings", "4", "A violin has four strings."),
    ("culture", "two plus one makes", "3", "Two plus one makes three."),
    ("culture", "five minus one makes", "4", "Five minus one makes four."),
    ("culture", "half of four makes", "2", "Half of four makes two."),
    ("time", "there are seasons in a year", "4", "There are four seasons in a year."),
    ("time", "there are days in a weekend", "2", "There are two days in a weekend."),
    ("time", "there are hours from one to four o'clock", "3", "There are three hours from one to four o'clock."),
    ("time", "a football match has halves", "2", "A football match has two halves."),
    ("space", "a triangle has corners", "3", "A triangle has three corners."),
    ("space", "the Earth has moons", "1", "The Earth has one moon."),
    ("space", "the Earth has poles", "2", "The Earth has two poles."),
    ("space", "a square has sides", "4", "A square has four sides."),
    ("physics", "a magnet has poles", "2", "A magnet has two poles."),
    ("physics", "there are common states of matter", "3", "There are three common states of matter."),
    ("chemistry", "a water molecule has hydrogen atoms", "2", "A water molecule has two hydrogen atoms."),
    ("chemistry", "a methane molecule has hydrogen atoms", "4", "A methane molecule has four hydrogen atoms."),
    ("chemistry", "an ozone molecule has atoms", "3", "An ozone molecule has three atoms."),
    ("chemistry", "a water molecule has oxygen atoms", "1", "A water molecule has one oxygen atom."),
]
_SHAPE = [
    ("culture", "a coin", "circle", "A coin is round, a circle."),
    ("culture", "a yield sign", "triangle", "A yield sign is a triangle."),
    ("culture", "a square on a chessboard", "square", "A square on a chessboard is a square."),
    ("culture", "a slice of pizza", "triangle", "A slice of pizza is a triangle."),
    ("culture", "a sheriff's badge", "star", "A sheriff's badge is a star."),
    ("time", "the face of a wall clock", "circle", "The face of a wall clock is a circle."),
    ("time", "a page of a wall calendar", "square", "A page of a wall calendar is a square."),
    ("space", "the full moon", "circle", "The full moon is a circle."),
    ("space", "the pyramids of Giza seen from the side", "triangle", "The pyramids of Giza seen from the side are triangles."),
    ("biology", "a starfish", "star", "A starfish is a star."),
    ("biology", "the pupil of a human eye", "circle", "The pupil of a human eye is a circle."),
    ("physics", "a glass prism seen from the end", "triangle", "A glass prism seen from the end is a triangle."),
    ("physics", "a ripple from a stone in a pond", "circle", "A ripple from a stone in a pond is a circle."),
    ("chemistry", "a grain of table salt", "square", "A grain of table salt is a square cube."),
    ("chemistry", "a benzene ring drawn as a circle", "circle", "A benzene ring is drawn as a circle."),
]
_DIRECTION = [
    ("space", "where the sun rises on a map", "right", "The sun rises in the east, the right side of a map."),
    ("space", "where the sun sets on a map", "left", "The sun sets in the west, the left side of a map."),
    ("space", "towards the North Pole on a map", "up", "The North Pole is at the top of a map."),
    ("space", "towards the South Pole on a map", "down", "The South Pole is at the bottom of a map."),
    ("physics", "the way an apple falls", "down", "An apple falls down."),
    ("physics", "the way a helium balloon floats", "up", "A helium balloon floats up."),
    ("culture", "where an English sentence begins", "left", "An English sentence begins on the left."),
    ("culture", "where an English sentence ends", "right", "An English sentence ends on the right."),
    ("time", "where the clock's hand points at three o'clock", "right", "At three o'clock the hand points right."),
    ("time", "where the clock's hand points at nine o'clock", "left", "At nine o'clock the hand points left."),
]


def _build() -> tuple[Fact, ...]:
    facts = []
    for kind, table in (("color", _COLOR), ("count", _COUNT), ("shape", _SHAPE), ("direction", _DIRECTION)):
        for index, (category, subject, answer, statement) in enumerate(table):
            group = "held_out" if index % 3 == 2 else "supervised"
            facts.append(Fact(f"{kind}-{len(facts):03d}", kind, category, subject, answer, statement, group))
    return tuple(facts)


FACTS: tuple[Fact, ...] = _build()


def facts(kind: str | None = None, group: str | None = None, shapes: tuple[str, ...] | None = None) -> list[Fact]:
    """Facts filtered by kind, group, and (for shape facts) the drawable shapes."""
    return [f for f in FACTS if (kind is None or f.kind == kind) and (group is None or f.group == group)
            and (shapes is None or f.kind != "shape" or f.answer in shapes)]


def questions(fact: Fact) -> list[str]:
    """Ways to ask for a fact, for the knowledge corpus."""
    s = fact.subject
    if fact.kind == "color":
        return [f"What colour is {s}?", f"Which colour does {s} have?", f"Tell me the colour of {s}."]
    if fact.kind == "count":
        return [f"How many? {s}.", f"Complete with a number: {s} ...", f"Count: {s}."]
    if fact.kind == "shape":
        return [f"What shape is {s}?", f"Which shape does {s} have?", f"Describe the shape of {s}."]
    return [f"Which direction is {s}?", f"Where is {s}?", f"Point {s}."]
