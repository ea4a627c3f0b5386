"""The training loop shared by every stage: accelerate, checkpoints, logging, exact resume.

A stage supplies a ``model`` (an ``nn.Module`` whose ``forward(batch)`` returns the loss; frozen
parts have ``requires_grad=False``), ``batch(step, start, size)`` (the examples ``start ..
start + size`` of global step ``step``, or a list of equal-weight micro-batches of them, a pure function of the seed and the step, so every
process can build its own shard and a resumed run sees the same data), ``finalize(dir, ema)``
and optionally ``samples(step, dir)``.

Checkpoints (``output_dir/checkpoints/step-000500/``) hold the model and EMA weights as
safetensors, the optimizer state as safetensors + JSON, the scheduler and RNG state as JSON.
They are written to a temporary folder and renamed into place, and only the last
``run.keep_last`` are kept. Nothing is ever unpickled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from .config import ConfigError, TrainConfig, save


class Stage(Protocol):
    model: nn.Module

    def batch(self, step: int, start: int, size: int) -> Any: ...

    def finalize(self, directory: Path, ema: dict[str, torch.Tensor] | None) -> None: ...


def lr_factor(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then constant or cosine down to ``min_lr_ratio``."""
    warmup = config.optim.warmup_steps
    if step < warmup:
        return (step + 1) / warmup
    if config.optim.schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, config.run.steps - warmup)
    floor = config.optim.min_lr_ratio
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.detach().clone() for k, p in model.named_parameters() if p.requires_grad}


def load_ema(model: nn.Module, ema: dict[str, torch.Tensor] | None) -> None:
    """Copy EMA weights (named as in ``model.named_parameters()``) into the model, if any."""
    if ema is None:
        return
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in ema.items():
            params[name].copy_(value)


# ----------------------------------------------------------------------------- checkpoints
def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors, meta = {}, {"param_groups": state["param_groups"], "scalars": {}}
    for index, values in state["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value.contiguous()
            else:
                meta["scalars"][f"{index}.{name}"] = value
    return tensors, meta


def _load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in list(tensors.items()) + list(meta["scalars"].items()):
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


MANIFEST = "manifest.json"  # written last: a checkpoint without it (or with other sizes) is torn


def save_checkpoint(directory: Path, step: int, model: nn.Module, optimizer, scheduler,
                    ema: dict[str, torch.Tensor] | None, keep_last: int) -> Path:
    """Write ``step-NNNNNN`` so that a kill at any moment leaves a complete checkpoint to resume:
    everything goes to a temporary folder, a manifest of file sizes is written last, and only then
    does it take the final name. A checkpoint being replaced is moved aside first, never deleted
    before its successor is complete."""
    temporary = directory / f".step-{step:06d}.tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    # clone: tied weights (e.g. embeddings and LM head) share storage, which safetensors refuses
    save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()},
              temporary / "model.safetensors")
    if ema is not None:
        save_file(ema, temporary / "ema.safetensors")
    tensors, meta = _optimizer_tensors(optimizer)
    save_file(tensors, temporary / "optimizer.safetensors")
    (temporary / "optimizer.json").write_text(json.dumps(meta))
    return seal_checkpoint(directory, temporary, step, scheduler, keep_last)


