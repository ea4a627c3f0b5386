"""Run a ShapeWorld suite's test split through a pipeline and score every image exactly.

Writes, under ``out``::

    images/<item>_<k>.png   every generated image
    items.jsonl             one line per image: prompt, reasoning, rewrite, score and details
    scores.json             per-category and overall scores (+ per fact group for reasoning)
    scores.md               the same as a markdown table
    grid.png                the first images, one row per item

Overall scores: composition = mean of the six GenEval tag accuracies; reasoning = WISE's
weighting of the category accuracies (reported for all items and per fact group); text = word
accuracy (and mean normalised edit-distance similarity); editing = exact-match rate (and mean
F1); reflection = share of instructions that fix the scene (and mean edit-distance similarity).

With ``reflect=N`` (composition, reasoning, text) every image goes through up to N rounds of
:func:`thinkgen.reflection.generate_with_reflection`; each row keeps the score of the first image
too, and ``scores.json`` holds ``before_reflection`` (the same summary for the first images), so
one run measures what reflection gains.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..reflection import (
    GREEDY_JUDGE,
    Correction,
    check_judge_against,
    correction,
    describe,
    describe_judge,
    generate_with_reflection,
    is_right,
    judge_prompt,
)
from ..world import suites
from ..world.captions import canonical, target_of
from ..world.facts import WISE_WEIGHTS
from ..world.parse import parse
from ..world.render import render


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else 0.0


def summarise(suite: str, rows: list[dict]) -> dict[str, Any]:
    """Per-category means and the suite's overall score from per-image rows."""
    by_category: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        by_category[row["category"]].append(row["score"])
    categories = {c: _mean(v) for c, v in sorted(by_category.items())}
    summary: dict[str, Any] = {"suite": suite, "images": len(rows), "categories": categories}
    if suite == "composition":
        summary["overall"] = _mean([categories[t] for t in suites.TAGS if t in categories])
    elif suite == "reasoning":
        summary["overall"] = wise_weighted(categories)
        for group in ("supervised", "held_out"):
            group_rows = [r for r in rows if r.get("group") == group]
            if group_rows:
                sub = summarise(suite, [{**r, "group": None} for r in group_rows])
                summary[group] = {"overall": sub["overall"], "categories": sub["categories"],
                                  "images": len(group_rows)}
    else:
        summary["overall"] = _mean([r["score"] for r in rows])
    extra = {"text": "ned", "editing": "f1", "reflection": "ned"}.get(suite)
    if extra:
        summary[extra] = _mean([r["details"][extra] for r in rows])
    return summary


def wise_weighted(categories: dict[str, float]) -> float:
    """WISE's category weighting, renormalised over the categories present."""
    present = {c: w for c, w in WISE_WEIGHTS.items() if c in categories}
    total = sum(present.values())
    return sum(w * categories[c] for c, w in present.items()) / total if total else 0.0


def markdown(summary: dict[str, Any]) -> str:
    lines = [f"# ShapeWorld {summary['suite']}", "", "| category | score |", "|---|---|"]
    lines += [f"| {c} | {v:.3f} |" for c, v in summary["categories"].items()]
    lines.append(f"| **overall** | **{summary['overall']:.3f}** |")
    for group in ("supervised", "held_out"):
        if group in summary:
            lines.append(f"| {group} facts (WISE-weighted) | {summary[group]['overall']:.3f} |")
    for extra in ("ned", "f1"):
        if extra in summary:
            lines.append(f"| mean {extra} | {summary[extra]:.3f} |")
    if "before_reflection" in summary:
        lines.append(f"| before reflection ({summary['reflect']} round(s) at most, "
                     f"correction: {summary.get('correction', 'edit')}"
                     f"{'; judge: ' + summary['judge'] if summary.get('judge', GREEDY_JUDGE) != GREEDY_JUDGE else ''}"
                     f"{', judged against the rewrite' if summary.get('judged_against') == 'rewrite' else ''}) | {summary['before_reflection']['overall']:.3f} |")
        if "wrong_to_right" in summary:
            lines.append(f"| images wrong → right / right → wrong | {summary['wrong_to_right']} / "
                         f"{summary['right_to_wrong']} |")
    if "before_rescore" in summary:
        lines.append(f"| before the images were rescored | {summary['before_rescore']['overall']:.3f} |")
    lines += ["", f"{summary['images']} images."]
    return "\n".join(lines) + "\n"


def grid(images: list[list[Image.Image]], cell: int = 64, max_rows: int = 12) -> Image.Image:
    rows = images[:max_rows]
    columns = max(len(r) for r in rows) if rows else 1
    canvas = Image.new("RGB", (columns * (cell + 2), max(1, len(rows)) * (cell + 2)), (255, 255, 255))
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            canvas.paste(image.resize((cell, cell), Image.NEAREST), (j * (cell + 2), i * (cell + 2)))
    return canvas


