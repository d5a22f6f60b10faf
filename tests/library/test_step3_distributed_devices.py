"""Step 3's distributed helpers (course/distributed.py) on GPUs, without GPUs: every tensor that reaches a collective is on
the process's device (the collective is mocked; the tensors are fake CUDA tensors), each process
takes GPU LOCAL_RANK, and a model on the CPU gets gloo even on a CUDA machine."""
from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from course import distributed


@pytest.fixture()
def sx():
    return distributed


@pytest.fixture()
def nccl_rank1(sx, monkeypatch):
    """Pretend to be process 1 of 2 in an NCCL group on GPU 1; returns the devices of the
    tensors handed to all_reduce."""
    seen: list[torch.device] = []
    dist = sx.dist
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_backend", lambda *a: "nccl")
    monkeypatch.setattr(dist, "get_rank", lambda *a: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda *a: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(dist, "all_reduce", lambda t, op=None, **kw: seen.append(t.device))
    return seen


def test_every_tensor_reaching_a_collective_is_on_the_process_gpu(sx, nccl_rank1):
    gpu = torch.device("cuda", 1)
    assert sx.collective_device() == gpu
    with FakeTensorMode(allow_non_fake_inputs=True):
        model = torch.nn.Module()
        model.a = torch.nn.Parameter(torch.zeros(3, 4).to(gpu))
        model.b = torch.nn.Parameter(torch.zeros(5).to(gpu))
        model.frozen = torch.nn.Parameter(torch.zeros(2).to(gpu), requires_grad=False)
        model.a.grad = torch.ones(3, 4).to(gpu)             # b has no gradient: zeros
        total = sx.all_reduce_sum(torch.tensor(7.0))        # a CPU count, as train_step has
        tokens = sx.all_reduce_sum(12)
        sx.all_reduce_gradients(model)
        assert total.device.type == "cpu" and tokens.dtype == torch.float64
        assert model.a.grad.device == gpu and model.b.grad.device == gpu
    assert nccl_rank1 == [gpu, gpu, gpu]


def test_one_process_calls_no_collective(sx, monkeypatch):
    monkeypatch.setattr(sx.dist, "all_reduce", lambda *a, **k: pytest.fail("collective"))
    assert sx.all_reduce_sum(3).item() == 3.0
    assert sx.collective_device() == torch.device("cpu")


@pytest.mark.parametrize("device,backend,gpu", [("cpu", "gloo", None), ("cuda", "nccl", 1)])
def test_init_distributed_picks_the_backend_from_the_model_device(sx, monkeypatch, device,
                                                                    backend, gpu):
    calls: dict[str, object] = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)   # a CUDA machine
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: calls.setdefault("gpu", i))
    monkeypatch.setattr(sx.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(sx.dist, "init_process_group",
                        lambda b, **kw: calls.setdefault("backend", b))
    sx.init_distributed(device)
    assert calls.get("backend") == backend and calls.get("gpu") == gpu
