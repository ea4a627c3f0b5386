"""How a stage's model is spread over processes: the only module that knows about process groups.

Two engines behind one small interface, picked by ``parallel.strategy``:

* ``ddp`` (:class:`ReplicatedEngine`) — accelerate's DistributedDataParallel: every process holds
  the whole model and optimizer; checkpoints are plain safetensors (``loop.save_checkpoint``).
* ``fsdp`` (:class:`ShardedEngine`) — PyTorch's FSDP2 directly (``fully_shard``): every block of
  every model (the classes a model lists in ``_no_split_modules``) is one shard group, then the
  root; weights, gradients and AdamW states are split over the processes. With ``bf16`` the
  blocks compute in bf16 while the fp32 master weights, the gradient reduction and the optimizer
  stay fp32 (``MixedPrecisionPolicy``). Checkpoints are ``torch.distributed.checkpoint`` folders:
  each process writes its own shards, and a run resumes from them on any number of processes
  (DCP reshards on load). accelerate's FSDP plugin wraps the same ``fully_shard``; it is not used
  because it places and checkpoints the whole prepared model, and the stages need to choose the
  block boundaries and keep frozen parts (the thinker, the VAE) outside the sharded model.

Launch either with ``torchrun --nproc_per_node N -m thinkgen.cli train CONFIG`` (``--nnodes`` and a
rendezvous for several machines), or ``accelerate launch``. On CPUs the processes talk over gloo.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def block_classes(model: nn.Module) -> set[str]:
    """The class names of a model's repeated blocks: every ``_no_split_modules`` of its
    transformers / diffusers submodels (e.g. ``QwenImageTransformerBlock``, ``Lumina2TransformerBlock``)."""
    names: set[str] = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or [])
    return names


def to_device(batch: Any, device: torch.device) -> Any:
    """Every tensor of a batch (nested in dicts, lists and tuples) on ``device``."""
    if torch.is_tensor(batch):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


class ShardedEngine:
    """FSDP2 (``fully_shard``) on a torch process group (NCCL on GPUs, gloo on CPUs)."""

    sharded = True

    def __init__(self, mixed_precision: str = "no", reshard_after_forward: bool = True) -> None:
        self.reshard_after_forward = reshard_after_forward
        if mixed_precision == "fp16":
            raise ValueError("parallel.strategy fsdp trains in fp32 or bf16 (run.mixed_precision: no | bf16)")
        self.mixed_precision = mixed_precision
        self.owns_group = not dist.is_initialized()
        self.set_environment: list[str] = []  # what close() takes back out of os.environ
        cuda = torch.cuda.is_available()
        if self.owns_group:
            if "RANK" not in os.environ:  # one process, not launched by torchrun: a group of one
                group = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "RANK": "0",
                         "WORLD_SIZE": "1", "LOCAL_RANK": "0"}
                os.environ.update(group)
                self.set_environment = list(group)
            dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(minutes=30))
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        local = int(os.environ.get("LOCAL_RANK", 0))
        self.device = torch.device("cuda", local) if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(self.device)
        self.is_main = self.rank == 0
        self.description = f"fsdp2, {dist.get_backend()}"

    def print(self, *args: Any) -> None:
        if self.is_main:
            print(*args, flush=True)

    def barrier(self) -> None:
        dist.barrier()

    def prepare(self, model: nn.Module, make_optimizer: Callable[[], torch.optim.Optimizer]
                ) -> tuple[nn.Module, torch.optim.Optimizer]:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        model.to(self.device)
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) \
            if self.mixed_precision == "bf16" else MixedPrecisionPolicy()
        blocks = block_classes(model)
        for module in list(model.modules()):
            if type(module).__name__ in blocks and any(True for _ in module.parameters()):
                fully_shard(module, mp_policy=policy, reshard_after_forward=self.reshard_after_forward)
        fully_shard(model, mp_policy=policy)
        return model, make_optimizer()  # the optimizer sees the sharded parameters

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def clip_grad_norm(self, parameters: list[nn.Parameter], max_norm: float) -> float:
        norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm)  # a DTensor: the norm over all shards
        return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)

    def mean(self, value: torch.Tensor) -> float:
        value = value.detach().float().clone()
        dist.all_reduce(value)
        return float(value) / self.world

    def unwrap(self, model: nn.Module) -> nn.Module:
        return model

    def to_device(self, batch: Any) -> Any:
        return to_device(batch, self.device)

    @contextlib.contextmanager
    def full_weights(self, model: nn.Module) -> Iterator[None]:
        """For the block, the first process's model holds whole weights (plain tensors, on the CPU),
        gathered from every process: what saving a pipeline folder needs. Every process must enter
        (the gathering is collective); the shards are put back after."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        swapped: list[tuple[nn.Module, str, nn.Parameter]] = []
        if self.is_main:
            for name, tensor in full.items():
                owner, _, leaf = name.rpartition(".")
                module = model.get_submodule(owner)
                if leaf in module._parameters:  # buffers are never sharded
                    shard = module._parameters[leaf]
                    swapped.append((module, leaf, shard))
                    module._parameters[leaf] = nn.Parameter(tensor, requires_grad=shard.requires_grad)
        try:
            yield
        finally:
            for module, leaf, shard in swapped:
                module._parameters[leaf] = shard

    # ------------------------------------------------------------------ checkpoints
    def _state(self, model: nn.Module, optimizer: torch.optim.Optimizer,
               ema: dict[str, torch.Tensor] | None) -> dict[str, Any]:
        from torch.distributed.checkpoint.state_dict import get_state_dict

        model_state, optimizer_state = get_state_dict(model, optimizer)
        state = {"model": model_state, "optimizer": optimizer_state}
        if ema is not None:
            state["ema"] = ema
        return state

    def save(self, folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
             ema: dict[str, torch.Tensor] | None) -> None:
        """Each process writes its shards of model, optimizer and EMA into ``folder`` (DCP)."""
        import torch.distributed.checkpoint as dcp

        dcp.save(self._state(model, optimizer, ema), checkpoint_id=str(folder))

    def load(self, folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
             ema: dict[str, torch.Tensor] | None) -> None:
        """Read a DCP checkpoint written by any number of processes into this run's shards."""
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint import DefaultLoadPlanner
        from torch.distributed.checkpoint.state_dict import set_state_dict

        state = self._state(model, optimizer, ema)  # the shapes to read into; EMA filled in place
        optimizer_state = {"optimizer": state.pop("optimizer")}
        dcp.load(state, checkpoint_id=str(folder))
        # a fresh optimizer's template has a state for every parameter, the saved one only for those
        # that ever had a gradient (e.g. reference embeddings of a run without edits): those stay zero,
        # as AdamW would start them
        dcp.load(optimizer_state, checkpoint_id=str(folder), planner=DefaultLoadPlanner(allow_partial_load=True))
        state["optimizer"] = optimizer_state["optimizer"]
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
        for name in self.set_environment:
            os.environ.pop(name, None)


