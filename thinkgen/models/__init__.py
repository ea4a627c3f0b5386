"""DiT architectures diffusers lacks, one readable file each, with the parameter names of the
checkpoints they load."""

from .thinkgen_dit import ThinkGenTransformer2DModel

__all__ = ["ThinkGenTransformer2DModel"]
