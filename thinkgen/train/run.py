"""One entry point for every stage: ``thinkgen train CONFIG.yaml [--resume]``.

Runs as one process or under ``accelerate launch`` / ``torchrun`` (DDP; gloo on CPUs).
"""

from __future__ import annotations

from pathlib import Path

from .config import RL_STAGES, TrainConfig, check_paths, load
from .loop import train


def build_stage(config: TrainConfig):
    if config.dataset.source == "prompts":
        from .rl_prompts_stage import PromptRLStage

        return PromptRLStage(config)
    if config.stage in RL_STAGES:
        from .rl_stage import RLStage

        return RLStage(config)
    if config.dataset.source == "chat":
        from .chat_stage import ChatSFTStage

        return ChatSFTStage(config)
    if config.stage.startswith("thinker_"):
        from .thinker_stage import ThinkerStage

        return ThinkerStage(config)
    if config.stage == "autoencoder":
        from .autoencoder_stage import AutoencoderStage

        return AutoencoderStage(config)
    if config.dataset.source == "images":
        from .dit_dataset_stage import DatasetDiTStage

        return DatasetDiTStage(config)
    from .dit_stage import DiTStage

    return DiTStage(config)


def run(config_path: str | Path, resume: bool = False, overrides: dict | None = None,
        progress: bool = True) -> Path:
    config = load(config_path, overrides)
    check_paths(config)
    return train(config, build_stage(config), resume=resume, progress=progress)