class ReplicatedEngine:
    """accelerate's DistributedDataParallel (or one plain process)."""

    sharded = False

    def __init__(self, mixed_precision: str = "no") -> None:
        from accelerate import Accelerator, DistributedDataParallelKwargs

        # cpu=True on machines without CUDA: accelerate then sets up gloo DDP under torchrun /
        # accelerate launch (without it every CPU process would silently train alone).
        # find_unused_parameters: an MMDiT's last block computes a text stream nobody reads.
        self.accelerator = Accelerator(mixed_precision=mixed_precision, cpu=not torch.cuda.is_available(),
                                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
        self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes
        self.is_main = self.accelerator.is_main_process
        self.device = self.accelerator.device
        self.description = self.accelerator.distributed_type.value

    def print(self, *args: Any) -> None:
        self.accelerator.print(*args)

    def barrier(self) -> None:
        self.accelerator.wait_for_everyone()

    def prepare(self, model: nn.Module, make_optimizer: Callable[[], torch.optim.Optimizer]
                ) -> tuple[nn.Module, torch.optim.Optimizer]:
        return self.accelerator.prepare(model, make_optimizer())

    def backward(self, loss: torch.Tensor) -> None:
        self.accelerator.backward(loss)

    def clip_grad_norm(self, parameters: list[nn.Parameter], max_norm: float) -> float:
        return float(self.accelerator.clip_grad_norm_(parameters, max_norm))

    def mean(self, value: torch.Tensor) -> float:
        return self.accelerator.reduce(value.detach(), "mean").item()

    def unwrap(self, model: nn.Module) -> nn.Module:
        return self.accelerator.unwrap_model(model)

    def to_device(self, batch: Any) -> Any:
        return batch if self.device.type == "cpu" else to_device(batch, self.device)

    @contextlib.contextmanager
    def full_weights(self, model: nn.Module) -> Iterator[None]:
        yield  # every process holds the whole model already

    def close(self) -> None:
        pass


def make_engine(strategy: str, mixed_precision: str, reshard_after_forward: bool = True
                ) -> ShardedEngine | ReplicatedEngine:
    if strategy == "fsdp":
        return ShardedEngine(mixed_precision, reshard_after_forward)
    return ReplicatedEngine(mixed_precision)
