"""The ``thinkgen`` command. Thin: it parses arguments, checks them, and calls the library.

User mistakes (empty prompt, missing or broken model folder, unwritable output, bad sizes) end
with one ``error: ...`` line and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import re
import sys
import tempfile
from pathlib import Path

# before torch loads (it reads these once): OpenMP threads that wait for work sleep instead of
# spinning, so the command keeps its speed beside other busy processes (issue 44: 61 it/s idle,
# 46 s per step under load with spinning threads). A value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import validate  # noqa: E402

USER_ERROR = 2
SEED = validate.bounded_int(0, validate.MAX_SEED - 65536)  # leave room for seed + i per image
STEPS = validate.bounded_int(1, validate.Limits.max_steps)
CFG = validate.bounded_float(0.0, 100.0)
SIDE = validate.bounded_int(1, 65536)


class UserError(Exception):
    """A mistake in how thinkgen was called; printed as one line, exit code 2."""


def _quiet_libraries() -> None:
    """Keep transformers' and diffusers' loading bars out of the command's output."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    diffusers_logging.set_verbosity_error()


EMBEDDED = Path(__file__).resolve().parent / "assets" / "shapeworld"
# The embedded model's counterpart whose thinker sees images: the default for edits, which a
# text-only thinker cannot do (and reflection's judge when the embedded judge is not installed).
EMBEDDED_SEEING = Path(__file__).resolve().parent / "assets" / "shapeworld_vl"
# The seeing model's thinker taught to judge the embedded model's own drawings (docs/reflection.md):
# the default judge of reflection beside the embedded model.
EMBEDDED_JUDGE = Path(__file__).resolve().parent / "assets" / "shapeworld_judge"


DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16"}


def _load(model: str | None, dtype: str = "float32", device: str = "cpu", offload: str = "none",
          vae_tiling: bool = False, seeing: bool = False):
    """A pipeline folder, or the embedded ShapeWorld model when none is given (with ``seeing``:
    the embedded model whose thinker sees, if installed), in ``dtype``, on ``device`` or offloaded
    to it (``model``: one component at a time; ``sequential``: per layer)."""
    import torch

    from .pipeline import PipelineLoadError, ThinkGenPipeline

    if model is None and seeing and (EMBEDDED_SEEING / "model_index.json").exists():
        model = str(EMBEDDED_SEEING)
    if model is None:
        if not (EMBEDDED / "model_index.json").exists():
            raise UserError("no model given: pass --model DIR (`thinkgen init DIR` makes a tiny random one)")
        model = str(EMBEDDED)
    torch_device = usable_device(device)
    try:
        pipe = ThinkGenPipeline.from_pretrained(model, torch_dtype=getattr(torch, DTYPES[dtype]))
    except PipelineLoadError as error:
        raise UserError(str(error)) from None
    if vae_tiling:
        try:
            pipe.enable_vae_tiling().enable_vae_slicing()
        except ValueError as error:
            raise UserError(str(error)) from None
    if offload == "model":
        return pipe.enable_model_cpu_offload(torch_device)
    if offload == "sequential":
        return pipe.enable_sequential_cpu_offload(torch_device)
    return pipe.to(torch_device)


