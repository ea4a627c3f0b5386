"""Rewards for reinforcement learning: a registry of functions that score what the system made.

A reward function takes the items (what was asked, with its exact target), the images drawn for
them (PIL; ``None`` where a scenario draws nothing, e.g. reflection) and the thinker's rewritten
instructions, and returns one float per sample::

    @register_reward("my_clip_score")
    def my_clip_score(items, images, rewrites) -> list[float]: ...

Configs name rewards with weights (``rl.rewards: {shapeworld: 1.0, instruction: 0.2}``); a name
that is not registered may be an import path ``package.module:function``, which is how a real
reward model (an OCR engine, a CLIP-like similarity, a VLM judge) plugs in. An import path runs
whatever code it names, so a config must opt in with ``rl.allow_external_rewards: true``.

The ShapeWorld rule rewards follow ThinkGen's five scenarios: composition and reasoning pass or
fail GenEval's rule on the parsed image; text rendering scores the read string by normalised
edit distance (OCR word accuracy, made dense); editing scores the multiset F1 of the objects;
reflection scores the written correction against the reference by normalised edit distance.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from .world import suites
from .world.parse import parse
from .world.rules import check

RewardFn = Callable[[Sequence[suites.Item], Sequence[Image.Image | None], Sequence[str]], list[float]]
REWARDS: dict[str, RewardFn] = {}


def register_reward(name: str) -> Callable[[RewardFn], RewardFn]:
    def decorate(function: RewardFn) -> RewardFn:
        REWARDS[name] = function
        return function

    return decorate


def get_reward(name: str, allow_external: bool = False) -> RewardFn:
    """A registered reward, or ``package.module:function`` when ``allow_external``."""
    if name in REWARDS:
        return REWARDS[name]
    if ":" in name:
        if not allow_external:
            raise ValueError(f"{name!r} is an import path: it would import and run any code it names; set "
                             "rl.allow_external_rewards: true to allow reward functions from outside thinkgen")
        module, _, attribute = name.partition(":")
        try:
            function = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError, ValueError) as error:
            raise ValueError(f"cannot import reward {name!r}: {error}") from None
        if not callable(function):
            raise ValueError(f"reward {name!r} is not a function")
        return function
    raise ValueError(f"unknown reward {name!r}; registered: {sorted(REWARDS)} (or use 'module:function')")


def _rule(item: suites.Item, image: Image.Image | None, rewrite: str, partial: bool) -> float:
    if item.suite == "reflection":
        return suites.score_instruction(item, rewrite).details["ned"]
    if image is None:
        raise ValueError(f"a {item.suite} item needs an image to score")
    parsed = parse(image)
    if item.suite in ("composition", "reasoning"):
        verdict = check(parsed, item.target)
        if verdict.correct or not partial:
            return float(verdict.correct)
        return 0.5 * len(verdict.matched) / max(1, len(item.target.include))
    score = suites.score_image(item, parsed)
    return score.details["ned"] if item.suite == "text" else score.details["f1"]


@register_reward("shapeworld")
def shapeworld_reward(items, images, rewrites) -> list[float]:
    """ThinkGen's per-scenario rule rewards on ShapeWorld (pass/fail for composition and reasoning)."""
    return [_rule(item, image, rewrite, partial=False) for item, image, rewrite in zip(items, images, rewrites,
                                                                                       strict=True)]


@register_reward("shapeworld_partial")
def shapeworld_partial_reward(items, images, rewrites) -> list[float]:
    """As ``shapeworld``, but a failed composition/reasoning image earns half the share of its
    include requirements that were met (a denser signal)."""
    return [_rule(item, image, rewrite, partial=True) for item, image, rewrite in zip(items, images, rewrites,
                                                                                      strict=True)]


@register_reward("brightness")
def brightness_reward(items, images, rewrites) -> list[float]:
    """Mean pixel value in [0, 1]: not a quality signal but a dense one, for checking that a stage
    learns at all (every image scores differently, so no group is ever flat)."""
    return [float(np.asarray(image, dtype=np.float32).mean()) / 255 for image in images]


@register_reward("instruction")
def instruction_reward(items, images, rewrites) -> list[float]:
    """Text only (no image): normalised edit-distance similarity of the rewrite to the item's
    reference instruction. A cheap auxiliary signal; not image-grounded."""
    return [suites.ned(" ".join(r.lower().split()), item.canonical) for item, r in zip(items, rewrites, strict=True)]


MODEL_REWARDS = ("judge", "scorer")  # built from their config sections (thinkgen.reward_models)


class WeightedReward:
    """A weighted sum of named rewards; also reports each component's mean. ``models`` holds the
    settings of the reward models (``judge``, ``scorer``) the weights may name."""

    def __init__(self, weights: dict[str, float], allow_external: bool = False,
                 models: dict[str, dict | None] | None = None) -> None:
        from . import reward_models

        if not weights:
            raise ValueError("at least one reward is needed")
        self.weights = dict(weights)
        self.functions = {name: reward_models.build(name, (models or {}).get(name)) if name in MODEL_REWARDS
                          else get_reward(name, allow_external) for name in weights}

    @property
    def needs_images(self) -> bool:
        return any(name != "instruction" for name in self.weights)

    def __call__(self, items, images, rewrites) -> tuple[list[float], dict[str, float]]:
        total = [0.0] * len(items)
        parts = {}
        for name, function in self.functions.items():
            values = function(items, images, rewrites)
            if len(values) != len(items):
                raise ValueError(f"reward {name!r} returned {len(values)} values for {len(items)} samples")
            parts[name] = sum(values) / len(values)
            total = [t + self.weights[name] * float(v) for t, v in zip(total, values, strict=True)]
        return total, parts