def seal_checkpoint(directory: Path, temporary: Path, step: int, scheduler, keep_last: int) -> Path:
    """Finish a checkpoint whose weights are in ``temporary``: the trainer state (step, scheduler,
    RNG), then the manifest, then the atomic rename to ``step-NNNNNN``; older ones are pruned."""
    final = directory / f"step-{step:06d}"
    _, keys, position, has_gauss, gauss = np.random.get_state()
    rng = {"torch": torch.get_rng_state().tolist(), "python": random.getstate()[1],
           "numpy": [keys.tolist(), int(position), int(has_gauss), float(gauss)]}
    (temporary / "trainer_state.json").write_text(json.dumps(
        {"step": step, "scheduler": scheduler.state_dict(), "rng": rng}))
    files = [p for p in sorted(temporary.iterdir()) if p.is_file()]
    sizes = {p.name: p.stat().st_size for p in files}
    digests = {p.name: _sha256(p) for p in files}
    (temporary / MANIFEST).write_text(json.dumps({"step": step, "files": sizes, "sha256": digests}))
    _fsync_folder(temporary)
    aside = directory / f".step-{step:06d}.old"
    if final.exists():  # e.g. --resume of a finished run saves its last step again
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(final, aside)
    os.replace(temporary, final)  # atomic: the old or the new checkpoint, each complete
    shutil.rmtree(aside, ignore_errors=True)
    for old in sorted(directory.glob("step-*"))[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_folder(folder: Path) -> None:
    """Flush the files' data before the rename that makes them a checkpoint (power loss safety)."""
    for path in folder.iterdir():
        with open(path, "rb") as f:
            os.fsync(f.fileno())


LEGACY_FILES = ("model.safetensors", "optimizer.safetensors", "optimizer.json", "trainer_state.json")


def is_complete(path: Path) -> bool:
    """Every file the manifest lists is there, with its size and, where the manifest has them, its
    SHA-256 (a file damaged in place, at its old size, fails); checkpoints written before manifests:
    every file a checkpoint needs is there."""
    if not (path / MANIFEST).exists():
        return all((path / name).is_file() for name in LEGACY_FILES)
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        if not all((path / name).stat().st_size == size for name, size in manifest["files"].items()):
            return False
        return all(_sha256(path / name) == digest for name, digest in manifest.get("sha256", {}).items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def latest_checkpoint(directory: Path, warn=print) -> Path | None:
    """The newest complete checkpoint; a torn newer one is reported and skipped. A checkpoint moved
    aside by an interrupted replacement is put back first."""
    for aside in sorted(directory.glob(".step-*.old")):
        final = directory / aside.name.removeprefix(".").removesuffix(".old")
        if not final.exists() and is_complete(aside):
            os.replace(aside, final)
    for path in sorted(directory.glob("step-*"), reverse=True):
        if is_complete(path):
            return path
        warn(f"warning: {path} is incomplete (interrupted while being written); using an older checkpoint")
    return None


SHARDED_MARK = ".metadata"  # torch.distributed.checkpoint's index: a checkpoint written by fsdp


def load_checkpoint(path: Path, model: nn.Module, optimizer, scheduler) -> tuple[int, dict | None]:
    model.load_state_dict(load_file(path / "model.safetensors"))
    _load_optimizer(optimizer, load_file(path / "optimizer.safetensors"),
                    json.loads((path / "optimizer.json").read_text()))
    ema = load_file(path / "ema.safetensors") if (path / "ema.safetensors").exists() else None
    return load_trainer_state(path, scheduler), ema


def load_trainer_state(path: Path, scheduler) -> int:
    """The scheduler and RNG states of a checkpoint; returns its step."""
    state = json.loads((path / "trainer_state.json").read_text())
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(torch.tensor(state["rng"]["torch"], dtype=torch.uint8))
    random.setstate((3, tuple(state["rng"]["python"]), None))
    keys, position, has_gauss, gauss = state["rng"]["numpy"]
    np.random.set_state(("MT19937", np.array(keys, dtype=np.uint32), position, has_gauss, gauss))
    return state["step"]


def enable_gradient_checkpointing(model: torch.nn.Module) -> int:
    """Turn on each library's own activation checkpointing in every submodel that supports it
    (transformers' ``gradient_checkpointing_enable``, diffusers' ``enable_gradient_checkpointing``).
    Returns how many submodels were switched; a stage with none supporting it is an error."""
    from diffusers.models.modeling_utils import ModelMixin
    from transformers import PreTrainedModel

    switched = 0
    for module in model.modules():
        if isinstance(module, PreTrainedModel) and module.supports_gradient_checkpointing:
            module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            switched += 1
        elif isinstance(module, ModelMixin) and getattr(module, "_supports_gradient_checkpointing", False):
            module.enable_gradient_checkpointing()
            switched += 1
    if not switched:
        raise ValueError("run.gradient_checkpointing: no model of this stage supports it")
    return switched


class DeferredInterrupt:
    """Ctrl-C (SIGINT) during training is noted, not raised: it takes effect at the start of the
    next step, so a checkpoint is always the state at its step (never between ``optimizer.step``
    and the step counter). During a save, the save finishes first (said in a message), then the
    run stops."""

    def __init__(self) -> None:
        self.pending, self.in_save, self.previous = False, False, None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.in_save:
            print("\nthinkgen: saving a checkpoint; it finishes first, then the run stops (a kill -9 now still "
                  "leaves the older one)", file=sys.stderr, flush=True)
        self.pending = True

    def check(self) -> None:
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def saving(self):
        self.in_save = True
        try:
            yield
        finally:
            self.in_save = False

    def restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None


# ----------------------------------------------------------------------------- the loop
def train(config: TrainConfig, stage: Stage, resume: bool = False, progress: bool = True) -> Path:
    """Run a stage to ``config.run.steps``; returns the folder ``finalize`` wrote."""
    from .parallel import make_engine

    if config.run.threads:
        torch.set_num_threads(config.run.threads)
    engine = make_engine(config.parallel.strategy, config.run.mixed_precision, config.parallel.reshard_after_forward)
    try:
        return _train(config, stage, engine, resume, progress)
    finally:
        engine.close()


def _train(config: TrainConfig, stage: Stage, engine, resume: bool, progress: bool) -> Path:
    world, rank = engine.world, engine.rank
    if config.run.batch_size % world:
        raise ConfigError(f"run.batch_size {config.run.batch_size} is not divisible by {world} processes")
    shard = config.run.batch_size // world
    engine.print(f"{config.stage}: training on {world} process{'es' if world > 1 else ''} "
                 f"({engine.description}), global batch {config.run.batch_size}")
    out = Path(config.output_dir)
    checkpoints = out / "checkpoints"
    if engine.is_main:
        checkpoints.mkdir(parents=True, exist_ok=True)
        save(config, out / "config.yaml")
    torch.manual_seed(config.run.seed)

    model = stage.model
    if hasattr(stage, "place"):  # frozen parts (a thinker, a VAE) go where the engine computes
        stage.place(engine.device)
    if config.run.gradient_checkpointing:
        enable_gradient_checkpointing(model)

    def make_optimizer() -> torch.optim.Optimizer:
        # a stage may give parameter groups with their own learning rates (RL: thinker vs DiT);
        # built after wrapping, since sharding replaces the parameters
        groups = stage.param_groups() if hasattr(stage, "param_groups") else [
            {"params": [p for p in model.parameters() if p.requires_grad], "lr": config.optim.lr}]
        if not any(group["params"] for group in groups):
            raise ValueError(f"stage {config.stage} has nothing to train")
        kind = config.optim.implementation or ("foreach" if engine.sharded else None)
        options = {"foreach": {"foreach": True}, "fused": {"fused": True}, "loop": {"foreach": False}}.get(kind, {})
        return torch.optim.AdamW(groups, lr=config.optim.lr, betas=config.optim.betas,
                                 weight_decay=config.optim.weight_decay, **options)

    if not engine.sharded:  # plain checkpoints are read before wrapping, into the plain model
        optimizer = make_optimizer()
        start_step, scheduler, ema = _resume(config, checkpoints, engine, model, optimizer, resume)
        wrapped, optimizer = engine.prepare(model, lambda: optimizer)
    else:  # sharded checkpoints are read into the shards
        wrapped, optimizer = engine.prepare(model, make_optimizer)
        start_step, scheduler, ema = _resume(config, checkpoints, engine, wrapped, optimizer, resume)
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    # only the forward call is compiled: saving, EMA and evaluation keep using `wrapped` itself
    forward = torch.compile(wrapped) if config.run.compile else wrapped

    writer = None
    if engine.is_main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tensorboard"), purge_step=start_step)
    bar = tqdm(total=config.run.steps, initial=start_step, desc=config.stage,
               disable=not (progress and engine.is_main), dynamic_ncols=True)
    if hasattr(stage, "resume_at") and engine.is_main:  # append-only logs: drop what the
        # resumed steps will write again
        stage.resume_at(start_step)
    step, window_start, window_steps = start_step, time.perf_counter(), 0
    saved: tuple[Path | None, int] = (None, -1)  # the newest checkpoint this run wrote, and its step
    interrupt = DeferredInterrupt()
    saving = (engine, checkpoints, wrapped, optimizer, scheduler, config)
    try:
        while step < config.run.steps:
            interrupt.check()  # a Ctrl-C during the last step takes effect here, with the state at `step`
            batch = engine.to_device(stage.batch(step, rank * shard, shard))
            wrapped.train()
            # a stage may give a list of equal-weight micro-batches (gradient accumulation: one
            # graph in memory at a time); the step's loss is their mean
            micro = batch if isinstance(batch, list) else [batch]
            loss = 0.0
            for part in micro:
                part_loss = forward(part) / len(micro)
                engine.backward(part_loss)
                loss = loss + part_loss.detach()
            grad_norm = engine.clip_grad_norm(parameters, config.optim.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                with torch.no_grad():
                    for name, p in engine.unwrap(wrapped).named_parameters():
                        if name in ema:
                            ema[name].lerp_(p.detach(), 1 - config.ema_decay)
            step += 1
            window_steps += 1
            if step % config.run.log_every == 0 or step == config.run.steps:
                loss_value = engine.mean(loss)
                rate = window_steps * config.run.batch_size / (time.perf_counter() - window_start)
                window_start, window_steps = time.perf_counter(), 0
                if writer is not None:
                    writer.add_scalar("train/loss", loss_value, step)
                    writer.add_scalar("train/lr", scheduler.get_last_lr()[0], step)
                    writer.add_scalar("train/grad_norm", grad_norm, step)
                    writer.add_scalar("train/samples_per_s", rate, step)
                    for name, value in getattr(stage, "metrics", {}).items():  # e.g. RL rewards
                        writer.add_scalar(name, value, step)
                bar.set_postfix(loss=f"{loss_value:.4f}", samples_s=f"{rate:.0f}")
            bar.update(1)
            if engine.is_main and config.run.sample_every and step % config.run.sample_every == 0:
                grid = stage.samples(step, out / "samples") if hasattr(stage, "samples") else None
                if grid is not None and writer is not None:
                    writer.add_image("samples", np.asarray(grid), step, dataformats="HWC")
            if step % config.run.save_every == 0 and step < config.run.steps:
                with interrupt.saving():
                    saved = _save(*saving, step, ema), step
        interrupt.check()
    except KeyboardInterrupt:
        bar.close()
        path = saved[0] if saved[1] == step else None  # a Ctrl-C during that save: it is the state now
        if path is None:
            with interrupt.saving():
                path = _save(*saving, step, ema)
        interrupt.restore()
        engine.print(f"\ninterrupted at step {step}: checkpoint written to {path}; continue with --resume")
        raise
    finally:
        interrupt.restore()
        bar.close()  # before any error line, which would otherwise land on the bar's line
    _save(*saving, step, ema)
    final = out / "final"
    if engine.sharded:  # every process takes part in gathering the weights; the first one writes
        load_ema(wrapped, ema)
        with engine.full_weights(wrapped):
            if engine.is_main:
                stage.finalize(final, None)
    elif engine.is_main:
        stage.finalize(final, ema)
    if writer is not None:
        writer.close()
    engine.barrier()
    return final


def _resume(config: TrainConfig, checkpoints: Path, engine, model: nn.Module, optimizer, resume: bool
            ) -> tuple[int, torch.optim.lr_scheduler.LambdaLR, dict[str, torch.Tensor] | None]:
    """The LR schedule and the EMA for ``optimizer`` and ``model``; with ``resume``, the newest
    complete checkpoint read into all four. Returns the step to start at, the schedule and the EMA."""
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, config))
    ema = trainable_state(model) if config.ema_decay > 0 else None
    if not resume:
        return 0, scheduler, ema
    found = latest_checkpoint(checkpoints, warn=engine.print)
    if found is None:
        engine.print(f"no checkpoint in {checkpoints}: starting from step 0")
        return 0, scheduler, ema
    written_sharded = (found / SHARDED_MARK).exists()
    if written_sharded != engine.sharded:
        kinds = ("parallel.strategy fsdp (sharded)", "parallel.strategy ddp (whole weights)")
        raise ConfigError(f"{found} was written with {kinds[not written_sharded]}; this run uses "
                         f"{kinds[not engine.sharded]}: resume with the same strategy")
    if engine.sharded:
        engine.load(found, model, optimizer, ema)
        start = load_trainer_state(found, scheduler)
    else:
        start, saved_ema = load_checkpoint(found, model, optimizer, scheduler)
        ema = saved_ema if saved_ema is not None else ema
    engine.print(f"resumed from {found} (step {start})")
    return start, scheduler, ema


def _save(engine, checkpoints: Path, wrapped, optimizer, scheduler, config: TrainConfig, step: int,
          ema: dict[str, torch.Tensor] | None) -> Path:
    engine.barrier()
    path = checkpoints / f"step-{step:06d}"
    if engine.sharded:  # every process writes its shards into one temporary folder, then it is sealed
        temporary = checkpoints / f".step-{step:06d}.tmp"
        if engine.is_main:
            shutil.rmtree(temporary, ignore_errors=True)
        engine.barrier()
        engine.save(temporary, wrapped, optimizer, ema)
        engine.barrier()
        if engine.is_main:
            path = seal_checkpoint(checkpoints, temporary, step, scheduler, config.run.keep_last)
    elif engine.is_main:
        path = save_checkpoint(checkpoints, step, engine.unwrap(wrapped), optimizer, scheduler, ema,
                               config.run.keep_last)
    engine.barrier()
    return path