def cache_spec(text: str) -> str:
    """An argparse type: a step cache ``NAME[:key=value,...]`` (:mod:`thinkgen.caching`), checked
    before any model loads."""
    from .caching import cache_config

    try:
        cache_config(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _with_cache(pipe, spec: str | None):
    """``--cache``: diffusers' step-cache hooks on the pipeline's DiT."""
    if spec:
        try:
            pipe.enable_cache(spec)
        except ValueError as error:
            raise UserError(str(error)) from None
    return pipe


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
    return _draw(args, prompts)


def edit(args: argparse.Namespace) -> int:
    instruction = args.instruction.strip()
    if not instruction:
        raise UserError("the instruction is empty")
    sources = [_open_image(path) for path in [args.image, *args.more_images]]
    return _draw(args, [instruction], [sources])


def _open_image(path: str):
    """The source image of an edit, as RGB; a missing, unreadable or oversized file is one line."""
    from PIL import Image

    try:
        with Image.open(path) as image:  # the header only: the size is checked before any pixel is decoded
            if image.width * image.height > validate.MAX_IMAGE_PIXELS:
                raise UserError(f"{path}: {image.width}x{image.height} is above {validate.MAX_IMAGE_PIXELS:,} pixels")
            image.load()
            return image.convert("RGB")
    except FileNotFoundError:
        raise UserError(f"no such image: {path}") from None
    except Image.DecompressionBombError as error:
        raise UserError(f"{path}: {error}") from None
    except (OSError, ValueError, SyntaxError) as error:  # PIL: not an image, truncated, a folder
        raise UserError(f"cannot read {path} as an image: {error}") from None


def _draw(args: argparse.Namespace, prompts: list[str], images: list | None = None) -> int:
    """Generate (or, with ``images``, edit) and write the images; the shared body of both commands."""
    reflect = getattr(args, "reflect", 0)
    if reflect and args.batch > 1:
        raise UserError("--reflect draws one image per prompt: leave out --batch")
    correct = reflection_correction(args) if reflect else None  # a bad --tries fails before loading
    paths = _output_paths(args.output, len(prompts) * args.batch)
    judge_dir = getattr(args, "judge", None)
    if reflect and args.model is None and judge_dir is None:
        # the embedded model draws and corrects (it draws and edits best); the embedded judge judges
        judge_dir = _embedded_judge()
    # edits need a thinker that sees: without --model, the embedded one that does
    pipe = _with_cache(_load(args.model, args.dtype, args.device, args.offload, args.vae_tiling,
                             seeing=images is not None), args.cache)
    if args.max_pixels is not None:
        pipe.limits = dataclasses.replace(pipe.limits, max_pixels=args.max_pixels)
    height = pipe.defaults["height"] if args.height is None else args.height
    width = pipe.defaults["width"] if args.width is None else args.width
    try:
        pipe.check_size(height, width)
    except ValueError as error:
        raise UserError(str(error)) from None
    drawing = {"num_inference_steps": args.steps, "guidance_scale": args.cfg, "height": height, "width": width,
               "negative_prompt": args.negative_prompt, "generator_device": args.generator_device}
    try:
        if reflect:
            judge = reflection_judge(args, pipe, _load_judge(judge_dir) if judge_dir else None, correct)
            return _reflect(pipe, args, prompts, paths, drawing, correct, judge)
        out = pipe(prompts, think=args.think, seed=args.seed, num_images_per_prompt=args.batch, progress=True,
                   images=images, image_guidance_scale=args.image_cfg, **drawing)
    except ValueError as error:  # e.g. a schedule the scheduler cannot make for this step count
        raise UserError(str(error)) from None
    _print_thoughts(prompts, out.reasoning, out.rewritten, args.think, args.batch)
    for image, path in zip(out.images, paths, strict=True):
        _save_image(image, path)
    return 0


def _reflect(pipe, args: argparse.Namespace, prompts: list[str], paths: list[Path], drawing: dict, correct,
             judge=None) -> int:
    """``generate --reflect N``: the final image at each path, every judged image beside it
    (``out.round1.png`` is the first drawing, ``out.round2.png`` the first correction's, ...)."""
    from .reflection import generate_with_reflection

    out = generate_with_reflection(pipe, prompts, rounds=args.reflect, think=args.think, seed=args.seed,
                                   judge=judge, correct=correct,
                                   judge_against=args.judge_against, **drawing)
    for prompt, rounds, image, path in zip(prompts, out.rounds, out.images, paths, strict=True):
        print(f"prompt:    {prompt}")
        for k, judged in enumerate(rounds, 1):
            round_path = path.with_name(f"{path.stem}.round{k}{path.suffix}")
            _save_image(judged.image, round_path)
            action = "edit" if args.correct.endswith("edit") else "redraw; the judge wrote"
            votes = "" if judged.faulting_votes is None else f" ({judged.faulting_votes} of {args.votes} readings fault it)"
            print(f"round {k}:   {'right' if judged.right else f'{action}: {judged.verdict!r}'}{votes}")
        _save_image(image, path)
    return 0


def _save_image(image, path: Path) -> None:
    try:
        image.save(path)
    except OSError as error:
        raise UserError(f"cannot write {path}: {error}") from None
    print(f"wrote {path}")


def release_settings(args: argparse.Namespace) -> int:
    """Record a release's own prompts, read from its code, in its model folder."""
    from .loading import PipelineLoadError
    from .release_settings import adopt

    code = Path(args.from_code)
    if not code.exists():
        raise UserError(f"no such file or folder: {code}")
    try:
        found = adopt(Path(args.model), code)
    except (ValueError, OSError, PipelineLoadError) as error:
        raise UserError(str(error)) from None
    for what, where in found.sources.items():
        value = {**found.settings, **found.defaults}[what]
        shown = value if len(value) <= 70 else value[:67] + "..."
        print(f"{what} from {where}: {shown!r}")
    print(f"recorded in {Path(args.model) / 'model_index.json'}: loading the folder now applies them")
    return 0


def info(args: argparse.Namespace) -> int:
    if args.memory:
        import torch

        from .memory import memory_table
        from .pipeline import PipelineLoadError

        try:
            print(f"weights of {args.model} (from the configs, nothing loaded):")
            print(memory_table(args.model, getattr(torch, DTYPES[args.dtype])))
        except PipelineLoadError as error:
            raise UserError(str(error)) from None
        return 0
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
    print(f"  conditioning: {pipe.conditioning.name}")
    if pipe.bridge is not None:
        print(f"  thinker states: last {cfg.num_layers} layers x {pipe.thinker.hidden_size} = "
              f"{pipe.thinker.state_dim} channels, extract={cfg.extract}; "
              f"prepadding K={pipe.bridge.num_prepadding}, connector={pipe.bridge.config.connector}")
    print(f"  default size {pipe.defaults['height']}x{pipe.defaults['width']}, "
          f"sizes must be multiples of {pipe.multiple}")
    return 0


def usable_device(device: str):
    """A ``--device`` this machine has: cpu, or a GPU that torch can reach (cuda, mps, xpu)."""
    import torch

    try:
        torch_device = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserError(f"unknown device {device!r} (e.g. cpu, cuda, cuda:1, mps)") from None
    kind = torch_device.type
    if kind == "meta":
        raise UserError("--device meta holds no weights: draw on cpu or a GPU")
    backends = {"cuda": (torch.cuda, "CUDA"), "xpu": (getattr(torch, "xpu", None), "XPU"),
                "mps": (getattr(torch, "mps", None), "MPS")}
    if kind == "cpu":
        return torch_device
    if kind not in backends:
        raise UserError(f"device {device!r} is not one thinkgen draws on (cpu, cuda, mps, xpu)")
    module, name = backends[kind]
    available = module is not None and (torch.backends.mps.is_available() if kind == "mps" else module.is_available())
    if not available:
        raise UserError(f"device {device!r} asked for, but this torch has no {name} device")
    count = 1 if kind == "mps" else module.device_count()
    if (torch_device.index or 0) >= count:
        raise UserError(f"device {device!r} asked for, but this machine has {count} {name} device(s)")
    return torch_device


def init(args: argparse.Namespace) -> int:
    from .tiny import tiny_pipeline

    target = Path(args.directory)
    if target.exists() and not target.is_dir():
        raise UserError(f"{target} exists and is not a folder")
    if target.exists() and any(target.iterdir()):
        raise UserError(f"{target} exists and is not empty")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create {target}: {error}") from None
    tiny_pipeline(seed=args.seed).save_pretrained(target)
    print(f"wrote a tiny random (untrained) pipeline to {target}")
    return 0


DEMO_PROMPT = "as many squares as a tricycle has wheels, in the colour of a ripe banana"
DEMO_ANSWER = [("yellow", "square")] * 3
DEMO_SEEDS = 8  # the demo counts how often each mode draws its prompt right over this many seeds
DEMO_EDIT = "add a red circle"  # what the demo asks of its own drawing, when the thinker sees


def demo_objects(image) -> list[tuple[str, str]]:
    """The (colour, shape) pairs ShapeWorld's parser reads with confidence, sorted: compared with
    DEMO_ANSWER to judge the demo's drawing."""
    from .world.parse import parse

    return sorted((o.color, o.shape) for o in parse(image).objects if o.confidence >= 0.5)


def _reading(image, judge: bool) -> str:
    """What ShapeWorld's rule parser sees in an image; for the default prompt, whether it is right."""
    from collections import Counter

    found = demo_objects(image)
    counts = Counter(found)
    text = ", ".join(f"{n} {color} {shape}{'s' if n > 1 else ''}" for (color, shape), n in counts.items()) or "nothing"
    return text + (f" ({'right' if found == DEMO_ANSWER else 'wrong'}: the answer is 3 yellow squares)" if judge else "")


def _hit_rate(pipe, prompt: str, think: bool, seed: int) -> int:
    """How many of ``DEMO_SEEDS`` drawings of the demo prompt the parser reads as its answer (each
    seed thinks and draws anew)."""
    return sum(demo_objects(pipe([prompt], think=think, seed=seed + i).images[0]) == DEMO_ANSWER
               for i in range(DEMO_SEEDS))


def demo(args: argparse.Namespace) -> int:
    from .tiny import tiny_pipeline

    if args.prompt is not None and not args.prompt.strip():
        raise UserError("the prompt is empty (leave it out for the demo's own)")
    prompt = args.prompt or DEMO_PROMPT
    embedded = (EMBEDDED / "model_index.json").exists()
    if embedded:
        print(f"thinkgen demo: the embedded ShapeWorld model ({EMBEDDED})\n")
        pipe = _load(None)
    else:
        print("thinkgen demo: no embedded model is installed, so this builds a tiny pipeline with RANDOM,\n"
              "UNTRAINED weights. It shows the whole path (think -> VGI-refine -> DiT -> image) working;\n"
              "the reasoning is noise and the picture is noise.\n")
        with tempfile.TemporaryDirectory() as folder:
            tiny_pipeline(seed=0).save_pretrained(folder)
            pipe = _load(folder)
    # the edit and the reflection round need a thinker that sees: this model's, or the embedded seeing model's
    seer = pipe if pipe.thinker.processor is not None else _seeing_model(embedded)
    paths = _output_paths(args.output, 2 if seer is None else 4)
    judge = prompt == DEMO_PROMPT
    for think, path in zip((True, False), paths[:2], strict=True):
        out = pipe([prompt], think=think, seed=args.seed, progress=True)
        print(f"--- {'think' if think else 'direct (no thinking)'} mode")
        _print_thoughts([prompt], out.reasoning, out.rewritten, think, 1)
        out.images[0].resize((128, 128), 0).save(path)
        print(f"wrote {path}")
        print(f"the parser reads: {_reading(out.images[0], judge)}")
        if judge:  # one drawing proves little: how often this mode draws the prompt right
            right = _hit_rate(pipe, prompt, think, args.seed)
            print(f"over {DEMO_SEEDS} seeds ({args.seed}-{args.seed + DEMO_SEEDS - 1}), this mode draws it right "
                  f"{right} time{'s' if right != 1 else ''}")
        if think:
            drawn = out.images[0]  # what the edit and the reflection round start from
    thought = out.thinker
    print(f"conditioning: {int(thought.mask[0].sum())} states after </think> x {thought.states.shape[-1]} channels "
          f"(last {pipe.thinker.config.num_layers} layers) + {pipe.bridge.num_prepadding} prepadding states "
          f"-> DiT text width {pipe.bridge.config.out_channels}")
    if seer is None:
        return 0
    from .reflection import reflect

    if seer is not pipe:
        print(f"\nthe edit and the reflection round: the embedded model whose thinker sees ({EMBEDDED_SEEING})")
    print(f"--- edit: the thinker sees {paths[0]} (think mode) and the request {DEMO_EDIT!r}")
    edited = seer([DEMO_EDIT], think=True, images=[[drawn]], seed=args.seed)
    _print_thoughts([DEMO_EDIT], edited.reasoning, edited.rewritten, True, 1)
    edited.images[0].resize((128, 128), 0).save(paths[2])
    print(f"wrote {paths[2]}\nthe parser reads: {_reading(edited.images[0], False)}")
    print(f"--- reflection: the thinker judges {paths[0]} against the prompt (one round)")
    # the embedded judge (taught on the embedded model's drawings) judges when installed, and the
    # drawing model applies its edit: the embedded model edits better than the seeing one
    judge = seer
    if seer is not pipe and (EMBEDDED_JUDGE / "thinker_config.json").exists():
        judge = _load_judge(str(EMBEDDED_JUDGE))
        print(f"the judge: the embedded judge ({EMBEDDED_JUDGE}), taught on the embedded model's drawings")
    reflected = reflect(pipe, [prompt], [drawn], rounds=1, seed=args.seed, judge=judge)
    verdict = reflected.rounds[0][0]
    print(f"thinking: {verdict.reasoning}\nverdict: {verdict.verdict}")
    reflected.images[0].resize((128, 128), 0).save(paths[3])
    editor = "" if seer is pipe else " (the edit drawn by the model that drew it)"
    print(f"wrote {paths[3]} ({'unchanged: judged right' if verdict.right else 'after the edit' + editor})")
    print(f"the parser reads: {_reading(reflected.images[0], judge)}")
    return 0


def _embedded_judge() -> str | None:
    """The embedded judge's folder, else the embedded seeing model's, else None (not installed)."""
    for folder, marker in ((EMBEDDED_JUDGE, "thinker_config.json"), (EMBEDDED_SEEING, "model_index.json")):
        if (folder / marker).exists():
            return str(folder)
    return None


def _load_judge(folder: str):
    """``--judge DIR``: a pipeline folder's thinker, or a thinker folder."""
    from .pipeline import PipelineLoadError
    from .reflection import load_judge

    _quiet_libraries()
    try:
        return load_judge(folder)
    except (ValueError, OSError, PipelineLoadError) as error:
        raise UserError(f"cannot load a judge from {folder}: {error}") from None


def _seeing_model(embedded: bool):
    """Beside the embedded model, its counterpart whose thinker sees (for the demo's edit and
    reflection round), if installed; none beside a random tiny pipeline."""
    if not embedded or not (EMBEDDED_SEEING / "model_index.json").exists():
        return None
    return _load(str(EMBEDDED_SEEING))


_MADE: list[Path] = []  # output folders this command made: removed again if it is refused while they are empty


def _writable_dir(path: str) -> Path:
    folder = Path(path)
    try:
        missing = [p for p in (folder, *folder.parents) if not p.exists()]
        folder.mkdir(parents=True, exist_ok=True)
        _MADE.extend(missing)  # deepest first
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".thinkgen-write-test-"):
            pass
    except OSError as error:
        raise UserError(f"cannot write to {folder}: {error.strerror or error}") from None
    return folder


