"""Where training examples come from, one module per source: your captioned images (``images``),
read through Hugging Face ``datasets``. ShapeWorld scenes are built by ``thinkgen.world``. This
package knows files, not models: stages ask it for rows and do the rest."""

from .images import (
    BucketBatches,
    CaptionedImages,
    DataError,
    bucket_sizes,
    nearest_bucket,
    to_pixels,
)

__all__ = ["BucketBatches", "CaptionedImages", "DataError", "bucket_sizes", "nearest_bucket", "to_pixels"]
