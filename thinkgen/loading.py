"""Reading and writing pipeline folders, in every layout thinkgen runs.

* **thinkgen** — ``model_index.json`` names ``thinker``, ``tokenizer`` or ``processor``,
  ``bridge``, ``transformer``, ``vae``, ``scheduler``, plus ``thinker_config``, ``defaults`` and
  ``conditioning`` (``{"name": ..., "settings": {...}}``; absent means ``thinkgen``).
* **ThinkGen release** (``JSYuuu/ThinkGen``) — ``mllm`` (Qwen3-VL), ``processor``, ``transformer``
  (ThinkGen's DiT), ``vae`` (FLUX's AutoencoderKL), ``scheduler``. Its ``model_index.json`` names
  the release's own Python modules and a ``_split_seq`` entry: those are mapped to thinkgen's and
  diffusers' classes by class name, never imported. The DiT's safetensors are checked key by key
  and shape by shape against the model before loading.
* **diffusers QwenImagePipeline** (the T2G release) — ``text_encoder``, ``tokenizer``,
  ``transformer``, ``vae``, ``scheduler``. Read unchanged with the ``qwen-image`` conditioning.
  thinkgen's own choices go under a private ``_thinkgen`` key, which diffusers ignores, so a folder
  thinkgen writes in this layout still loads with ``QwenImagePipeline.from_pretrained``.

Only classes from transformers, diffusers or thinkgen are instantiated, only from local files,
and weights only from safetensors.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .processors import load_processor, save_processor
from .thinker import Thinker, ThinkerConfig
from .validate import (
    CONFIG_BYTES,
    MAX_PARAMETERS,
    TEXT_BYTES,
    FileTooLarge,
    ModelConfigError,
    check_model_config,
    read_text,
)

if TYPE_CHECKING:
    from .pipeline import ThinkGenPipeline

MODEL_INDEX = "model_index.json"
MODULES = ("thinker", "text_encoder", "mllm", "bridge", "transformer", "vae")
# diffusers' defaults for Qwen-Image, with T2G's guidance (true CFG 4 with the negative prompt " ")
# ThinkGen_Chat's settings (1024x1024, 50 steps, text CFG 4, image CFG 2), negative prompt "" (settable)
THINKGEN_RELEASE_DEFAULTS = {"height": 1024, "width": 1024, "num_inference_steps": 50, "guidance_scale": 4.0,
                             "image_guidance_scale": 2.0, "negative_prompt": ""}
# The release's own modules, mapped by class name (nothing of the release is imported)
RELEASE_CLASSES = {"ThinkGenTransformer2DModel": ("thinkgen", "ThinkGenTransformer2DModel"),
                   "FlowMatchEulerDiscreteScheduler": ("diffusers", "FlowMatchEulerDiscreteScheduler")}
QWEN_IMAGE_DEFAULTS = {"height": 1024, "width": 1024, "num_inference_steps": 50, "guidance_scale": 4.0,
                       "negative_prompt": " "}


@dataclass(frozen=True)
class ForeignLayout:
    """A release's own folder layout: which components hold the thinker and its tokenizer."""

    title: str
    class_name: str  # the model_index "_class_name" written back
    thinker: str
    text: str  # the tokenizer, or the VLM processor
    conditioning: str
    defaults: dict[str, Any]


FOREIGN = {
    "qwen-image": ForeignLayout("a QwenImagePipeline folder", "QwenImagePipeline", "text_encoder", "tokenizer",
                                "qwen-image", QWEN_IMAGE_DEFAULTS),
    "thinkgen-release": ForeignLayout("a ThinkGen release folder", "ThinkGenCoTPipeline", "mllm", "processor",
                                      "thinkgen-release", THINKGEN_RELEASE_DEFAULTS),
}


class PipelineLoadError(Exception):
    """A pipeline folder is missing, incomplete or unreadable."""