def serve_command(args: argparse.Namespace) -> int:
    import socket

    from .serve import Policy, serve

    usable_device(args.device)  # a device this machine lacks, and the address, fail before the model loads
    try:  # the address first: a port in use is one line now, not after the model has loaded
        with socket.create_server((args.host, args.port)):
            pass
    except OSError as error:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}") from None
    pipe = _with_cache(_load(args.model, args.dtype, args.device), args.cache)
    name = "thinkgen-shapeworld" if args.model is None else Path(args.model).name
    api_key = args.api_key or os.environ.get("THINKGEN_API_KEY") or None
    policy = Policy.for_model(pipe.defaults, args.host, args.port, args.max_pixels, api_key, tuple(args.allow_origin))
    print(f"thinkgen: serving {name} on http://{args.host}:{args.port} (OpenAI images API; page at /)"
          f"{'; API key required' if api_key else ''}; up to {policy.max_pixels:,} pixels per image")
    serve(pipe, args.host, args.port, model_name=name, capacity=args.queue, window_s=args.window_ms / 1000,
          batching=not args.no_batching, policy=policy)
    return 0


def _override(text: str) -> tuple[str, object]:
    import yaml

    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. run.steps=100), got {text!r}")
    key, value = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with a dotted key (e.g. run.steps=100), got {text!r}")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"the value of {text!r} is not valid YAML") from None
    if isinstance(parsed, str) and re.fullmatch(r"[+-]?\d+(\.\d*)?[eE][+-]?\d+", parsed):
        parsed = float(parsed)  # YAML 1.1 reads 5e-4 (no dot) as a string; on a command line it is a number
    return key, parsed


