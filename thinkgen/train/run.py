"""One entry point for every stage: ``thinkgen train CONFIG.yaml [--resume]``.

Runs as one process or under ``accelerate launch`` / ``torchrun`` (DDP; gloo on CPUs).
"""

from __future__ import annotations

import contextlib
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
    made = [folder for folder in (config.output_dir, config.dataset.state_cache)
            if folder is not None and not Path(folder).exists()]
    try:
        check_paths(config)
        stage = build_stage(config)  # loads the models and checks the data: most refusals come here
    except BaseException:
        for folder in made:  # a refused run leaves no empty folders behind
            with contextlib.suppress(OSError):
                Path(folder).rmdir()
        raise
    return train(config, stage, resume=resume, progress=progress)
