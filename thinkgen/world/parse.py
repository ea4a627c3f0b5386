"""The rule model: read a ShapeWorld image back into objects and text, exactly.

1. Every pixel takes the nearest colour among the palette, the backgrounds and the text inks;
   pixels far from all of them (blends, noise, a half-trained model's smudges) stay unlabelled.
2. The background is the label most frequent on the border.
3. Each palette colour's connected regions above a minimum area are objects. A region's shape is
   the one whose ideal rendering, fitted to the region's box, overlaps it best (IoU); that IoU is
   also its confidence, so sloppy drawings get partial credit instead of an error.
4. Ink pixels are read as text by matching each character cell against thinkgen's own glyphs;
   Debian's tesseract (through pytesseract) can be used instead for real images.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from .render import GLYPHS, shape_mask
from .scene import BACKGROUNDS, COLORS, INK, SHAPES, Object

NEUTRALS = {**BACKGROUNDS, **INK}  # backgrounds and text inks (white and black are both)
_NAMES = list(COLORS) + list(NEUTRALS)
_VALUES = np.array(list(COLORS.values()) + list(NEUTRALS.values()), dtype=np.float32)
MAX_DISTANCE = 90.0  # RGB distance beyond which a pixel matches nothing
MIN_AREA = 0.006  # smallest object region, as a fraction of the image (a small star is ~0.02)


@dataclass
class ParsedObject:
    shape: str
    color: str
    box: tuple[float, float, float, float]  # (x0, y0, x1, y1), fractions of the side
    center: tuple[float, float]
    area: float  # fraction of the image
    confidence: float  # IoU with the ideal shape, 0..1

    @property
    def size(self) -> float:
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])


@dataclass
class ParsedScene:
    objects: list[ParsedObject] = field(default_factory=list)
    text: str = ""
    background: str = "white"

    def count(self, shape: str | None = None, color: str | None = None) -> int:
        return sum((shape is None or o.shape == shape) and (color is None or o.color == color)
                   for o in self.objects)

    def to_dict(self) -> dict:
        return {"objects": [asdict(o) for o in self.objects], "text": self.text, "background": self.background}


def to_uint8(image) -> np.ndarray:
    """Accept uint8 HxWx3, float HxWx3 in [0, 1], or a PIL image."""
    array = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
    if array.dtype != np.uint8:
        array = np.clip(np.asarray(array, dtype=np.float32) * 255 + 0.5, 0, 255).astype(np.uint8)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {array.shape}")
    return array


def label_pixels(image: np.ndarray) -> tuple[np.ndarray, str]:
    """(H, W) indices into ``_NAMES`` (-1 = no match), and the background name."""
    pixels = image.astype(np.float32)
    distance = np.linalg.norm(pixels[:, :, None, :] - _VALUES[None, None], axis=-1)  # (H, W, L)
    labels = distance.argmin(-1)
    labels[distance.min(-1) > MAX_DISTANCE] = -1
    border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    border = border[border >= 0]
    background = "white"
    if border.size:
        counts = np.bincount(border, minlength=len(_NAMES))
        background = max(BACKGROUNDS, key=lambda b: counts[_NAMES.index(b)])
    return labels, background


def _ideal(shape: str, box: tuple[int, int, int, int], resolution: int) -> np.ndarray:
    """The shape rendered to best fill a pixel box (x0, y0, width, height)."""
    x, y, w, h = box
    if shape == "star":  # a star's box is 0.951 s wide, 0.905 s tall, centred on the object
        s = (w / 0.951 + h / 0.9045) / 2
    else:
        s = (w + h) / 2
    cx, cy = x + w / 2, y + h / 2
    obj = Object(shape, "red", cx / resolution, cy / resolution, s / resolution)
    return shape_mask(obj, resolution)


def _corner_blocks_filled(region: np.ndarray, box: tuple[int, int, int, int]) -> int:
    """How many of the box's four corners the region fills: a k x k block (k about a fifth of the
    box side, at least 2 px) counts when at least half of it is filled."""
    x, y, w, h = box
    k = max(2, round(min(w, h) / 5))
    inside = region[y : y + h, x : x + w]
    blocks = (inside[:k, :k], inside[:k, -k:], inside[-k:, :k], inside[-k:, -k:])
    return sum(bool(block.mean() >= 0.5) for block in blocks)


def _corner_pixels_filled(region: np.ndarray, box: tuple[int, int, int, int]) -> int:
    x, y, w, h = box
    return int(region[y, x]) + int(region[y, x + w - 1]) + int(region[y + h - 1, x]) + int(region[y + h - 1, x + w - 1])


def shape_fits(region: np.ndarray, box: tuple[int, int, int, int]) -> dict[str, float]:
    """Each shape's IoU with the region, its ideal rendering fitted to the region's box."""
    ious = {}
    for shape in SHAPES:
        ideal = _ideal(shape, box, region.shape[0])
        union = np.logical_or(ideal, region).sum()
        ious[shape] = float(np.logical_and(ideal, region).sum() / union) if union else 0.0
    return ious


def classify_shape(region: np.ndarray, box: tuple[int, int, int, int]) -> tuple[str, float]:
    """The best-fitting shape for a boolean region mask, and its IoU.

    A circle and a square fit each other's ideal almost equally well at these sizes, so when both
    fit (IoU > 0.6) the corners settle it: a square fills them, a circle never reaches them. A
    drawn square often misses the very corner pixel (a soft edge, one stray pixel widening the
    box), so from 9 px up a corner counts when half of a small block there is filled. Below 9 px a
    rendered circle fills half of such a block, and only the corner pixel itself tells them apart.
    Against 145 circles and squares drawn by thinkgen's DiTs and labelled by eye, the corner pixels
    alone read 36 of 97 squares as squares and 48 of 48 circles as circles; the blocks read 77 and
    44 (benchmarks/parser_labels.py).
    """
    ious = shape_fits(region, box)
    best = max(ious, key=ious.get)
    if best in ("circle", "square") and ious["circle"] > 0.6 and ious["square"] > 0.6:
        if min(box[2], box[3]) >= 9:
            corners = _corner_blocks_filled(region, box)
        else:
            corners = _corner_pixels_filled(region, box)
        best = "square" if corners >= 3 else "circle"
    return best, ious[best]


def read_text(ink: np.ndarray, max_chars: int = 4) -> str:
    """Read one line of glyphs from a boolean ink mask.

    Every glyph spans all 7 rows, so the ink's height gives the scale; glyphs sit on a pitch of 6
    cells. Each (number of characters, left edge) is tried, each cell takes its nearest glyph, and
    the reading with the fewest mismatched pixels (ink outside the cells included) wins. The left
    edge is searched because narrow glyphs (I, 1) leave their first columns empty.
    """
    ys, xs = np.nonzero(ink)
    if ys.size == 0:
        return ""
    top = ys.min()
    scale = max(1, round((ys.max() + 1 - top) / 7))
    band = np.zeros((7 * scale, ink.shape[1] + 12 * scale), dtype=bool)  # padded on both sides
    rows = ink[top : top + 7 * scale]
    band[: rows.shape[0], 6 * scale : 6 * scale + ink.shape[1]] = rows
    outside_band = int(ink.sum() - rows.sum())
    glyphs = {c: np.kron(g, np.ones((scale, scale), dtype=bool)) for c, g in GLYPHS.items()}
    x_first = xs.min() + 6 * scale
    best: tuple[int, str] = (outside_band + int(ink.sum()), "")
    for left in range(x_first - 4 * scale, x_first + 1):
        for n in range(1, max_chars + 1):
            if left + (6 * n - 1) * scale > band.shape[1]:
                break
            cost, chars, inside = outside_band, [], 0
            for k in range(n):
                x0 = left + 6 * k * scale
                cell = band[:, x0 : x0 + 5 * scale]
                char = min(glyphs, key=lambda c: int((glyphs[c] != cell).sum()))
                cost += int((glyphs[char] != cell).sum())
                inside += int(cell.sum())
                chars.append(char)
            cost += int(band.sum()) - inside  # ink left outside every cell
            if cost < best[0]:
                best = (cost, "".join(chars))
    return best[1]


def object_regions(image: np.ndarray, labels: np.ndarray, min_area: float = MIN_AREA
                   ) -> list[tuple[str, np.ndarray, tuple[int, int, int, int]]]:
    """Each palette colour's connected regions above ``min_area``: (colour, boolean mask, pixel
    box (x, y, width, height)), in palette order."""
    resolution = image.shape[0]
    regions = []
    for index, color in enumerate(COLORS):
        mask = (labels == index).astype(np.uint8)
        if not mask.any():
            continue
        count, components, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        for c in range(1, count):
            x, y, w, h, area = (int(v) for v in stats[c])
            if area >= min_area * resolution * resolution:
                regions.append((color, components == c, (x, y, w, h)))
    return regions


def parse(image, min_area: float = MIN_AREA) -> ParsedScene:
    """Objects, text and background of a ShapeWorld image (uint8 or float RGB, or PIL)."""
    image = to_uint8(image)
    resolution = image.shape[0]
    if image.shape[1] != resolution:
        image = cv2.resize(image, (resolution, resolution), interpolation=cv2.INTER_NEAREST)
    labels, background = label_pixels(image)
    objects = []
    r = float(resolution)
    for color, region, (x, y, w, h) in object_regions(image, labels, min_area):
        shape, iou = classify_shape(region, (x, y, w, h))
        objects.append(ParsedObject(shape, color, (x / r, y / r, (x + w) / r, (y + h) / r),
                                    ((x + w / 2) / r, (y + h / 2) / r), float(region.sum()) / r / r, iou))
    ink = labels == _NAMES.index("white" if background == "black" else "black")
    text = read_text(ink) if ink.sum() >= 4 else ""
    objects.sort(key=lambda o: (o.center[0], o.center[1]))
    return ParsedScene(objects, text, background)


def ocr_text(image, upscale: int = 8, blur: float = 6.0) -> str:
    """Read text with Debian's tesseract (through pytesseract): a second reader for real images.

    Optional: needs ``pip install pytesseract`` and ``apt-get install tesseract-ocr``. The image
    is made grey, upscaled, blurred (tesseract reads smooth strokes, not 5x7 pixel blocks) and read
    as one line of capitals and digits. On ShapeWorld's own pixel font it is much weaker than
    :func:`read_text` (README: 22 of 40 random words at 64 px); use it for real images.
    """
    try:
        import pytesseract
    except ImportError:
        raise ImportError("ocr_text needs pytesseract (pip) and tesseract-ocr (apt)") from None
    grey = cv2.cvtColor(to_uint8(image), cv2.COLOR_RGB2GRAY)
    grey = cv2.resize(grey, (grey.shape[1] * upscale, grey.shape[0] * upscale), interpolation=cv2.INTER_NEAREST)
    grey = cv2.GaussianBlur(grey, (0, 0), blur)
    grey = cv2.copyMakeBorder(grey, 40, 40, 40, 40, cv2.BORDER_CONSTANT, value=int(np.median(grey)))
    config = "--psm 7 -c tessedit_char_whitelist=ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return "".join(pytesseract.image_to_string(grey, config=config).split())