def train_command(args: argparse.Namespace) -> int:
    from .data import DataError
    from .pipeline import PipelineLoadError
    from .train.config import ConfigError
    from .train.run import run

    if args.plan:
        return plan_command(args)
    if args.gpus is not None or args.gpu_memory is not None:
        raise UserError("--gpus and --gpu-memory go with --plan")
    try:
        final = run(args.config, resume=args.resume, overrides=dict(args.set or []))
    except (ConfigError, PipelineLoadError, DataError) as error:
        raise UserError(str(error)) from None
    except FileNotFoundError as error:  # a data folder the config names (data.drawn_edits, ...)
        raise UserError(str(error)) from None
    except KeyboardInterrupt:
        return 130
    if int(os.environ.get("RANK", "0")) == 0:  # one line, not one per process
        print(f"wrote {final}")
    return 0


def plan_command(args: argparse.Namespace) -> int:
    """Memory per GPU for a config, from the meta device; exit status 1 when it does not fit."""
    from .pipeline import PipelineLoadError
    from .train.config import ConfigError, load
    from .train.plan import plan_table

    if args.gpus is None or args.gpu_memory is None:
        raise UserError("--plan needs --gpus N and --gpu-memory GiB (e.g. --gpus 8 --gpu-memory 80)")
    try:
        config = load(args.config, dict(args.set or []))
        table, fits = plan_table(config, args.gpus, args.gpu_memory)
    except (ConfigError, PipelineLoadError, ValueError) as error:
        raise UserError(str(error)) from None
    print(table, flush=True)
    if not fits:
        ways = [way for way, done in (("shard it (parallel.strategy: fsdp)", config.parallel.strategy == "fsdp"),
                                      ("turn on run.gradient_checkpointing", config.run.gradient_checkpointing),
                                      ("train LoRA adapters (lora.rank)", config.lora.rank > 0)) if not done]
        raise UserError(f"{args.config} does not fit {args.gpus} GPU(s) of {args.gpu_memory:g} GiB: "
                        + ", ".join([*ways, "use more GPUs or a smaller run.batch_size"]))
    return 0


