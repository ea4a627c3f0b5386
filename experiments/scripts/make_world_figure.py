"""Draw docs/shapeworld.png: sample items of every ShapeWorld suite with their prompts.

    python experiments/scripts/make_world_figure.py
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from thinkgen.world import build, render

CELL, TEXT_H, PER_ROW = 112, 70, 4
OUT = Path(__file__).resolve().parents[2] / "docs" / "shapeworld.png"


def main() -> None:
    font = ImageFont.load_default()
    rows = []
    for suite in ("composition", "reasoning", "text", "editing", "reflection"):
        items = build(suite, 24, "test")
        picks = [items[i] for i in (0, 5, 10, 15)] if suite == "composition" else items[:PER_ROW]
        rows.append((suite, picks))
    width = 110 + PER_ROW * (2 * CELL + 16)
    canvas = Image.new("RGB", (width, len(rows) * (CELL + TEXT_H + 10) + 10), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (suite, items) in enumerate(rows):
        y = 10 + r * (CELL + TEXT_H + 10)
        draw.text((8, y + CELL // 2), suite, fill="black", font=font)
        for c, item in enumerate(items):
            x = 110 + c * (2 * CELL + 16)
            resolution = 64 if suite == "text" else 32
            pictures = ([item.source] if item.source else []) + ([item.scene] if suite != "reflection" else [])
            for k, scene in enumerate(pictures):
                image = Image.fromarray(render(scene, resolution)).resize((CELL, CELL), Image.NEAREST)
                canvas.paste(image, (x + k * (CELL + 4), y))
                draw.rectangle([x + k * (CELL + 4) - 1, y - 1, x + k * (CELL + 4) + CELL, y + CELL], outline=(190, 190, 190))
            if suite == "reflection":
                label = f"{item.prompt} | wrong image -> {item.canonical}"
            elif suite == "editing":
                label = f"{item.prompt} (source -> target)"
            else:
                label = f"{item.prompt} -> {item.canonical}" if item.prompt != item.canonical else item.prompt
            for line_no, line in enumerate(textwrap.wrap(label, 40)[:5]):
                draw.text((x, y + CELL + 4 + 12 * line_no), line, fill="black", font=font)
    OUT.parent.mkdir(exist_ok=True)
    canvas.save(OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
