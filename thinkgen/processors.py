"""VLM processors without a video processor: build, save and load them.

transformers' video processors need torchvision, which thinkgen must not install; thinkgen never
sends videos, so its vision-language thinkers carry image-only processors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def image_only_processor(processor_class: type, image_processor: Any, tokenizer: Any) -> Any:
    """Build a VLM processor (e.g. ``Qwen2_5_VLProcessor``) without its video processor.

    transformers' video processors need torchvision, which thinkgen must not install (the CPU
    machines have none); the stock constructor then refuses ``video_processor=None`` even for
    image-only use. Thinkgen never sends videos, so the check is relaxed for that one argument.
    """

    def check_argument_for_proper_class(self, argument_name, argument):
        if argument is None:
            return None
        return processor_class.check_argument_for_proper_class(self, argument_name, argument)

    image_only = type(processor_class.__name__, (processor_class,),
                      {"check_argument_for_proper_class": check_argument_for_proper_class,
                       "__module__": processor_class.__module__})
    return image_only(image_processor=image_processor, tokenizer=tokenizer,
                      chat_template=tokenizer.chat_template)


def save_processor(processor: Any, directory: str | Path) -> None:
    """Save a VLM processor; an image-only one is saved as its tokenizer + image processor."""
    if getattr(processor, "video_processor", None) is not None:
        processor.save_pretrained(directory)
        return
    processor.tokenizer.save_pretrained(directory)
    processor.image_processor.save_pretrained(directory)


def load_processor(processor_class: type, directory: str | Path) -> Any:
    """Load a VLM processor, image-only when its video half cannot be built here."""
    from transformers import AutoImageProcessor, AutoTokenizer

    try:
        return processor_class.from_pretrained(directory, local_files_only=True)
    except (ImportError, AttributeError, ValueError, TypeError, OSError):
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        image_processor = AutoImageProcessor.from_pretrained(directory, local_files_only=True)
        return image_only_processor(processor_class, image_processor, tokenizer)