def _drawing_options(g: argparse.ArgumentParser) -> None:
    """The options of `generate` and `edit`."""
    g.add_argument("--model", help="pipeline folder (default: the embedded ShapeWorld model; for edit and "
                                   "--reflect, its counterpart whose thinker sees, when installed)")
    g.add_argument("--cache", type=cache_spec, default=None, metavar="NAME[:k=v,...]",
                   help="step caching with diffusers' hooks, e.g. first_block:threshold=0.05 or "
                   "taylorseer:cache_interval=2 (default: off; its price: docs/guides/speed.md)")
    g.add_argument("--think", action=argparse.BooleanOptionalAction, default=True,
                   help="reason before drawing (default) or use the direct pseudo-CoT template")
    g.add_argument("-o", "--output", type=validate.path, default="out.png",
                   help="image path (out.png; out-0.png, ... for several)")
    g.add_argument("--steps", type=STEPS, default=None, help="sampling steps")
    g.add_argument("--cfg", type=CFG, default=None, help="classifier-free guidance scale")
    g.add_argument("--seed", type=SEED, default=0)
    g.add_argument("--batch", type=validate.bounded_int(1, 256), default=1, help="images per prompt")
    g.add_argument("--height", type=SIDE, default=None)
    g.add_argument("--width", type=SIDE, default=None)
    g.add_argument("--max-pixels", type=validate.bounded_int(1, validate.MAX_IMAGE_PIXELS), default=None,
                   help=f"refuse images above this many pixels (default {validate.Limits.max_pixels:,})")
    g.add_argument("--negative-prompt", default=None, help="the negative branch of CFG (default: the model's)")
    g.add_argument("--dtype", choices=sorted(DTYPES), default="float32",
                   help="weights and compute (bf16 for real checkpoints on a GPU)")
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    g.add_argument("--generator-device", default=None,
                   help="where the initial noise is drawn (default cpu: a seed gives one picture everywhere; "
                        "cuda: the releases' own scripts' noise for a seed)")
    g.add_argument("--offload", choices=["none", "model", "sequential"], default="none",
                   help="keep weights in CPU memory: model = one component on the device at a time, "
                        "sequential = one layer at a time (least memory)")
    g.add_argument("--vae-tiling", action="store_true",
                   help="decode tile by tile and image by image (large images, little memory)")