def read_index(directory: Path) -> dict[str, Any]:
    if not directory.is_dir():
        raise PipelineLoadError(f"model folder not found: {directory}")
    try:
        index = json.loads(read_text(directory / MODEL_INDEX, CONFIG_BYTES, MODEL_INDEX))
    except FileTooLarge as error:
        raise PipelineLoadError(str(error)) from None
    except FileNotFoundError:
        raise PipelineLoadError(f"{directory} is not a thinkgen pipeline or diffusers QwenImagePipeline folder (no {MODEL_INDEX})") from None
    except IsADirectoryError:
        raise PipelineLoadError(f"{directory / MODEL_INDEX} is a folder, not a JSON file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PipelineLoadError(f"{directory / MODEL_INDEX} is not valid JSON: {error}") from None
    if not isinstance(index, dict):
        raise PipelineLoadError(f"{directory / MODEL_INDEX} must hold a JSON object")
    return index


def layout_of(index: dict[str, Any]) -> str:
    """``"qwen-image"`` (diffusers QwenImagePipeline), ``"thinkgen-release"`` or ``"thinkgen"``."""
    if index.get("_class_name") == "QwenImagePipeline" or "text_encoder" in index:
        return "qwen-image"
    if "mllm" in index:
        return "thinkgen-release"
    return "thinkgen"


# The classes a model_index.json may name: an explicit list, never an arbitrary attribute of a
# module (["torch", "load"] or ["transformers", "pipeline"] must not resolve). Add here to support more.
SUPPORTED_CLASSES: dict[str, frozenset[str]] = {
    "transformers": frozenset({
        # thinkers and text encoders
        "Qwen3ForCausalLM", "Qwen2ForCausalLM", "LlamaForCausalLM",
        "Qwen2VLForConditionalGeneration", "Qwen2_5_VLForConditionalGeneration", "Qwen3VLForConditionalGeneration",
        # tokenizers and processors
        "PreTrainedTokenizerFast", "TokenizersBackend", "Qwen2Tokenizer", "Qwen2TokenizerFast",
        "Qwen2VLProcessor", "Qwen2_5_VLProcessor", "Qwen3VLProcessor"}),
    "diffusers": frozenset({"QwenImageTransformer2DModel", "AutoencoderKL", "AutoencoderKLQwenImage",
                            "FlowMatchEulerDiscreteScheduler"}),
    "thinkgen": frozenset({"Bridge", "PixelAutoencoder", "ThinkGenTransformer2DModel"}),
}


def component_class(index: dict[str, Any], name: str) -> type:
    import diffusers
    import transformers

    from . import bridge as bridge_module
    from . import generator as generator_module
    from . import models as models_module

    libraries = {"transformers": (transformers,), "diffusers": (diffusers,),
                 "thinkgen": (bridge_module, generator_module, models_module)}
    entry = index.get(name)
    try:
        library, class_name = entry
        if library not in libraries and class_name in RELEASE_CLASSES:  # a release module path
            library, class_name = RELEASE_CLASSES[class_name]
        if class_name not in SUPPORTED_CLASSES[library]:
            raise KeyError(class_name)
        return next(getattr(o, class_name) for o in libraries[library] if hasattr(o, class_name))
    except (KeyError, ValueError, TypeError, StopIteration):
        raise PipelineLoadError(f"{MODEL_INDEX}: unsupported class for {name}: {entry!r} (thinkgen loads "
                                "the classes listed in thinkgen.loading.SUPPORTED_CLASSES)") from None


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def _require_safetensors(folder: Path, name: str) -> None:
    """Weights are read from safetensors only: pickle files can run code when loaded."""
    if not folder.is_dir() or any(folder.glob("*.safetensors")):
        return  # a missing folder is reported by the library's own loader
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise PipelineLoadError(f"{folder}: {name} has pickle weights only ({', '.join(pickles[:3])}); thinkgen "
                                "loads safetensors only (convert them with safetensors.torch.save_file)")


def check_weights(folder: Path, klass: type) -> None:
    """Refuse a DiT checkpoint whose keys or shapes differ from the model its config builds (the
    release loads with ``ignore_mismatched_sizes``, which would silently re-initialise them)."""
    from accelerate import init_empty_weights
    from safetensors import safe_open

    with init_empty_weights():
        expected = {k: tuple(v.shape) for k, v in klass.from_config(klass.load_config(folder)).state_dict().items()}
    found: dict[str, tuple[int, ...]] = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(file, framework="pt") as weights:
            found.update({k: tuple(weights.get_slice(k).get_shape()) for k in weights.keys()})  # noqa: SIM118
    tolerated = {"prepad_mask"}  # a buffer the release may or may not have saved
    missing = sorted(set(expected) - set(found) - tolerated)
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if missing or unexpected or wrong:
        detail = [f"missing {missing[:3]}" if missing else "", f"unexpected {unexpected[:3]}" if unexpected else "",
                  f"shape of {wrong[0]}: {found[wrong[0]]} in the file, {expected[wrong[0]]} in the model" if wrong else ""]
        raise PipelineLoadError(f"{folder}: the weights do not fit {klass.__name__}: "
                                + "; ".join(d for d in detail if d))


SAFETENSORS_ITEM_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                          "U16": 2, "U32": 4, "U64": 8, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024


def check_component_files(folder: Path) -> None:
    """Before any library reads a component folder: every file it may read whole is a regular file
    within its size limit, and ``config.json`` asks for sane sizes (before a module is built)."""
    if not folder.is_dir():
        return
    for file in folder.iterdir():
        if file.suffix == ".safetensors" or file.is_dir():
            continue
        if not file.is_file():
            raise PipelineLoadError(f"{file}: not a regular file")
        limit = CONFIG_BYTES if file.name.endswith("config.json") else TEXT_BYTES
        if file.stat().st_size > limit:
            raise PipelineLoadError(f"{file}: {file.stat().st_size:,} bytes, above the limit of {limit:,} for a "
                                    "file read whole")
    if not (folder / "config.json").is_file():
        return
    try:
        config = json.loads(read_text(folder / "config.json", CONFIG_BYTES))
    except (ValueError, UnicodeDecodeError):  # bad JSON is the library's to report; the sizes are ours
        return
    try:
        check_model_config(config, str(folder / "config.json"))
    except ModelConfigError as error:
        raise PipelineLoadError(str(error)) from None


def check_safetensors(folder: Path, expected_numbers: int | None = None) -> None:
    """Each safetensors file's header read alone and checked against the file's real size (every
    tensor inside the file, its bytes those of its shape and dtype), and the numbers of all files
    together no more than the model holds: no tensor is materialised before."""
    total = 0
    for file in sorted(folder.glob("*.safetensors")):
        size = file.stat().st_size
        with open(file, "rb") as f:
            head = f.read(8)
            length = int.from_bytes(head, "little") if len(head) == 8 else -1
            if not 0 < length <= min(size - 8, MAX_SAFETENSORS_HEADER):
                raise PipelineLoadError(f"{file}: not a safetensors file (its header length does not fit the file)")
            try:
                header = json.loads(f.read(length))
            except (ValueError, UnicodeDecodeError):
                raise PipelineLoadError(f"{file}: its safetensors header is not JSON") from None
        if not isinstance(header, dict):
            raise PipelineLoadError(f"{file}: its safetensors header is not a JSON object")
        data = size - 8 - length
        for key, entry in header.items():
            if key == "__metadata__":
                continue
            try:
                start, end = entry["data_offsets"]
                numbers = math.prod(entry["shape"])
                item = SAFETENSORS_ITEM_BYTES[entry["dtype"]]
            except (KeyError, TypeError, ValueError):
                raise PipelineLoadError(f"{file}: tensor {key!r} has a malformed header entry") from None
            if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end <= data) \
                    or numbers * item != end - start:
                raise PipelineLoadError(f"{file}: tensor {key!r} does not fit the file ({data:,} bytes of data; "
                                        f"offsets {start}..{end} for {entry['shape']} {entry['dtype']})")
            total += numbers
    if expected_numbers is not None and total > expected_numbers * 1.01 + 4096:
        raise PipelineLoadError(f"{folder}: the weights hold {total:,} numbers, the model {expected_numbers:,}")