def run_suite(pipe, suite: str, out: str | Path, think: bool = True, n_per_prompt: int = 4,
              n_items: int | None = None, seed: int = 0, batch_size: int = 8,
              resolution: int | None = None, num_inference_steps: int | None = None,
              guidance_scale: float | None = None, progress: bool = True, split: str = "test",
              overwrite: bool = False, reflect: int = 0, judge=None,
              correct: str | Correction = "edit", judge_against: str = "prompt") -> dict[str, Any]:
    """Generate for every item of a suite's split (the test split by default) and score it.

    ``scores.json`` is written last and atomically, with ``"complete": true`` and the item count, so
    an interrupted run can never pass for a finished one; a folder that already holds results is
    refused unless ``overwrite``, which first removes the old scores. With ``reflect``, ``judge`` (a
    pipeline or a thinker that sees; default ``pipe``) judges and ``correct`` is the correction, or
    its name (:data:`thinkgen.reflection.CORRECTIONS`); ``judge_against`` as in
    :func:`~thinkgen.reflection.generate_with_reflection`."""
    out = Path(out)
    correct = correction(correct)  # an unknown name fails before any drawing
    check_judge_against(judge_against)  # so is an unknown judge_against
    if reflect and suite not in ("composition", "reasoning", "text"):
        raise ValueError(f"reflect applies to the suites that draw from a prompt (composition, reasoning, "
                         f"text), not {suite}")
    _claim(out, overwrite)
    (out / "images").mkdir(parents=True, exist_ok=True)
    items = suites.build(suite, n_items or 120, split, seed=0)
    resolution = resolution or suites.RESOLUTION.get(suite, pipe.defaults["height"])
    rows, previews = [], []
    bar = tqdm(total=len(items) * (1 if suite == "reflection" else n_per_prompt), desc=f"eval {suite}",
               disable=not progress)
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        if suite == "reflection":
            rows += _reflect(pipe, batch, think, seed + start, resolution, out, previews)
            bar.update(len(batch))
            continue
        images = None
        if suite == "editing":
            images = [[Image.fromarray(render(item.source, resolution))] for item in batch]
        drawing = {"height": resolution, "width": resolution, "num_inference_steps": num_inference_steps,
                   "guidance_scale": guidance_scale}
        if reflect:  # image i of the batch draws with the seed it has without reflection
            flat = [item.prompt for item in batch for _ in range(n_per_prompt)]
            result = generate_with_reflection(pipe, flat, rounds=reflect, think=think, judge=judge, correct=correct,
                                              judge_against=judge_against, seed=seed + start * n_per_prompt,
                                              **drawing)
        else:
            result = pipe([item.prompt for item in batch], think=think, images=images,
                          seed=seed + start * n_per_prompt, num_images_per_prompt=n_per_prompt, **drawing)
        for i, item in enumerate(batch):
            row_images = []
            for k in range(n_per_prompt):
                index = i * n_per_prompt + k
                image = result.images[index]
                name = f"{item.id}_{k}.png"
                _save_image(image, out / "images" / name)
                score = suites.score_image(item, parse(image))
                row = {"item": item.id, "image": f"images/{name}", "category": item.category,
                       "group": item.group or None, "prompt": item.prompt, "target": item.canonical,
                       "score": score.score, "details": score.details}
                if reflect:
                    rounds = result.rounds[index]
                    row["first_score"] = suites.score_image(item, parse(result.first[index])).score
                    row["verdicts"] = [r.verdict for r in rounds]  # the judge's, round by round
                    row["judge_reasoning"] = [r.reasoning for r in rounds]
                    if any(r.faulting_votes is not None for r in rounds):
                        row["faulting_votes"] = [r.faulting_votes for r in rounds]
                else:
                    row["reasoning"], row["rewritten"] = result.reasoning[index], result.rewritten[index]
                rows.append(row)
                row_images.append(image)
            previews.append(([Image.fromarray(render(item.source, resolution))] if item.source else [])
                            + row_images)
            bar.update(n_per_prompt)
    bar.close()
    summary = summarise(suite, rows)
    if reflect:
        first = summarise(suite, [{**row, "score": row["first_score"]} for row in rows])
        summary["before_reflection"] = {k: first[k] for k in ("overall", "categories")}
        summary["reflect"] = reflect
        summary["correction"] = describe(correct)
        summary["judge"] = describe_judge(judge)
        summary["judged_against"] = judge_against
        summary["images_corrected"] = sum(any(not is_right(v) for v in row["verdicts"]) for row in rows)
        summary["wrong_to_right"] = sum(row["first_score"] < row["score"] for row in rows)
        summary["right_to_wrong"] = sum(row["first_score"] > row["score"] for row in rows)
    summary.update({"think": think, "n_per_prompt": n_per_prompt, "resolution": resolution, "items": len(items),
                    "split": split, "rows": len(rows), "complete": True})
    _write(out / "items.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    _write(out / "scores.md", markdown(summary))
    _save_image(grid(previews), out / "grid.png")
    _write(out / "scores.json", json.dumps(summary, indent=2) + "\n")  # last: it says the folder is complete
    return summary


RESULTS = ("scores.json", "scores.md", "items.jsonl", "grid.png", "images")


def check_rescorable(out: str | Path) -> dict[str, Any]:
    """The summary of an eval folder :func:`rescore` can score again; ValueError says why not."""
    out = Path(out)
    if not is_complete(out):
        raise ValueError(f"{out} holds no finished eval (no complete scores.json)")
    summary = json.loads((out / "scores.json").read_text())
    if summary["suite"] == "reflection" or summary.get("reflect"):
        raise ValueError(f"{out}: reflection scores are not images' scores; evaluate it again instead")
    return summary


def rescore(out: str | Path) -> dict[str, Any]:
    """Score a finished eval folder's saved images again with the current rule model, in place.

    For when the parser changes: the images stay, every row's score and the summary are replaced,
    and ``scores.json`` keeps the scores it replaced under ``before_rescore``. Reflection folders
    and ``--reflect`` runs are refused: they score instructions, or images that were not saved."""
    out = Path(out)
    summary = check_rescorable(out)
    suite = summary["suite"]
    by_id = {item.id: item for item in suites.build(suite, summary["items"], summary.get("split", "test"), seed=0)}
    rows = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines() if line.strip()]
    for row in rows:
        if row["item"] not in by_id:
            raise ValueError(f"{out}: item {row['item']} is not in the {suite} suite's items any more")
        score = suites.score_image(by_id[row["item"]], parse(Image.open(out / row["image"])))
        row["score"], row["details"] = score.score, score.details
    fresh = summarise(suite, rows)
    scores = [k for k in fresh if k not in ("suite", "images")]  # what summarise() scores
    previous = summary.get("before_rescore") or {k: summary[k] for k in scores if k in summary}
    summary.update(fresh)
    summary["before_rescore"] = previous  # the first scores, however often it is rescored
    _write(out / "items.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    _write(out / "scores.md", markdown(summary))
    _write(out / "scores.json", json.dumps(summary, indent=2) + "\n")
    return summary


def is_complete(out: str | Path) -> bool:
    """Whether an eval folder holds a finished run (what scripts should test, not existence). A
    scores.json from before completion records counts when it is whole JSON with its overall score."""
    try:
        summary = json.loads((Path(out) / "scores.json").read_text())
        return bool(summary.get("complete", "overall" in summary))
    except (OSError, ValueError, AttributeError):
        return False


def _claim(out: Path, overwrite: bool) -> None:
    """Refuse to mix a new run into an old one; with ``overwrite``, remove the old results, the
    completion record first."""
    found = [name for name in RESULTS if (out / name).exists()]
    if not found:
        return
    if not overwrite:
        raise FileExistsError(f"{out} already holds results ({', '.join(found)}); choose another folder or "
                              "pass --overwrite")
    for name in RESULTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _write(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _save_image(image: Image.Image, path: Path) -> None:
    temporary = path.with_name(f".{path.stem}.tmp{path.suffix}")
    image.save(temporary)
    os.replace(temporary, path)


def _reflect(pipe, batch: list[suites.Item], think: bool, seed: int, resolution: int, out: Path,
             previews: list) -> list[dict]:
    """The thinker sees the request and the wrong image (a VLM) or a faithful description of it
    (a text-only thinker), and writes the correcting instruction."""
    thinker = pipe.thinker
    wrong = [Image.fromarray(render(item.source, resolution)) for item in batch]
    if thinker.processor is not None:
        prompts = [judge_prompt(item.prompt) for item in batch]
        images = [[image] for image in wrong]
    else:
        prompts = [judge_prompt(item.prompt, canonical(target_of(item.source)))
                   for item in batch]
        images = None
    thought = thinker.encode(prompts, think=think, images=images, seed=seed)
    rows = []
    for i, item in enumerate(batch):
        name = f"{item.id}_wrong.png"
        _save_image(wrong[i], out / "images" / name)
        score = suites.score_instruction(item, thought.rewritten[i])
        rows.append({"item": item.id, "image": f"images/{name}", "category": item.category, "group": None,
                     "prompt": prompts[i], "target": item.canonical, "reasoning": thought.reasoning[i],
                     "rewritten": thought.rewritten[i], "score": score.score, "details": score.details})
        previews.append([wrong[i]])
    return rows