def reflection_correction(args: argparse.Namespace):
    """``--correct`` with its ``--tries``, as a :class:`thinkgen.reflection.Correction`; the voting
    options are checked here too, so that they fail before a model loads."""
    from .reflection import correction

    votes, quorum, keep = args.votes, args.quorum, args.keep_quorum
    if votes is None and (quorum is not None or keep is not None):
        raise UserError("--quorum and --keep-quorum need --votes")
    for name, value in (("--quorum", quorum), ("--keep-quorum", keep)):
        if value is not None and value > votes:
            raise UserError(f"{name} {value} is more than the {votes} votes")
    if keep is not None and not (args.correct.startswith("checked-") or args.correct.startswith("retry-")):
        raise UserError(f"--keep-quorum applies to the checked- and retry- corrections, not {args.correct!r}")
    try:
        return correction(args.correct, args.tries)
    except ValueError as error:  # --tries with a correction that makes one
        raise UserError(str(error)) from None


def reflection_judge(args: argparse.Namespace, pipe, judge, correct):
    """The round's judge that ``--votes`` and ``--reading-check`` ask for, built on ``judge``
    (default: the drawing model's thinker): a :class:`thinkgen.reflection.VotingJudge`, wrapped
    in a :class:`~thinkgen.reflection.ReadingCheckedJudge`. A checked-/retry- correction keeps
    its results by the judge's own greedy reading, or with ``--keep-quorum`` by its votes. With
    neither option the judge is returned as it is."""
    if args.votes is None and not args.reading_check:
        return judge
    from .reflection import Checked, ReadingCheckedJudge, VotingJudge
    from .world.corpora import reading_matches

    reader = pipe.thinker if judge is None else judge
    decides = reader if args.votes is None else VotingJudge(reader, args.votes, args.quorum)
    if args.reading_check:
        decides = ReadingCheckedJudge(decides, reading_matches)
    if isinstance(correct, Checked):
        correct.verifier = reader if args.keep_quorum is None else VotingJudge(reader, args.votes, args.keep_quorum)
    return decides