def _expected_numbers(directory: Path, index: dict[str, Any], name: str) -> int:
    """Parameters and buffers of a component built from its config on the meta device."""
    from .memory import empty_model

    model = empty_model(directory, index, name)
    count = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    if count > MAX_PARAMETERS:
        raise PipelineLoadError(f"{directory / name}: its config makes a model of {count:,} parameters, above the "
                                f"ceiling of {MAX_PARAMETERS:,}")
    return count


def _load_component(directory: Path, index: dict[str, Any], name: str, dtype: torch.dtype | None) -> Any:
    klass = component_class(index, name)
    if name in MODULES and (directory / name).is_dir():  # building the meta model checks the files first
        check_safetensors(directory / name, _expected_numbers(directory, index, name))
    else:
        check_component_files(directory / name)
    if klass.__name__ == "ThinkGenTransformer2DModel":
        check_weights(directory / name, klass)
    if name == "scheduler" and layout_of(index) == "thinkgen-release":  # the release's own class: its
        import inspect  # config has keys diffusers' scheduler lacks (dynamic_time_shift): keep the known ones

        config = klass.load_config(directory / name)
        known = set(inspect.signature(klass.__init__).parameters)
        return klass.from_config({k: v for k, v in config.items() if k in known})
    kwargs: dict[str, Any] = {}
    if name in MODULES:
        _require_safetensors(directory / name, name)
    if name in ("thinker", "text_encoder", "mllm"):
        kwargs = {"local_files_only": True, "dtype": dtype or "auto", "use_safetensors": True}
    elif name in ("tokenizer", "processor"):
        kwargs = {"local_files_only": True}
    elif name != "scheduler":
        kwargs = {"use_safetensors": True, **({"torch_dtype": dtype} if dtype is not None else {})}
    try:
        if name == "processor":
            return load_processor(klass, directory / name)
        component = klass.from_pretrained(directory / name, **kwargs)
    except Exception as error:  # any library's own error: report which component broke
        raise PipelineLoadError(f"cannot load {name} from {directory / name}: {' '.join(str(error).split())[:500]}") from error
    if name in MODULES:
        missing = [n for n, p in component.named_parameters() if p.is_meta]
        if missing:  # weights the files did not provide: refuse now, not at the first forward
            raise PipelineLoadError(f"{directory / name}: the weights lack {len(missing)} tensor(s), e.g. {missing[0]}")
        realign(component)
        component.eval()
    return component


