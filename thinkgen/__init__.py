"""thinkgen: think-then-generate image generation.

A language model reasons about a prompt (``<think>...</think>``) and rewrites it; the hidden states
of what follows ``</think>`` condition a diffusion transformer through VGI-refine.
"""

from .bridge import Bridge
from .generator import PixelAutoencoder
from .pipeline import PipelineLoadError, ThinkGenOutput, ThinkGenPipeline
from .thinker import Thinker, ThinkerConfig, ThinkerOutput
from .tiny import tiny_pipeline

tiny = tiny_pipeline
__version__ = "0.1.0"
__all__ = [
    "Bridge", "PixelAutoencoder", "PipelineLoadError", "ThinkGenOutput", "ThinkGenPipeline",
    "Thinker", "ThinkerConfig", "ThinkerOutput", "tiny", "tiny_pipeline", "__version__",
]