# thinkgen.reflection.CORRECTIONS' names (a test keeps them equal; the CLI starts without importing it)
CORRECTION_NAMES = ["checked-edit", "checked-redraw", "edit", "redraw", "retry-edit", "retry-redraw"]
JUDGED_AGAINST_NAMES = ["prompt", "rewrite"]  # thinkgen.reflection.JUDGED_AGAINST


def _reflection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--correct", choices=CORRECTION_NAMES, default="edit",
                        help="what a round does with an image judged wrong: apply the judge's edit "
                             "(default), or draw the prompt again from new noise; checked-: keep the "
                             "result only when the judge calls it right; retry-: up to four tries (--tries), "
                             "the first the judge calls right is kept")
    parser.add_argument("--tries", type=validate.bounded_int(1, 64), default=None, metavar="N",
                        help="corrections a retry- correction makes per image and round (default 4)")
    parser.add_argument("--judge-against", choices=JUDGED_AGAINST_NAMES, default="prompt",
                        help="what the judge checks each image against: the prompt (default) or, in think "
                             "mode, the instruction the drawing thinker wrote after </think>")
    parser.add_argument("--judge", type=validate.path, default=None, metavar="DIR",
                        help="who judges the drawings: a pipeline folder whose thinker sees, or a thinker "
                             "folder (default: the drawing model's own thinker; without --model, the "
                             "embedded judge)")
    parser.add_argument("--votes", type=validate.bounded_int(1, 64), default=None, metavar="N",
                        help="the judge reads each image N times, sampling, and faults it only when "
                             "--quorum of the readings do (default: one greedy reading)")
    parser.add_argument("--quorum", type=validate.bounded_int(1, 64), default=None, metavar="Q",
                        help="faulting votes that make an image wrong (default: a majority of --votes)")
    parser.add_argument("--keep-quorum", type=validate.bounded_int(1, 64), default=None, metavar="K",
                        help="a checked-/retry- correction is kept when fewer than K votes fault it "
                             "(default: when the judge's greedy reading calls it right; 1: only when "
                             "every vote does)")
    parser.add_argument("--reading-check", action="store_true",
                        help="take back a fault when the judge's own trace reads the image as what it "
                             "reads the request to ask for (ShapeWorld's rules)")


