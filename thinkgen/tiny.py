"""Tiny, randomly initialised components of the *real* classes, for tests and experiments.

Nothing here downloads anything: the tokenizer is built with the ``tokenizers`` library (byte
level, so any text encodes) and every model comes from a small config of the same class that the
full-size checkpoints use (Qwen3ForCausalLM, QwenImageTransformer2DModel). This is how Hugging Face
tests its own models.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]


def byte_tokenizer(special_tokens: list[str] | None = None) -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (256 byte symbols + chat and think special tokens), no merges."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {symbol: i for i, symbol in enumerate(sorted(alphabet))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS if special_tokens is None else special_tokens,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_qwen3(vocab_size: int, hidden_size: int = 64, num_layers: int = 2, seed: int = 0,
               num_heads: int = 4, intermediate_size: int | None = None,
               init_std: float = 0.02, eos_token_id: int | None = None,
               pad_token_id: int | None = None) -> Qwen3ForCausalLM:
    """A random Qwen3ForCausalLM small enough for unit tests (about 90k parameters by default).

    ``init_std`` above the usual 0.02 makes greedy outputs depend on the prompt, which tests of
    batching need (a near-zero random model writes the same token whatever it is given)."""
    config = Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=max(1, num_heads // 2),
        head_dim=hidden_size // num_heads,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        initializer_range=init_std,
        eos_token_id=eos_token_id,  # as real checkpoints do: generate() then knows the end token
        pad_token_id=pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3ForCausalLM(config)
    return model.eval()


def tiny_pipeline(seed: int = 0, thinker_width: int = 64, thinker_layers: int = 2,
                  dit_width: int = 32, dit_layers: int = 2, text_width: int = 32,
                  num_prepadding: int = 23, connector: str = "linear", extract: str = "cut",
                  max_think_tokens: int = 16, max_rewrite_tokens: int = 16, image_size: int = 32,
                  patch: int = 4):
    """A random ThinkGenPipeline of the real classes: Qwen3 thinker, VGI-refine bridge,
    QwenImage MMDiT over 4x4 pixel patches, identity autoencoder, diffusers' flow scheduler."""
    from diffusers import FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel

    from .bridge import Bridge
    from .generator import PixelAutoencoder
    from .pipeline import ThinkGenPipeline
    from .thinker import Thinker, ThinkerConfig

    tokenizer = byte_tokenizer()
    thinker_model = tiny_qwen3(len(tokenizer), thinker_width, thinker_layers, seed=seed,
                               eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    thinker = Thinker(thinker_model, tokenizer, config=ThinkerConfig(
        extract=extract, max_think_tokens=max_think_tokens, max_rewrite_tokens=max_rewrite_tokens))
    heads = max(1, dit_width // 16)
    head_dim = dit_width // heads
    rope = (head_dim - 4 * (head_dim // 6), 2 * (head_dim // 6), 2 * (head_dim // 6))  # even, sums to head_dim
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        bridge = Bridge(thinker.state_dim, text_width, num_prepadding=num_prepadding, connector=connector)
        transformer = QwenImageTransformer2DModel(
            patch_size=1, in_channels=3 * patch * patch, out_channels=3 * patch * patch,
            num_layers=dit_layers, attention_head_dim=head_dim, num_attention_heads=heads,
            joint_attention_dim=text_width, axes_dims_rope=rope,
        )
    scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0)
    defaults = {"height": image_size, "width": image_size}
    return ThinkGenPipeline(thinker, bridge.eval(), transformer.eval(), PixelAutoencoder().eval(),
                            scheduler, defaults=defaults)


# ----------------------------------------------------------------------------- vision-language
VL_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
VL_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def vl_thinker(tokenizer, family: str = "qwen3_vl", hidden_size: int = 64, num_layers: int = 2,
               num_heads: int = 4, intermediate_size: int | None = None, vision_width: int = 32,
               vision_depth: int = 1, patch_size: int = 14, image_tokens: tuple[int, int] = (4, 16),
               tie_word_embeddings: bool | None = None, seed: int = 0):
    """A randomly initialised Qwen2.5-VL or Qwen3-VL (``AutoModelForImageTextToText`` classes) of
    a given size, around ``tokenizer``, and its image-only processor. Returns ``(model, processor)``.

    The vision tokens (:data:`VL_TOKENS`) are added to the tokenizer when missing, so the image,
    video and vision-boundary ids lie inside the vocabulary. ``patch_size`` is the vision patch in
    pixels; 2 x 2 patches merge into one image token, and an image is resized to between
    ``image_tokens`` tokens (a 32 px image with 4 px patches: 8 x 8 patches, 16 tokens).
    """
    import transformers

    from .processors import image_only_processor

    missing = [t for t in VL_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        known = list(getattr(tokenizer, "additional_special_tokens", None) or [])
        tokenizer.add_special_tokens({"additional_special_tokens": known + missing})
    tokenizer.chat_template = VL_CHAT_TEMPLATE
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in zip(
        ("vision_start_token_id", "vision_end_token_id", "image_token_id", "video_token_id"),
        VL_TOKENS, strict=True)}
    head_dim = hidden_size // num_heads
    section = [head_dim // 2 - 2 * (head_dim // 6), head_dim // 6, head_dim // 6]  # t, h, w halves
    text = {"vocab_size": len(tokenizer), "hidden_size": hidden_size,
            "intermediate_size": intermediate_size or 2 * hidden_size,
            "num_hidden_layers": num_layers, "num_attention_heads": num_heads,
            "num_key_value_heads": max(1, num_heads // 2),
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": section,
                                "mrope_interleaved": family == "qwen3_vl"},
            "bos_token_id": None, "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id}
    if tie_word_embeddings is not None:
        text["tie_word_embeddings"] = tie_word_embeddings
    vision_heads = max(1, vision_width // 16)
    if family == "qwen2_5_vl":
        vision = {"depth": vision_depth, "hidden_size": vision_width, "intermediate_size": 2 * vision_width,
                  "num_heads": vision_heads, "out_hidden_size": hidden_size,
                  "fullatt_block_indexes": list(range(vision_depth)), "window_size": 4 * patch_size,
                  "patch_size": patch_size}
        config = transformers.Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids)
        model_class, processor_class = (transformers.Qwen2_5_VLForConditionalGeneration,
                                        transformers.Qwen2_5_VLProcessor)
    elif family == "qwen3_vl":
        text["head_dim"] = head_dim
        vision = {"depth": vision_depth, "hidden_size": vision_width, "intermediate_size": 2 * vision_width,
                  "num_heads": vision_heads, "out_hidden_size": hidden_size,
                  "deepstack_visual_indexes": [0], "num_position_embeddings": 64, "patch_size": patch_size}
        config = transformers.Qwen3VLConfig(text_config=text, vision_config=vision, **ids)
        model_class, processor_class = (transformers.Qwen3VLForConditionalGeneration,
                                        transformers.Qwen3VLProcessor)
    else:
        raise ValueError(f"family must be 'qwen2_5_vl' or 'qwen3_vl', got {family!r}")
    pixels = (patch_size * 2) ** 2  # one merged token = a 2x2 group of patches
    image_processor = transformers.Qwen2VLImageProcessor(
        min_pixels=image_tokens[0] * pixels, max_pixels=image_tokens[1] * pixels, patch_size=patch_size,
        merge_size=2, temporal_patch_size=2)
    processor = image_only_processor(processor_class, image_processor, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
    return model.eval(), processor


def tiny_vl_thinker(family: str = "qwen2_5_vl", hidden_size: int = 64, num_layers: int = 2,
                    seed: int = 0, think_tokens: bool = True):
    """A random test-sized Qwen2.5-VL or Qwen3-VL on the byte tokenizer, and its processor.

    ``think_tokens=False`` leaves ``<think>``/``</think>`` out of the vocabulary, like Qwen2.5-VL's
    own tokenizer (so they encode as plain bytes). Returns ``(model, processor)``.
    """
    specials = SPECIAL_TOKENS if think_tokens else [t for t in SPECIAL_TOKENS if "think" not in t]
    tokenizer = byte_tokenizer(specials)
    patch = 14 if family == "qwen2_5_vl" else 16
    depth = 1 if family == "qwen2_5_vl" else 2
    return vl_thinker(tokenizer, family, hidden_size, num_layers, vision_width=32, vision_depth=depth,
                      patch_size=patch, seed=seed)


# ----------------------------------------------------------------------------- Qwen-Image / T2G
# Qwen-Image's scheduler_config.json (dynamic, exponential time shift, stretched to 0.02 at the end)
QWEN_IMAGE_SCHEDULER = {"base_image_seq_len": 256, "base_shift": 0.5, "max_image_seq_len": 8192, "max_shift": 0.9,
                        "shift": 1.0, "shift_terminal": 0.02, "time_shift_type": "exponential",
                        "use_dynamic_shifting": True}


def tiny_vl_pipeline(seed: int = 0, family: str = "qwen2_5_vl", max_think_tokens: int = 8,
                     max_rewrite_tokens: int = 8):
    """:func:`tiny_pipeline` with a vision-language thinker: the thinker sees the images given
    (edits, reflection) and the DiT takes them as reference tokens."""
    from .pipeline import ThinkGenPipeline
    from .thinker import Thinker, ThinkerConfig

    base = tiny_pipeline(seed=seed, thinker_width=64)
    model, processor = tiny_vl_thinker(family, hidden_size=64, seed=seed)
    thinker = Thinker(model, processor=processor, config=ThinkerConfig(
        max_think_tokens=max_think_tokens, max_rewrite_tokens=max_rewrite_tokens))
    return ThinkGenPipeline(thinker, base.bridge, base.transformer, base.vae, base.scheduler, defaults=base.defaults)


def tiny_qwen_image(seed: int = 0, text_width: int = 64, dit_layers: int = 2) -> dict:
    """Tiny random components of diffusers' ``QwenImagePipeline`` (the T2G release's classes):
    a Qwen2.5-VL text encoder whose tokenizer has no think tokens, the MMDiT, the Qwen-Image video
    VAE (one 2x down level, 4 latent channels) and Qwen-Image's real scheduler config.
    Returns the keyword arguments of ``QwenImagePipeline(...)``."""
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageTransformer2DModel,
    )

    text_encoder, processor = tiny_vl_thinker("qwen2_5_vl", hidden_size=text_width, seed=seed, think_tokens=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        vae = AutoencoderKLQwenImage(base_dim=8, z_dim=4, dim_mult=[1, 2], num_res_blocks=1, temperal_downsample=[False],
                                     latents_mean=[0.1, -0.2, 0.3, 0.0], latents_std=[1.5, 0.8, 1.1, 2.0])
        transformer = QwenImageTransformer2DModel(
            patch_size=2, in_channels=16, out_channels=4, num_layers=dit_layers, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=text_width, axes_dims_rope=(4, 6, 6))
    return {"text_encoder": text_encoder, "tokenizer": processor.tokenizer, "transformer": transformer.eval(),
            "vae": vae.eval(), "scheduler": FlowMatchEulerDiscreteScheduler(**QWEN_IMAGE_SCHEDULER)}


# ----------------------------------------------------------------------------- ThinkGen release
def tiny_thinkgen_release(seed: int = 0, text_width: int = 64):
    """A random pipeline with the ThinkGen release's classes and conventions: a Qwen3-VL thinker,
    ThinkGen's OmniGen2-style DiT (prepadding and caption embedder inside), a FLUX-style
    AutoencoderKL (shift and scale factors), the ``thinkgen-release`` conditioning."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler

    from .models import ThinkGenTransformer2DModel
    from .pipeline import ThinkGenPipeline
    from .thinker import Thinker

    model, processor = tiny_vl_thinker("qwen3_vl", hidden_size=text_width, seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        transformer = ThinkGenTransformer2DModel(
            patch_size=2, in_channels=4, hidden_size=48, num_layers=2, num_refiner_layers=1, num_attention_heads=2,
            num_kv_heads=1, multiple_of=16, axes_dim_rope=(8, 8, 8), axes_lens=(1024, 1024, 1024),
            text_feat_dim=text_width, num_prepadding=3, prepad_dim=2 * text_width)
        for parameter in transformer.parameters():  # not the zero start: tests need every path to matter
            parameter.data.normal_(0, 0.05) if parameter.dim() > 1 else parameter.data.uniform_(0.5, 1.5)
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                            layers_per_block=1, norm_num_groups=4, scaling_factor=0.3611, shift_factor=0.1159,
                            use_quant_conv=False, use_post_quant_conv=False)
    thinker = Thinker(model, processor=processor)
    return ThinkGenPipeline(thinker, None, transformer.eval(), vae.eval(), FlowMatchEulerDiscreteScheduler(),
                            defaults={"height": 32, "width": 32, "num_inference_steps": 4, "guidance_scale": 4.0,
                                      "negative_prompt": ""},
                            conditioning="thinkgen-release", conditioning_settings={"max_new_tokens": 12})