def realign(module: torch.nn.Module) -> None:
    """Copy into fresh memory (torch's allocator aligns it to 64 bytes) every CPU weight the loader
    left misaligned. safetensors can hand back tensors that live inside its own read buffer, and
    the CPU matmul kernels sum in another order on such memory, so without this a loaded model does
    not reproduce the saved one's outputs bit for bit (measured: 4e-7 apart after two steps)."""
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        if tensor.device.type == "cpu" and tensor.data_ptr() % 64:
            tensor.data = tensor.data.clone()


DEFAULT_TYPES = {"height": int, "width": int, "num_inference_steps": int, "guidance_scale": (int, float),
                 "image_guidance_scale": (int, float), "negative_prompt": str}


def check_metadata(index: dict[str, Any], where: Path) -> None:
    """The settings thinkgen keeps in model_index.json: the right shapes and types, or one clear error."""
    own = index.get("_thinkgen", index)
    if not isinstance(own, dict):
        raise PipelineLoadError(f"{where}: _thinkgen must be a JSON object")
    for key in ("thinker_config", "defaults", "conditioning"):
        if key in own and not isinstance(own[key], dict):
            raise PipelineLoadError(f"{where}: {key} must be a JSON object, got {type(own[key]).__name__}")
    for key, value in (own.get("defaults") or {}).items():
        expected = DEFAULT_TYPES.get(key)
        if expected is None:
            raise PipelineLoadError(f"{where}: unknown default {key!r}; known: {sorted(DEFAULT_TYPES)}")
        if not isinstance(value, expected) or isinstance(value, bool) or (expected is int and value < 1):
            raise PipelineLoadError(f"{where}: defaults.{key} has a wrong value: {value!r}")
    try:
        ThinkerConfig(**(own.get("thinker_config") or {}))
    except (TypeError, ValueError) as error:
        raise PipelineLoadError(f"{where}: bad thinker_config: {error}") from None