def _sampling_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="pipeline folder")
    parser.add_argument("--think", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--steps", type=STEPS, default=None, help="sampling steps")
    parser.add_argument("--cfg", type=CFG, default=None, help="classifier-free guidance scale")
    parser.add_argument("--seed", type=SEED, default=0)
    parser.add_argument("--batch", type=validate.bounded_int(1, 256), default=8, help="prompts per batch")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (and exit code 2) like every other user error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(USER_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="thinkgen", description="Think, then generate images.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    g = commands.add_parser("generate", help="generate images from prompts")
    g.add_argument("prompt", nargs="+", type=validate.text, help="one or more prompts")
    _drawing_options(g)
    g.add_argument("--reflect", type=validate.bounded_int(0, 16), default=0, metavar="N",
                   help="up to N rounds in which a thinker that sees judges the image and it is corrected "
                        "when judged wrong (without --model: the embedded model draws and corrects, the "
                        "embedded judge judges)")
    _reflection_options(g)
    g.set_defaults(run=generate, image_cfg=None)  # no source image, no image scale

    e = commands.add_parser("edit", help="edit an image by an instruction (the source image conditions the DiT)")
    e.add_argument("image", type=validate.path, help="the source image (resized to --height x --width)")
    e.add_argument("instruction", type=validate.text, help='e.g. "make the circle red"')
    _drawing_options(e)
    e.add_argument("--image-cfg", type=CFG, default=None,
                   help="image guidance scale of three-way CFG (default: the model's); --cfg is the text scale")
    e.add_argument("--and-image", dest="more_images", action="append", default=[], type=validate.path,
                   metavar="IMAGE", help="a further source image, after the first (repeatable; the ThinkGen "
                   "release takes up to 5, e.g. 'put the cat of image 2 on the sofa of image 1')")
    e.set_defaults(run=edit)

    i = commands.add_parser("info", help="print a pipeline's components and parameter counts")
    i.add_argument("model", help="pipeline folder (a config-only folder is enough with --memory)")
    i.add_argument("--memory", action="store_true",
                   help="parameters and weight memory per component from the configs, without loading weights")
    i.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16", help="for --memory (default bf16)")
    i.set_defaults(run=info)

    rs = commands.add_parser("release-settings", help="apply a release's own prompts, read from its code, to its folder")
    rs.add_argument("model", help="the release's model folder (ThinkGen, or T2G / QwenImagePipeline)")
    rs.add_argument("--from-code", required=True, help="a clone of the release's code repository (or one .py file)")
    rs.set_defaults(run=release_settings)

    n = commands.add_parser("init", help="write a tiny random pipeline (for tests and experiments)")
    n.add_argument("directory")
    n.add_argument("--seed", type=SEED, default=0)
    n.set_defaults(run=init)

    from .cli_benchmarks import add_benchmark_commands

    add_benchmark_commands(commands)

    t = commands.add_parser("train", help="train one stage from a YAML config (also under accelerate launch)")
    t.add_argument("config", help="YAML file, see configs/")
    t.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    t.add_argument("--set", action="append", type=_override, metavar="KEY=VALUE",
                   help="override a config value, e.g. --set run.steps=100 (repeatable)")
    t.add_argument("--plan", action="store_true",
                   help="print the memory each GPU needs (from the meta device) and whether it fits; train nothing")
    t.add_argument("--gpus", type=validate.bounded_int(1, 100_000), default=None, help="with --plan: how many GPUs")
    t.add_argument("--gpu-memory", type=validate.bounded_float(1, 100_000), default=None, metavar="GIB",
                   help="with --plan: memory of one GPU in GiB")
    t.set_defaults(run=train_command)

    v = commands.add_parser("serve", help="serve an OpenAI-compatible images API and a web page")
    v.add_argument("--model", type=validate.path, help="pipeline folder (default: the embedded ShapeWorld model)")
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", type=validate.bounded_int(1, 65535), default=8000)
    v.add_argument("--queue", type=validate.bounded_int(1, 10_000), default=64, help="requests waiting or running")
    v.add_argument("--window-ms", type=validate.bounded_float(0, 10_000), default=20,
                   help="how long a batch waits for more requests")
    v.add_argument("--no-batching", action="store_true", help="one request per batch (for comparison)")
    v.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on the API "
                   "(default: $THINKGEN_API_KEY if set, else none)")
    v.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="a web origin whose pages may call the API, e.g. https://app.example (repeatable; "
                   "'*' allows any origin and any Host name)")
    v.add_argument("--max-pixels", type=validate.bounded_int(16, validate.MAX_IMAGE_PIXELS), default=None,
                   help="largest image a request may ask for (default: 4 x the model's own size)")
    v.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    v.add_argument("--device", default="cpu")
    v.add_argument("--cache", type=cache_spec, default=None, metavar="NAME[:k=v,...]",
                   help="step caching with diffusers' hooks (as in generate)")
    v.set_defaults(run=serve_command)

    d = commands.add_parser("demo", help="run the default model on a reasoning prompt")
    d.add_argument("prompt", nargs="?", type=validate.text, default=None, help="default: a reasoning prompt")
    d.add_argument("-o", "--output", type=validate.path, default="demo.png",
                   help="writes demo-0.png (think) and demo-1.png (direct); with a thinker that sees (the "
                        "model's or the embedded seeing model's), also demo-2.png (an edit of demo-0) and "
                        "demo-3.png (demo-0 after a reflection round)")
    d.add_argument("--seed", type=SEED, default=0)
    d.set_defaults(run=demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # argparse itself exits with 2 on bad usage
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _quiet_libraries()
    try:
        code = args.run(args)
    except UserError as error:
        for folder in _MADE:  # a refused command leaves no empty output folders behind
            with contextlib.suppress(OSError):
                folder.rmdir()
        print(f"thinkgen: error: {' '.join(str(error).split())}", file=sys.stderr)  # always one line
        return USER_ERROR
    except KeyboardInterrupt:
        print("thinkgen: interrupted", file=sys.stderr)
        code = 130
    finally:
        _MADE.clear()
    if code == 130 and argv is None:  # the command line, interrupted: a further Ctrl-C while the
        import signal  # interpreter shuts down must not turn exit 130 into a death by signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)
    return code


if __name__ == "__main__":
    sys.exit(main())
