"""Render ShapeWorld scenes to RGB arrays at any resolution, deterministically.

Circles are drawn with a distance test, not ``cv2.circle`` (which draws diamonds at ~10 px);
polygons are filled with OpenCV at 8x sub-pixel precision. Text uses thinkgen's own 5x7 pixel
font, scaled by a whole number so every glyph stays exactly readable.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .scene import BACKGROUNDS, COLORS, INK, Object, Scene

# Our own 5x7 font: one string of 7 rows of 5 columns per character ("#" = ink).
FONT_ROWS = {
    "A": ".###.#...##...#######...##...##...#", "B": "####.#...##...#####.#...##...#####.",
    "C": ".###.#...##....#....#....#...#.###.", "D": "###..#..#.#...##...##...##..#.###..",
    "E": "######....#....####.#....#....#####", "F": "######....#....####.#....#....#....",
    "G": ".###.#...##....#.####...##...#.####", "H": "#...##...##...#######...##...##...#",
    "I": ".###...#....#....#....#....#...###.", "J": "..###...#....#....#....#.#..#..##..",
    "K": "#...##..#.#.#..##...#.#..#..#.#...#", "L": "#....#....#....#....#....#....#####",
    "M": "#...###.###.#.##.#.##...##...##...#", "N": "#...###..##.#.##..###...##...##...#",
    "O": ".###.#...##...##...##...##...#.###.", "P": "####.#...##...#####.#....#....#....",
    "Q": ".###.#...##...##...##.#.##..#..##.#", "R": "####.#...##...#####.#.#..#..#.#...#",
    "S": ".#####....#.....###.....#....#####.", "T": "#####..#....#....#....#....#....#..",
    "U": "#...##...##...##...##...##...#.###.", "V": "#...##...##...##...##...#.#.#...#..",
    "W": "#...##...##...##.#.##.#.##.#.#.#.#.", "X": "#...##...#.#.#...#...#.#.#...##...#",
    "Y": "#...##...#.#.#...#....#....#....#..", "Z": "#####....#...#...#...#...#....#####",
    "0": ".###.#...##..###.#.###..##...#.###.", "1": "..#...##....#....#....#....#...###.",
    "2": ".###.#...#....#...#...#...#...#####", "3": "#####...#...#.....#.....##...#.###.",
    "4": "...#...##..#.#.#..#.#####...#....#.", "5": "######....####.....#....##...#.###.",
    "6": "..##..#...#....####.#...##...#.###.", "7": "#####....#...#...#...#....#....#...",
    "8": ".###.#...##...#.###.#...##...#.###.", "9": ".###.#...##...#.####....#...#..##..",
}
GLYPHS: dict[str, np.ndarray] = {}
for _char, _rows in FONT_ROWS.items():
    GLYPHS[_char] = np.array([c == "#" for c in _rows], dtype=bool).reshape(7, 5)

SUBPIXEL = 3  # cv2.fillPoly shift: coordinates in 1/8 pixel


def star_points(cx: float, cy: float, radius: float) -> np.ndarray:
    """A five-pointed star, one point up; inner radius 0.45 of the outer."""
    points = []
    for i in range(10):
        r = radius if i % 2 == 0 else 0.45 * radius
        angle = -math.pi / 2 + i * math.pi / 5
        points.append((cx + r * math.cos(angle), cy + r * math.sin(angle)))
    return np.array(points)


def shape_mask(obj: Object, resolution: int) -> np.ndarray:
    """Boolean (H, W) mask of one object at ``resolution`` pixels per side."""
    s = obj.size * resolution
    cx, cy = obj.x * resolution, obj.y * resolution
    mask = np.zeros((resolution, resolution), dtype=np.uint8)
    if obj.shape == "circle":
        ys, xs = np.mgrid[0:resolution, 0:resolution] + 0.5  # pixel centres
        return (xs - cx) ** 2 + (ys - cy) ** 2 <= (s / 2) ** 2
    if obj.shape == "square":
        ys, xs = np.mgrid[0:resolution, 0:resolution] + 0.5
        return (np.abs(xs - cx) <= s / 2) & (np.abs(ys - cy) <= s / 2)
    if obj.shape == "triangle":  # apex up, base along the bottom of the box
        points = np.array([(cx, cy - s / 2), (cx + s / 2, cy + s / 2), (cx - s / 2, cy + s / 2)])
    else:  # star
        points = star_points(cx, cy + 0.05 * s, s / 2)
    fixed = np.round((points - 0.5) * (1 << SUBPIXEL)).astype(np.int32)  # pixel centres at +0.5
    cv2.fillPoly(mask, [fixed], 1, lineType=cv2.LINE_8, shift=SUBPIXEL)
    return mask.astype(bool)


def text_layout(text: str, resolution: int, with_objects: bool) -> tuple[int, int, int]:
    """(scale, left, top) of a text line: centred; in the bottom band when objects share the scene."""
    width_units = 6 * len(text) - 1
    scale = max(1, int(resolution * 0.85 // (6 * 4)))  # four characters always fit
    left = (resolution - width_units * scale) // 2
    if with_objects:
        top = resolution - 7 * scale - max(1, resolution // 32)
    else:
        top = (resolution - 7 * scale) // 2
    return scale, left, top


def text_mask(text: str, resolution: int, with_objects: bool = False) -> np.ndarray:
    mask = np.zeros((resolution, resolution), dtype=bool)
    if not text:
        return mask
    scale, left, top = text_layout(text, resolution, with_objects)
    for i, char in enumerate(text):
        glyph = np.kron(GLYPHS[char], np.ones((scale, scale), dtype=bool))
        x = left + 6 * i * scale
        mask[top : top + 7 * scale, x : x + 5 * scale] |= glyph
    return mask


def render(scene: Scene, resolution: int = 32, antialias: bool = False) -> np.ndarray:
    """RGB ``uint8`` array ``(resolution, resolution, 3)``. Anti-aliasing renders at 4x and
    averages down (OpenCV's area interpolation)."""
    if antialias:
        big = render(scene, resolution * 4, antialias=False)
        return cv2.resize(big, (resolution, resolution), interpolation=cv2.INTER_AREA)
    image = np.empty((resolution, resolution, 3), dtype=np.uint8)
    image[:] = BACKGROUNDS[scene.background]
    for obj in scene.objects:
        image[shape_mask(obj, resolution)] = COLORS[obj.color]
    if scene.text:
        image[text_mask(scene.text, resolution, bool(scene.objects))] = INK[scene.ink]
    return image