def _thinker(model: Any, text: Any, config: dict[str, Any]) -> Thinker:
    """A thinker from a model and its tokenizer or VLM processor (a processor carries a tokenizer)."""
    is_processor = hasattr(text, "tokenizer")
    return Thinker(model, tokenizer=None if is_processor else text, processor=text if is_processor else None,
                   config=ThinkerConfig(**config))


def check_chat_template(thinker: Thinker, where: Path) -> None:
    """Render the folder's chat template once, on a tiny conversation, within the time and size
    budget: a hostile template is refused when the folder loads, not at its first prompt."""
    from .thinker import ChatTemplateError, render_chat

    templater = thinker.processor if thinker.processor is not None else thinker.tokenizer
    if not getattr(templater, "chat_template", None):
        return
    try:
        render_chat(templater, [{"role": "user", "content": "a red circle"}])
    except ChatTemplateError as error:  # a template that fails on a plain conversation fails the load
        raise PipelineLoadError(f"{where}: {error}") from None


def load_folder(directory: Path, torch_dtype: torch.dtype | None = None) -> dict[str, Any]:
    """The keyword arguments of :class:`ThinkGenPipeline` for a folder in any supported layout."""
    parts = _load_folder(directory, torch_dtype)
    check_chat_template(parts["thinker"], directory)
    return parts


def _load_folder(directory: Path, torch_dtype: torch.dtype | None = None) -> dict[str, Any]:
    index = read_index(directory)
    check_metadata(index, directory / MODEL_INDEX)
    layout = FOREIGN.get(layout_of(index))
    if layout is not None:  # a release's own layout: thinkgen's choices, if any, under "_thinkgen"
        names = (layout.thinker, layout.text, "transformer", "vae", "scheduler")
        missing = set(names) - set(index)
        if missing:
            raise PipelineLoadError(f"{directory} ({layout.title}) lacks components: {sorted(missing)}")
        own = index.get("_thinkgen") or {}
        loaded = {name: _load_component(directory, index, name, torch_dtype) for name in names}
        conditioning = own.get("conditioning") or {"name": layout.conditioning}
        return {"thinker": _thinker(loaded[layout.thinker], loaded[layout.text], own.get("thinker_config", {})),
                "bridge": None, "transformer": loaded["transformer"], "vae": loaded["vae"],
                "scheduler": loaded["scheduler"], "defaults": {**layout.defaults, **own.get("defaults", {})},
                "conditioning": conditioning.get("name", layout.conditioning),
                "conditioning_settings": conditioning.get("settings")}
    missing = {"thinker", "bridge", "transformer", "vae", "scheduler"} - set(index)
    if missing or not ({"tokenizer", "processor"} & set(index)):
        raise PipelineLoadError(f"{directory} lacks components: {sorted(missing) or ['tokenizer']}")
    loaded = {name: _load_component(directory, index, name, torch_dtype)
              for name in ("thinker", "tokenizer", "processor", "bridge", "transformer", "vae", "scheduler")
              if name in index}
    thinker = Thinker(loaded["thinker"], tokenizer=loaded.get("tokenizer"), processor=loaded.get("processor"),
                      config=ThinkerConfig(**index.get("thinker_config", {})))
    conditioning = index.get("conditioning") or {"name": "thinkgen"}
    return {"thinker": thinker, "bridge": loaded["bridge"], "transformer": loaded["transformer"],
            "vae": loaded["vae"], "scheduler": loaded["scheduler"], "defaults": index.get("defaults"),
            "conditioning": conditioning.get("name", "thinkgen"),
            "conditioning_settings": conditioning.get("settings")}


