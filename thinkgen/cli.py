"""The ``thinkgen`` command. Thin: it parses arguments, checks them, and calls the library.

User mistakes (empty prompt, missing or broken model folder, unwritable output, bad sizes) end
with one ``error: ...`` line and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

USER_ERROR = 2


class UserError(Exception):
    """A mistake in how thinkgen was called; printed as one line, exit code 2."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _quiet_libraries() -> None:
    """Keep transformers' and diffusers' loading bars out of the command's output."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    diffusers_logging.set_verbosity_error()


def _load(model: str | None):
    from .pipeline import PipelineLoadError, ThinkGenPipeline

    if model is None:
        raise UserError("no model given: pass --model DIR (`thinkgen init DIR` makes a tiny random one)")
    try:
        return ThinkGenPipeline.from_pretrained(model)
    except PipelineLoadError as error:
        raise UserError(str(error)) from None


def _output_paths(output: str, count: int) -> list[Path]:
    """``out.png`` for one image, ``out-0.png, out-1.png, ...`` for several; checked up front."""
    path = Path(output)
    if path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        raise UserError(f"output must end in .png, .jpg or .webp: {output}")
    if path.is_dir():
        raise UserError(f"output is a directory, not a file: {output}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"output directory does not exist: {parent}")
    try:  # a real write, since permission bits say little to root or on read-only mounts
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".thinkgen-write-test-"):
            pass
    except OSError:
        raise UserError(f"output directory is not writable: {parent}") from None
    if count == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{i}{path.suffix}") for i in range(count)]


def _print_thoughts(prompts: list[str], reasoning: list[str], rewritten: list[str], think: bool,
                    per_prompt: int) -> None:
    for i, prompt in enumerate(prompts):
        print(f"prompt:    {prompt}")
        if think:
            print(f"reasoning: {reasoning[i * per_prompt]!r}")
        print(f"rewritten: {rewritten[i * per_prompt]!r}")


def generate(args: argparse.Namespace) -> int:
    prompts = [p.strip() for p in args.prompt]
    if not prompts or any(not p for p in prompts):
        raise UserError("the prompt is empty")
    paths = _output_paths(args.output, len(prompts) * args.batch)
    pipe = _load(args.model)
    height = pipe.defaults["height"] if args.height is None else args.height
    width = pipe.defaults["width"] if args.width is None else args.width
    try:
        pipe.check_size(height, width)
    except ValueError as error:
        raise UserError(str(error)) from None
    out = pipe(prompts, think=args.think, num_inference_steps=args.steps, guidance_scale=args.cfg,
               seed=args.seed, height=height, width=width, num_images_per_prompt=args.batch,
               progress=True)
    _print_thoughts(prompts, out.reasoning, out.rewritten, args.think, args.batch)
    for image, path in zip(out.images, paths, strict=True):
        try:
            image.save(path)
        except OSError as error:
            raise UserError(f"cannot write {path}: {error}") from None
        print(f"wrote {path}")
    return 0


def info(args: argparse.Namespace) -> int:
    pipe = _load(args.model)
    print(f"thinkgen pipeline: {args.model}")
    total = 0
    for name, component in pipe.components.items():
        if hasattr(component, "parameters"):
            count = sum(p.numel() for p in component.parameters())
            total += count
            dtype = next(component.parameters()).dtype if count else "-"
            print(f"  {name:<12} {type(component).__name__:<32} {count:>14,d} params  {dtype}")
        else:
            print(f"  {name:<12} {type(component).__name__}")
    print(f"  {'total':<12} {'':<32} {total:>14,d} params")
    cfg = pipe.thinker.config
    print(f"  thinker states: last {cfg.num_layers} layers x {pipe.thinker.hidden_size} = "
          f"{pipe.thinker.state_dim} channels, extract={cfg.extract}; "
          f"prepadding K={pipe.bridge.num_prepadding}, connector={pipe.bridge.config.connector}")
    print(f"  default size {pipe.defaults['height']}x{pipe.defaults['width']}, "
          f"sizes must be multiples of {pipe.multiple}")
    return 0


def init(args: argparse.Namespace) -> int:
    from .tiny import tiny_pipeline

    target = Path(args.directory)
    if target.exists() and any(target.iterdir()):
        raise UserError(f"{target} exists and is not empty")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create {target}: {error}") from None
    tiny_pipeline(seed=args.seed).save_pretrained(target)
    print(f"wrote a tiny random (untrained) pipeline to {target}")
    return 0


def demo(args: argparse.Namespace) -> int:
    from .tiny import tiny_pipeline

    print("thinkgen demo: the embedded ShapeWorld model is not trained yet, so this builds a tiny\n"
          "pipeline with RANDOM, UNTRAINED weights. It shows the whole path (think -> VGI-refine ->\n"
          "DiT -> image) working; the reasoning is noise and the picture is noise.\n")
    with tempfile.TemporaryDirectory() as folder:
        tiny_pipeline(seed=0).save_pretrained(folder)
        pipe = _load(folder)
    prompt = "as many squares as a tricycle has wheels, in the colour of a ripe banana"
    out = pipe([prompt], think=True, num_inference_steps=20, seed=0, progress=True)
    _print_thoughts([prompt], out.reasoning, out.rewritten, True, 1)
    thought = out.thinker
    completion = len(thought.sequences[0]) - thought.prompt_lengths[0]
    print(f"thinker wrote {completion} tokens; conditioning: {int(thought.mask[0].sum())} states after "
          f"</think> x {thought.states.shape[-1]} channels (last {pipe.thinker.config.num_layers} layers), "
          f"+ {pipe.bridge.num_prepadding} prepadding states -> DiT text width "
          f"{pipe.bridge.config.out_channels}")
    path = _output_paths(args.output, 1)[0]
    out.images[0].resize((128, 128)).save(path)
    print(f"wrote {path}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (and exit code 2) like every other user error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(USER_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="thinkgen", description="Think, then generate images.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    g = commands.add_parser("generate", help="generate images from prompts")
    g.add_argument("prompt", nargs="+", help="one or more prompts")
    g.add_argument("--model", help="pipeline folder (from save_pretrained or `thinkgen init`)")
    g.add_argument("--think", action=argparse.BooleanOptionalAction, default=True,
                   help="reason before drawing (default) or use the direct pseudo-CoT template")
    g.add_argument("-o", "--output", default="out.png", help="image path (out.png; out-0.png, ... for several)")
    g.add_argument("--steps", type=_positive_int, default=None, help="sampling steps")
    g.add_argument("--cfg", type=float, default=None, help="classifier-free guidance scale")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--batch", type=_positive_int, default=1, help="images per prompt")
    g.add_argument("--height", type=_positive_int, default=None)
    g.add_argument("--width", type=_positive_int, default=None)
    g.set_defaults(run=generate)

    i = commands.add_parser("info", help="print a pipeline's components and parameter counts")
    i.add_argument("model", help="pipeline folder")
    i.set_defaults(run=info)

    n = commands.add_parser("init", help="write a tiny random pipeline (for tests and experiments)")
    n.add_argument("directory")
    n.add_argument("--seed", type=int, default=0)
    n.set_defaults(run=init)

    d = commands.add_parser("demo", help="run the default model on a reasoning prompt")
    d.add_argument("-o", "--output", default="demo.png")
    d.set_defaults(run=demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # argparse itself exits with 2 on bad usage
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _quiet_libraries()
    try:
        return args.run(args)
    except UserError as error:
        print(f"thinkgen: error: {error}", file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        print("thinkgen: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
