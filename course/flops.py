"""FLOPs of one training step, analytic and counted, and the MFU they give.

MFU (model FLOPs utilisation) = the FLOPs a step must do / step time / the device's dense bf16
peak. "Must do" is counted per matmul (`step_flops`), with N = weights that multiply
activations (every nn.Linear, the output layer included even when tied to the embedding; the
embedding lookup does no matmul), N_lora = LoRA's A and B, per token:

    full   6 N               forward 2N; backward 4N (input gradients 2N, weight gradients 2N)
    lora   4 N + 6 N_lora    forward 2N; backward still sends input gradients through every
                             frozen matmul (2N) but makes weight gradients only for A and B

with two exact corrections: the output layer runs only on the supervised positions (step 3's
sparse loss: B (T - 1) of B T when every answer token is scored), and under LoRA layer 0's
q, k and v need no input gradient (the embedding below is frozen). Attention's two matmuls per
layer (QK^T and AV: 4 h T per token forward; FlashAttention's backward 10 h T, recomputing
QK^T) are reported apart (`attention`), as the 6N convention leaves them out of MFU; gradient
checkpointing's second forward (2 N more, less each layer's last matmul, which torch's early
stop never redoes) is reported as `recompute` and is not "must do" either.

`count_step_flops` counts what the step executes with `torch.utils.flop_counter.FlopCounterMode`
(under fake tensors: no memory, no time); the tests hold `step_flops` to it within 1 %.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch

from course.memory import _no_padding_under_fake, parameter_split
from course.recipe import Recipe, build_model, make_optimizer, random_batch, training_step

# Dense bf16 tensor-core peaks (TFLOP/s, datasheets, without sparsity). The first key found in
# torch.cuda.get_device_name() wins, so the more specific names come first.
PEAK_BF16_TFLOPS: list[tuple[str, float]] = [
    ("H200 NVL", 835.0), ("H200", 989.0),
    ("H100 NVL", 835.0), ("H100 PCIe", 756.0), ("H100", 989.0),
    ("GH200", 989.0), ("B200", 2250.0), ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0),
]
MATMUL_OPS = ("aten.mm", "aten.addmm", "aten.bmm", "aten.baddbmm", "aten.matmul")


def peak_tflops(device_name: str) -> float | None:
    """Dense bf16 peak of a device from its name (`torch.cuda.get_device_name()`), or None."""
    return next((t for key, t in PEAK_BF16_TFLOPS if key in device_name), None)


def step_flops(config, recipe: Recipe, batch_size: int, seq_len: int,
               supervised: float = 1.0) -> dict[str, int]:
    """FLOPs of one training step of `recipe` on a batch of batch_size x seq_len tokens (the
    last `supervised` fraction of each row scored, as `course.recipe.random_batch`):
    {"matmul": the model's matmuls (MFU's numerator), "attention": QK^T and AV forward and
    FlashAttention backward, "recompute": gradient checkpointing's extra forward (full
    fine-tuning; None for LoRA, not derived here; 0 without checkpointing),
    "per_token": matmul / tokens}."""
    split = parameter_split(config, recipe)
    h, L = config.hidden_size, config.num_hidden_layers
    kv = h // config.num_attention_heads * config.num_key_value_heads
    tokens = batch_size * seq_len
    n_sup = batch_size * round(supervised * (seq_len - 1))
    decoder = L * split["layer_matmul"]
    head = split["head"] or split["embedding"]
    if recipe.method == "full":
        matmul = 6 * decoder * tokens + 6 * head * n_sup
    else:
        r, lora = recipe.lora_r, split["lora"]
        qkv = h * h + 2 * h * kv                            # layer 0's q, k, v weights
        matmul = ((4 * decoder + 6 * lora) * tokens + 4 * head * n_sup
                  - 2 * (qkv + 3 * r * h) * tokens)       # no input gradient into layer 0
    attention = 14 * L * h * seq_len * tokens
    # gradient checkpointing re-runs each layer's forward, but stops once every tensor its
    # backward needs is back (torch's early stop): down_proj's own matmul is never redone
    recompute = 2 * (decoder - L * h * config.intermediate_size) * tokens \
        if recipe.grad_ckpt and recipe.method == "full" else None
    if not recipe.grad_ckpt:
        recompute = 0
    return {"matmul": matmul, "attention": attention, "recompute": recompute,
            "per_token": matmul // tokens}


def mfu(flops: float, step_seconds: float, peak_tflops_: float | None) -> float | None:
    """flops / step_seconds / peak, or None without a known peak."""
    if not peak_tflops_ or step_seconds <= 0:
        return None
    return flops / step_seconds / (peak_tflops_ * 1e12)


def count_step_flops(config, recipe: Recipe, batch_size: int, seq_len: int,
                     supervised: float = 1.0, inject_lora: Callable[..., Any] | None = None,
                     device: str = "cpu", fake: bool = True) -> dict[str, int]:
    """FLOPs of one training step counted by FlopCounterMode: {"matmul": every mm/addmm/bmm,
    "attention": scaled_dot_product_attention forward + backward (0 where the counter has no
    formula for the kernel, e.g. the CPU's flash kernel), "total"}. Under FakeTensorMode by
    default (any size, on a laptop); fake=False counts a real step (e.g. on CUDA)."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils.flop_counter import FlopCounterMode

    context = contextlib.ExitStack() if not fake else _fake_context(FakeTensorMode)
    with context:
        model = build_model(config, recipe, device, inject_lora=inject_lora)
        optimizer = make_optimizer(model, 1e-5)
        ids, positions, targets = random_batch(config, batch_size, seq_len, supervised, device)
        counter = FlopCounterMode(display=False)
        with counter:
            training_step(model, optimizer, ids, positions, targets, recipe)
    counts = counter.get_flop_counts()["Global"]
    matmul = sum(v for k, v in counts.items()
                 if str(k) in MATMUL_OPS or str(k).rsplit(".", 1)[0] in MATMUL_OPS)
    attention = sum(v for k, v in counts.items() if "attention" in str(k))
    return {"matmul": int(matmul), "attention": int(attention),
            "total": int(counter.get_total_flops()),
            "ops": {str(k): int(v) for k, v in counts.items()}}


def _fake_context(fake_mode_cls) -> contextlib.ExitStack:
    stack = contextlib.ExitStack()
    stack.enter_context(_no_padding_under_fake())
    stack.enter_context(fake_mode_cls())
    return stack
