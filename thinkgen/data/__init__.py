"""Where training examples come from, one module per source, read through Hugging Face
``datasets``: your captioned images (``images``; ``streamed`` for a stream), conversations for
thinker SFT (``chat``) and prompts for RL (``prompts``). ShapeWorld scenes are built by
``thinkgen.world``. This package knows files, not models: stages ask it for rows and do the rest."""

from .images import (
    BucketBatches,
    CaptionedImages,
    DataError,
    bucket_sizes,
    nearest_bucket,
    to_pixels,
)

__all__ = ["BucketBatches", "CaptionedImages", "DataError", "bucket_sizes", "nearest_bucket", "to_pixels"]
