"""ShapeWorld: a checkable synthetic world of coloured shapes.

Plain numpy / PIL / OpenCV: it knows nothing of torch models, training or the CLI.

* :mod:`.scene` — scenes, palette, random placement
* :mod:`.render` — scenes to RGB arrays at any resolution (and thinkgen's own 5x7 font)
* :mod:`.parse` — the rule model: images back to objects and text
* :mod:`.captions` — canonical and varied English
* :mod:`.rules` — targets and GenEval's pass rules transposed
* :mod:`.facts` — the fact base for reasoning prompts (WISE-like categories)
* :mod:`.edits` — the edit-instruction grammar (editing, reflection)
* :mod:`.suites` — the five scenario suites and their scorers
* :mod:`.corpora` — the thinker's knowledge corpus and think-then-rewrite examples
"""

from .captions import canonical, describe, target_of
from .parse import ParsedObject, ParsedScene, parse
from .render import render
from .rules import Requirement, Target, check
from .scene import BASIC_SHAPES, COLORS, SHAPES, Object, Scene, SceneSampler
from .suites import SUITES, Item, build, score_image, score_instruction

__all__ = [
    "BASIC_SHAPES", "COLORS", "SHAPES", "SUITES", "Item", "Object", "ParsedObject", "ParsedScene",
    "Requirement", "Scene", "SceneSampler", "Target", "build", "canonical", "check", "describe",
    "parse", "render", "score_image", "score_instruction", "target_of",
]
