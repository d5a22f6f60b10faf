"""Several training processes (torchrun, accelerate launch): joining the group, and the two sums
a data-parallel loop needs (step 3's `train_step` and `evaluate` call them).

    rank, world_size = init_distributed()   # (0, 1) for a plain run
    n = all_reduce_sum(local_count)         # the sum over processes (float64 CPU tensor)
    all_reduce_gradients(model)             # every .grad summed over processes, in place

With one process every function is a no-op that returns its input, so the same loop runs alone.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_distributed(device: torch.device | str | None = None) -> tuple[int, int]:
    """Join the process group when launched as several processes (WORLD_SIZE > 1); returns
    (rank, world_size), (0, 1) for a plain run.

    `device`: where this process's model will live (default: `course.device.pick_device()`).
    On CUDA each process first takes its own GPU, number LOCAL_RANK (`torch.cuda.set_device`:
    without it every process would land on cuda:0), and the group talks NCCL, which moves
    GPU tensors only. Otherwise the group uses gloo -- on a CUDA machine too, when the model
    stays on the CPU (as in the course's 2-process tests)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if device is None:
            from course.device import pick_device
            device = pick_device()
        if torch.device(device).type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
    return world()


def world() -> tuple[int, int]:
    """(rank, world_size) of this process; (0, 1) when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def collective_device() -> torch.device:
    """Where a tensor must be to take part in a collective: this process's GPU under NCCL
    (the one `init_distributed` set), the CPU under gloo or with one process."""
    if dist.is_available() and dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(value: torch.Tensor | float | int) -> torch.Tensor:
    """The sum of `value` over all processes, as a float64 CPU tensor (the value itself when
    there is one process). The sum is taken on `collective_device()`. Every process must call
    it, in the same order."""
    tensor = torch.as_tensor(value, dtype=torch.float64).detach().clone()
    if world()[1] > 1:
        on_device = tensor.to(collective_device())
        dist.all_reduce(on_device, op=dist.ReduceOp.SUM)
        tensor = on_device.cpu()
    return tensor


def all_reduce_gradients(model: torch.nn.Module) -> None:
    """Sum every trainable parameter's .grad over all processes, in place (one flat buffer, one
    message, on `collective_device()`: the model's own GPU under NCCL, so nothing is copied).
    A parameter without a gradient counts as zeros. No-op with one process."""
    if world()[1] == 1:
        return
    params = unique_trainable(model)
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads]).to(collective_device())
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    for p, g, summed in zip(params, grads, torch.split(flat, [g.numel() for g in grads])):
        p.grad = summed.view_as(g).to(g.device).clone()


def unique_trainable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The trainable parameters, each once (named_parameters yields a tied tensor only once)."""
    return [p for _, p in model.named_parameters() if p.requires_grad]


def barrier() -> None:
    """Wait for every process (no-op with one)."""
    if world()[1] > 1:
        dist.barrier()
