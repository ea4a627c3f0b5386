"""How often a model draws `make demo`'s prompt right, by ShapeWorld's parser, over seeds 0..N-1
(issue [5/5]'s goal: at least 3 of 4 seeds, think mode), and how often its colour and its number
of objects are right on their own. With a third argument, also after that many reflection rounds
in think mode (the embedded judge judges, the model applies its edits, as in `make demo`), and a
fourth names the correction (`thinkgen.reflection.CORRECTIONS`; default "edit"), a fifth the tries
of a retry- correction ("-": the default, 4), a sixth what the judge checks against ("prompt", the
default, or "rewrite": the thinker's rewrite), a seventh the judge (a thinker folder; default: the
embedded judge). `--cfg X` (anywhere) draws at another guidance scale than the model's default.

    python experiments/scripts/demo_seeds.py [--cfg X] [MODEL_DIR] [N] [REFLECT_ROUNDS] [CORRECTION] [TRIES] [JUDGE_AGAINST] [JUDGE]
    (default: the embedded model, 4 seeds, 0 rounds, edit, -, prompt, the embedded judge)
"""

from __future__ import annotations

import sys

import torch

from thinkgen import ThinkGenPipeline
from thinkgen.cli import DEMO_ANSWER, DEMO_PROMPT, EMBEDDED, EMBEDDED_JUDGE, demo_objects
from thinkgen.reflection import check_judge_against, correction, describe, load_judge, reflect


def main(model: str = str(EMBEDDED), n: str = "4", rounds: str = "0", correct: str = "edit",
         tries: str = "-", judge_against: str = "prompt", judge_dir: str = str(EMBEDDED_JUDGE), cfg: float | None = None) -> None:
    correct = correction(correct, None if tries == "-" else int(tries))
    check_judge_against(judge_against)
    pipe = ThinkGenPipeline.from_pretrained(model, torch_dtype=torch.float32)
    judge = load_judge(judge_dir) if int(rounds) else None
    colours = {colour for colour, _ in DEMO_ANSWER}
    for think in (True, False):
        right = colour_right = count_right = reflected_right = 0
        for seed in range(int(n)):
            out = pipe([DEMO_PROMPT], think=think, seed=seed, guidance_scale=cfg)
            found = demo_objects(out.images[0])
            right += found == DEMO_ANSWER
            colour_right += bool(found) and {colour for colour, _ in found} == colours
            count_right += len(found) == len(DEMO_ANSWER)
            line = (f"{'think' if think else 'direct'} seed {seed}: rewrite {out.rewritten[0]!r}, "
                    f"parser reads {found} ({'right' if found == DEMO_ANSWER else 'wrong'})")
            if judge is not None and think:
                after = reflect(pipe, [DEMO_PROMPT], out.images, rounds=int(rounds), seed=seed, judge=judge,
                                correct=correct, requests=out.rewritten if judge_against == "rewrite" else None)
                final = demo_objects(after.images[0])
                reflected_right += final == DEMO_ANSWER
                line += f"; after reflection {final} ({'right' if final == DEMO_ANSWER else 'wrong'})"
            print(line)
        scale = pipe.defaults["guidance_scale"] if cfg is None else cfg
        print(f"{'think' if think else 'direct'} (CFG {scale:g}): {right} of {n} seeds right; only the asked colour: "
              f"{colour_right}; the asked number of objects: {count_right}")
        if judge is not None and think:
            print(f"think, after up to {rounds} reflection round(s) ({describe(correct)}, judged against the {judge_against}, judge {judge_dir}): {reflected_right} of {n} seeds right")


if __name__ == "__main__":
    args = sys.argv[1:]
    cfg = None
    if "--cfg" in args:
        at = args.index("--cfg")
        try:
            cfg = float(args[at + 1])
        except (IndexError, ValueError):
            sys.exit("error: --cfg needs a number, e.g. --cfg 2")
        del args[at:at + 2]
    main(*args[:7], cfg=cfg)
