"""The benchmark commands of ``thinkgen``: ``eval`` (ShapeWorld suites), ``world export``,
``geneval`` and ``wise``. Registered by :func:`thinkgen.cli.build_parser`; errors are the same
one-line ``UserError`` as every other command's."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import validate
from .cli import (
    SEED,
    UserError,
    _load,
    _load_judge,
    _Parser,
    _reflection_options,
    _sampling_options,
    _with_cache,
    _writable_dir,
    cache_spec,
    reflection_correction,
    reflection_judge,
)
from .validate import read_text


def evaluate(args: argparse.Namespace) -> int:
    from .eval.shapeworld import markdown, run_suite

    out = _writable_dir(args.out)
    # a bad --tries fails before the model loads; without --reflect it is unused, as in generate
    correct = reflection_correction(args) if args.reflect else "edit"
    pipe = _with_cache(_load(args.model), args.cache)
    judge = _load_judge(args.judge) if args.judge else None
    if args.reflect:
        judge = reflection_judge(args, pipe, judge, correct)
    if args.resolution is not None:
        try:
            pipe.check_size(args.resolution, args.resolution)
        except ValueError as error:
            raise UserError(str(error)) from None
    try:
        summary = run_suite(pipe, args.suite, out, think=args.think, n_per_prompt=args.n_per_prompt,
                            n_items=args.n_items, seed=args.seed, batch_size=args.batch, resolution=args.resolution,
                            num_inference_steps=args.steps, guidance_scale=args.cfg, split=args.split,
                            overwrite=args.overwrite, reflect=args.reflect, judge=judge,
                            correct=correct, judge_against=args.judge_against)
    except (ValueError, FileExistsError) as error:  # a limit of the pipeline, or a folder with results
        raise UserError(str(error)) from None
    print(markdown(summary))
    print(f"wrote {out}/scores.json, scores.md, items.jsonl, grid.png and images/")
    return 0


def rescore(args: argparse.Namespace) -> int:
    from .eval.shapeworld import check_rescorable
    from .eval.shapeworld import rescore as rescore_folder

    try:
        for folder in args.folders:  # every folder is checked before any is changed
            check_rescorable(folder)
        for folder in args.folders:
            summary = rescore_folder(folder)
            before = summary["before_rescore"]["overall"]
            print(f"{folder}: {summary['suite']} {before:.3f} -> {summary['overall']:.3f}")
    except (ValueError, OSError) as error:
        raise UserError(str(error)) from None
    return 0


def world_export(args: argparse.Namespace) -> int:
    from .world.export import export

    folder = export(args.suite, args.n, _writable_dir(args.out), split=args.split, resolution=args.resolution,
                    seed=args.seed)
    print(f"wrote {args.n} {args.suite} items to {folder} (datasets.load_dataset('imagefolder', data_dir=...))")
    return 0


def geneval(args: argparse.Namespace) -> int:
    from .eval import geneval as geneval_module

    try:
        metadata = geneval_module.read_metadata(args.metadata or geneval_module.DEFAULT_METADATA)
    except (OSError, geneval_module.MetadataError) as error:
        raise UserError(f"cannot read GenEval metadata: {error}") from None
    if args.limit:
        metadata = metadata[: args.limit]
    out = _writable_dir(args.out)
    pipe = _load(args.model)

    def draw(prompts: list[str], first: int) -> list[list]:
        result = pipe(prompts, think=args.think, num_images_per_prompt=args.n_samples, seed=args.seed + first * args.n_samples,
                      num_inference_steps=args.steps, guidance_scale=args.cfg)
        n = args.n_samples
        return [result.images[i * n : (i + 1) * n] for i in range(len(prompts))]

    try:
        count = geneval_module.generate(draw, metadata, out, n_samples=args.n_samples, batch_size=args.batch)
    except ValueError as error:
        raise UserError(str(error)) from None
    print(f"wrote {count} prompts x {args.n_samples} images in GenEval's layout to {out}")
    return 0


def wise(args: argparse.Namespace) -> int:
    """``wise generate | judge | score``, or ``wise run``: the three in a row into one folder."""
    needed = {"score": ["judgments"], "generate": ["prompts", "out"],
              "judge": ["prompts", "images", "endpoint", "judge_model", "out"],
              "run": ["prompts", "endpoint", "judge_model", "out"]}[args.action]
    missing = [f"--{name.replace('_', '-')}" for name in needed if getattr(args, name) is None]
    if missing:
        raise UserError(f"wise {args.action} needs {' '.join(missing)}")
    if args.action == "score":
        return _wise_score(args.judgments, args.protocol, args.allow_partial)
    prompts = _wise_prompts(args)
    out = _writable_dir(args.out)
    if args.action == "generate":
        return _wise_generate(args, prompts, out)
    if args.action == "judge":
        _wise_judge(args, prompts, Path(args.images), out)
        return 0
    images = _writable_dir(str(out / "images"))  # run: draw, judge, score, into one folder
    _wise_generate(args, prompts, images)
    target = _wise_judge(args, prompts, images, out)
    return _wise_score([str(target)], None, args.allow_partial or bool(args.limit))


def _wise_prompts(args: argparse.Namespace) -> list:
    from .eval import wise as wise_module

    try:
        prompts = wise_module.read_prompts(args.prompts)
    except (OSError, wise_module.WiseFormatError) as error:
        raise UserError(f"cannot read WISE prompts: {error}") from None
    return prompts[: args.limit] if args.limit else prompts


def _wise_score(judgments: list[str], protocol: str | None, allow_partial: bool) -> int:
    from .eval import wise as wise_module

    try:
        read = wise_module.read_judgments(judgments, protocol)
        result = wise_module.overall(read, allow_partial=allow_partial)
    except (OSError, ValueError) as error:  # WiseFormatError, WiseIncompleteError
        raise UserError(f"cannot score: {error}") from None
    print(f"WISE {result['protocol']} protocol, {len(read.files)} file(s)")
    for category, (judged, expected) in result["coverage"].items():
        value = result["categories"].get(category)
        shown = f"{value:.3f}" if value is not None else "  -  "
        print(f"{category:<10} {shown}  ({judged}/{expected} judged)")
    label = "overall" if result["complete"] else "partial"
    coverage = "" if result["complete"] else f", coverage {result['judged'] / 1000:.1%}: re-weighted over the categories present"
    print(f"{label:<10} {result['overall']:.3f}  ({result['judged']}/1000 prompts{coverage})")
    return 0


def _wise_judge(args: argparse.Namespace, prompts: list, images: Path, out: Path) -> Path:
    """Judge ``images`` into ``out/judgments.jsonl`` (resuming it); returns that file."""
    from .eval import wise as wise_module

    try:
        protocol = wise_module.choose_protocol(wise_module.protocols_matching(prompts), args.protocol,
                                               f"the prompts of {args.prompts}")
        rubric = wise_module.read_rubric(args.rubric) if args.rubric else None
        system = read_text(args.rubric_system, 1024 * 1024, "system text") if args.rubric_system else None
    except (OSError, UnicodeDecodeError, ValueError) as error:  # WiseFormatError, FileTooLarge
        raise UserError(str(error)) from None
    judge = wise_module.OpenAICompatibleJudge(args.endpoint, args.judge_model, os.environ.get("THINKGEN_JUDGE_KEY"),
                                              protocol=protocol, rubric=rubric, system=system)
    target = out / "judgments.jsonl"
    try:
        result = wise_module.judge_folder(judge, prompts, images, target, protocol)
    except wise_module.WiseFormatError as error:
        raise UserError(f"cannot resume from {target}: {error}") from None
    except OSError as error:  # unreachable endpoint, refused connection, HTTP error
        raise UserError(f"the judge at {args.endpoint} failed (judgments so far are kept in {target}): {error}") from None
    print(f"{result['judged']} judgments ({protocol.name} protocol, {result['resumed']} from before) in {target}")
    for what in ("absent", "failed"):
        if result[what]:
            print(f"{what}: {wise_module.id_ranges(result[what])}", file=sys.stderr)
    if args.action == "judge":
        print(f"score them with: thinkgen wise score --judgments {target} [more files] --protocol {protocol.name}")
    return target


def _wise_generate(args: argparse.Namespace, prompts: list, out: Path) -> int:
    from tqdm.auto import tqdm

    from .eval import wise as wise_module

    pipe = _load(args.model)
    for start in tqdm(range(0, len(prompts), args.batch), desc="wise"):
        batch = prompts[start : start + args.batch]
        try:
            result = pipe([p.prompt for p in batch], think=args.think, seed=args.seed + start,
                          num_inference_steps=args.steps, guidance_scale=args.cfg)
        except ValueError as error:
            raise UserError(str(error)) from None
        for p, image in zip(batch, result.images, strict=True):
            image.save(out / wise_module.image_name(p))
    print(f"wrote {len(prompts)} images named <prompt_id>.png to {out}")
    return 0


def add_benchmark_commands(commands) -> None:
    """Add the benchmark commands to ``thinkgen``'s sub-command parser."""
    from .world.suites import SUITES

    e = commands.add_parser("eval", help="score a model on a ShapeWorld suite's test split")
    e.add_argument("--suite", required=True, choices=SUITES)
    _sampling_options(e)
    e.add_argument("--n-per-prompt", type=validate.bounded_int(1, 64), default=4)
    e.add_argument("--n-items", type=validate.bounded_int(1, 100_000), default=None, help="test items (default 120)")
    e.add_argument("--resolution", type=validate.bounded_int(8, 2048), default=None)
    e.add_argument("--split", default="test", choices=["test", "train", "rl"],
                   help="default test; train measures in-distribution specs")
    e.add_argument("--out", type=validate.path, required=True, help="output folder")
    e.add_argument("--overwrite", action="store_true", help="replace the results already in --out")
    e.add_argument("--cache", type=cache_spec, default=None, metavar="NAME[:k=v,...]",
                   help="step caching with diffusers' hooks (as in generate): its price in exact quality")
    e.add_argument("--reflect", type=validate.bounded_int(0, 16), default=0, metavar="N",
                   help="up to N reflection rounds per image; scores before and after are both reported")
    _reflection_options(e)
    e.set_defaults(run=evaluate)

    r = commands.add_parser("rescore", help="score eval folders' saved images again with the current rule model")
    r.add_argument("folders", nargs="+", type=validate.path, help="folders written by thinkgen eval")
    r.set_defaults(run=rescore)

    w = commands.add_parser("world", help="ShapeWorld data")
    world_commands = w.add_subparsers(dest="world_command", required=True, parser_class=_Parser)
    x = world_commands.add_parser("export", help="export a suite split as an imagefolder dataset")
    x.add_argument("--suite", required=True, choices=SUITES)
    x.add_argument("--n", type=validate.bounded_int(1, 1_000_000), default=1000)
    x.add_argument("--split", default="train", choices=["train", "test", "rl"])
    x.add_argument("--resolution", type=validate.bounded_int(8, 2048), default=None)
    x.add_argument("--seed", type=SEED, default=0)
    x.add_argument("--out", type=validate.path, required=True)
    x.set_defaults(run=world_export)

    ge = commands.add_parser("geneval", help="draw GenEval's prompts in its official output layout")
    _sampling_options(ge)
    ge.add_argument("--metadata", default=None,
                    help="evaluation_metadata.jsonl (default: GenEval's 553 prompts, shipped with thinkgen)")
    ge.add_argument("--n-samples", type=validate.bounded_int(1, 64), default=4)
    ge.add_argument("--limit", type=validate.bounded_int(1, 1_000_000), default=None, help="only the first N prompts")
    ge.add_argument("--out", type=validate.path, required=True)
    ge.set_defaults(run=geneval)

    ws = commands.add_parser("wise", help="WISE: draw <prompt_id>.png, judge, compute WiScore, or run all three")
    ws.add_argument("action", choices=["generate", "judge", "score", "run"])
    _sampling_options(ws)
    ws.add_argument("--prompts", help="WISE prompt JSON (generate, judge)")
    ws.add_argument("--images", help="folder of <prompt_id>.png (judge)")
    ws.add_argument("--endpoint", type=validate.url, help="OpenAI-compatible base URL (judge); key in THINKGEN_JUDGE_KEY")
    ws.add_argument("--judge-model", help="model name at the endpoint (judge)")
    ws.add_argument("--judgments", nargs="+", metavar="FILE_OR_FOLDER",
                    help="judge score files, official format; a folder means its *.jsonl (score)")
    ws.add_argument("--protocol", choices=["legacy", "verified"], default=None,
                    help="WISE protocol (default: detected from the files, refused when they fit both)")
    ws.add_argument("--allow-partial", action="store_true",
                    help="score an incomplete set (re-weighted, with its coverage) instead of refusing (score, run)")
    ws.add_argument("--rubric", type=validate.path,
                    help="judge instruction text with {Prompt} and {Explanation}, e.g. the official one (judge)")
    ws.add_argument("--rubric-system", type=validate.path, help="system message sent before the rubric (judge)")
    ws.add_argument("--limit", type=validate.bounded_int(1, 1_000_000), default=None)
    ws.add_argument("--out", type=validate.path, help="output folder (generate, judge)")
    ws.set_defaults(run=wise)