SAFETENSORS_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16, "F64": torch.float64}


def stored_dtype(folder: Path) -> torch.dtype:
    """The dtype a component folder stores its weights in (its first tensor's, from the header alone)."""
    from safetensors import safe_open

    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), "pt") as weights:
            for name in weights.keys():  # noqa: SIM118 - safe_open has no __iter__
                return SAFETENSORS_DTYPES.get(weights.get_slice(name).get_dtype(), torch.float32)
    return torch.float32


def thinker_component(directory: Path, torch_dtype: torch.dtype | None = None) -> tuple[Any, Any, str]:
    """Only a folder's thinker (any layout): ``(model, tokenizer or processor, component name)``, the
    name being where it lives (``thinker``, T2G's ``text_encoder``, the ThinkGen release's ``mllm``)."""
    index = read_index(directory)
    check_metadata(index, directory / MODEL_INDEX)
    layout = FOREIGN.get(layout_of(index))
    model_name, text_name = (layout.thinker, layout.text) if layout is not None else (
        "thinker", "processor" if "processor" in index else "tokenizer")
    for name in (model_name, text_name):
        if name not in index:
            raise PipelineLoadError(f"{directory} lacks components: [{name!r}]")
    return (_load_component(directory, index, model_name, torch_dtype),
            _load_component(directory, index, text_name, None), model_name)


def _save_component(component: Any, name: str, folder: Path) -> list[str]:
    if isinstance(component, torch.nn.Module):
        component.save_pretrained(folder, safe_serialization=True)
    elif name == "processor":
        save_processor(component, folder)
    else:  # tokenizer, scheduler: JSON and tokenizer files
        component.save_pretrained(folder)
    return [type(component).__module__.split(".")[0], type(component).__name__]


def save_folder(pipe: ThinkGenPipeline, directory: Path) -> None:
    """Write ``pipe``: a release's layout for its conditioning (``qwen-image``: diffusers'
    QwenImagePipeline; ``thinkgen-release``: ThinkGen's), else thinkgen's."""
    import diffusers

    directory.mkdir(parents=True, exist_ok=True)
    conditioning = {"name": pipe.conditioning.name, "settings": pipe.conditioning.settings()}
    layout = FOREIGN.get(pipe.conditioning.name)
    if layout is not None:
        index: dict[str, Any] = {"_class_name": layout.class_name, "_diffusers_version": diffusers.__version__}
        names = {"thinker": layout.thinker, "tokenizer": layout.text, "processor": layout.text}
        for name, component in pipe.components.items():
            index[names.get(name, name)] = _save_component(component, name, directory / names.get(name, name))
        index["_thinkgen"] = {"conditioning": conditioning, "thinker_config": pipe.thinker.config.to_dict(),
                              "defaults": pipe.defaults}
    else:
        index = {"_class_name": type(pipe).__name__}
        for name, component in pipe.components.items():
            index[name] = _save_component(component, name, directory / name)
        index["thinker_config"] = pipe.thinker.config.to_dict()
        index["defaults"] = pipe.defaults
        index["conditioning"] = conditioning
    (directory / MODEL_INDEX).write_text(json.dumps(index, indent=2) + "\n")
