"""How a Qwen2.5-sized model is trained on a GPU: its shape, the precision, the loss, LoRA.

The course's own runs use a 1.3M-parameter model in fp32 on a CPU. At 0.5B parameters and up,
on a GPU, four choices decide whether a training step fits and runs fast; this module makes
them, in one place, so that the GPU benchmark (`benchmarks/gpu_lora_efficiency.py`), the memory
estimate (`course/memory.py`) and the FLOP count (`course/flops.py`) all describe the very
same step:

precision
    ``"mixed"`` (the default): the trainable parameters are fp32 (the "master weights"), the
    matmuls run in bf16 under ``torch.autocast``, AdamW's moments are fp32. ``"bf16"``: every
    tensor in bf16, AdamW's moments too -- half the memory, but an fp32 update smaller than
    half a bf16 ulp of its weight is rounded away, so at lr 1e-5 most weights never move
    (`bf16_update_stall` measures it). LoRA freezes the base weights, which then
    need no master copy: they are stored in bf16 and only the adapters are fp32.
loss
    The output layer maps each position to 151,936 logits. Materialising them for the whole
    batch (``model(input_ids, labels=...)``) costs ``tokens x vocab x (2 + 4 + 4)`` bytes
    (bf16 logits, their fp32 upcast, the fp32 log-softmax) -- more than every decoder layer of
    the 0.5B model together. `chunked_cross_entropy` scores only the supervised positions
    (step 3's sparse loss), a chunk of positions at a time, and computes each chunk's
    gradients right away: at most ``chunk x vocab`` logits exist at any moment, and nothing is
    recomputed (the FLOPs stay 6 per parameter and token).
LoRA dropout
    `nn.Dropout` on the LoRA path keeps its own dropped-out copy of every adapted layer's input
    (q, k and v each make one: 3 copies of the attention input, 2 of the MLP input, plus
    o_proj's and down_proj's), which can make LoRA need *more* activation memory than full
    fine-tuning. The default here is no dropout (nn.Identity: no copy); a dropout > 0 is
    allowed and its cost is counted by `course.memory.estimate_peak`.
attention
    ``attn_implementation="sdpa"``, no padding mask (causal): on a GPU this is FlashAttention
    (`flash_attention_check` proves it for a shape), which keeps only its output and a
    log-sum-exp per head and position.

Nothing here downloads anything: models are built from their configuration (random weights;
the step's cost does not depend on the values).
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100

# Qwen/Qwen2.5-{0.5B,1.5B,3B,7B}/config.json: hidden, layers, heads, kv heads, intermediate, vocab,
# tied embeddings. All: SwiGLU, RMSNorm eps 1e-6, QKV bias, rope theta 1e6, 32768 positions.
QWEN25: dict[str, dict[str, Any]] = {
    "0.5B": dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, intermediate_size=4864, vocab_size=151936,
                 tie_word_embeddings=True),
    "1.5B": dict(hidden_size=1536, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2, intermediate_size=8960, vocab_size=151936,
                 tie_word_embeddings=True),
    "3B": dict(hidden_size=2048, num_hidden_layers=36, num_attention_heads=16,
               num_key_value_heads=2, intermediate_size=11008, vocab_size=151936,
               tie_word_embeddings=True),
    "7B": dict(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, intermediate_size=18944, vocab_size=152064,  # not 151936
               tie_word_embeddings=False),
}
# The same architecture at toy sizes: a CPU trains both in well under a second.
TINY: dict[str, dict[str, Any]] = {
    "tiny-a": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, intermediate_size=128, vocab_size=512,
                   tie_word_embeddings=True),
    "tiny-b": dict(hidden_size=96, num_hidden_layers=3, num_attention_heads=4,
                   num_key_value_heads=2, intermediate_size=192, vocab_size=512,
                   tie_word_embeddings=False),
}
SIZES: dict[str, dict[str, Any]] = {**QWEN25, **TINY}
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def qwen_config(size: str, layers: int | None = None):
    """The transformers Qwen2Config of a Qwen2.5 size (or a TINY one); `layers` truncates it
    (the FLOP and memory tests run 2 layers at the real width and scale back)."""
    from transformers import Qwen2Config

    shape = dict(SIZES[size])
    if layers is not None:
        shape["num_hidden_layers"] = layers
    return Qwen2Config(**shape, rms_norm_eps=1e-6, rope_theta=1e6,
                       max_position_embeddings=32768, use_cache=False)


@dataclass(frozen=True)
class Recipe:
    """One way to train: what trains, in which precision, with which loss.

    method: "full" (every parameter) or "lora" (adapters on every linear layer but the head).
    precision: "mixed" (fp32 trainable weights + bf16 autocast; the default) or "bf16" (pure
        bf16, moments included: the named cheap option; see the module docstring).
    lora_r, lora_alpha, lora_dropout: the adapters (a common recipe: r 64, alpha 128;
        dropout 0 by default: no copy of the inputs, see the module docstring).
    lora_impl: "course" (step 4's LoRALinear, passed in by the caller) or "peft".
    grad_ckpt: gradient checkpointing (each layer keeps only its input; recomputed once).
    loss_chunk: positions per output-layer chunk (`chunked_cross_entropy`); 0: the library
        loss, ``model(input_ids, labels=labels).loss``, which materialises every logit.
    compile: ``torch.compile`` the decoder layers.
    """

    method: str = "full"
    precision: str = "mixed"
    lora_r: int = 64
    lora_alpha: float = 128.0
    lora_dropout: float = 0.0
    lora_impl: str = "course"
    grad_ckpt: bool = False
    loss_chunk: int = 1024
    compile: bool = False

    def __post_init__(self) -> None:
        if self.method not in ("full", "lora"):
            raise ValueError(f"method must be 'full' or 'lora', got {self.method!r}")
        if self.precision not in ("mixed", "bf16"):
            raise ValueError(f"precision must be 'mixed' or 'bf16', got {self.precision!r}")
        if self.lora_impl not in ("course", "peft"):
            raise ValueError(f"lora_impl must be 'course' or 'peft', got {self.lora_impl!r}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")

    @property
    def base_dtype(self) -> torch.dtype:
        """dtype the model is built in: fp32 master weights only where they train in "mixed"."""
        if self.method == "full" and self.precision == "mixed":
            return torch.float32
        return torch.bfloat16

    @property
    def adapter_dtype(self) -> torch.dtype:
        return torch.float32 if self.precision == "mixed" else torch.bfloat16

    @property
    def autocast(self) -> bool:
        return self.precision == "mixed"

    def label(self) -> str:
        extra = [self.precision]
        if self.method == "lora":
            extra.append(f"r={self.lora_r}" + (f" dropout {self.lora_dropout:g}"
                                               if self.lora_dropout else ""))
        if self.grad_ckpt:
            extra.append("grad ckpt")
        return f"{self.method} ({', '.join(extra)})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_(self, **changes: Any) -> "Recipe":
        return replace(self, **changes)


# --- the model -----------------------------------------------------------------------------------
def build_model(config, recipe: Recipe, device: torch.device | str = "cpu",
                inject_lora: Callable[..., Any] | None = None, seed: int = 0) -> nn.Module:
    """A Qwen2ForCausalLM from `config` on `device`, set up for `recipe`: built in
    `recipe.base_dtype`, LoRA injected (adapters cast to `recipe.adapter_dtype`), gradient
    checkpointing, torch.compile. `inject_lora(model, targets, r=, alpha=, dropout=)` is step
    4's `inject_lora` (needed for lora_impl "course"). Works under FakeTensorMode."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=recipe.base_dtype,
                                                 attn_implementation="sdpa")
    if recipe.method == "lora":
        model = add_lora(model, recipe, inject_lora)
    if recipe.grad_ckpt:
        with warnings.catch_warnings():  # transformers 5 renames it; the old name still works
            warnings.simplefilter("ignore", FutureWarning)
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    if recipe.compile:
        for layer in causal_lm(model).model.layers:
            layer.compile()
    return model


def add_lora(model: nn.Module, recipe: Recipe,
             inject_lora: Callable[..., Any] | None = None) -> nn.Module:
    """LoRA on every linear layer of the decoder (not the head), adapters in
    `recipe.adapter_dtype`, base frozen. Returns the model (a PeftModel for lora_impl "peft")."""
    if recipe.lora_impl == "peft":
        from peft import LoraConfig, get_peft_model

        # autocast_adapter_dtype is get_peft_model's argument, not LoraConfig's: False keeps
        # the adapters in the base's dtype here; they are cast to adapter_dtype below
        model = get_peft_model(model, LoraConfig(
            r=recipe.lora_r, lora_alpha=recipe.lora_alpha, lora_dropout=recipe.lora_dropout,
            target_modules=list(LORA_TARGETS), task_type="CAUSAL_LM"),
            autocast_adapter_dtype=False)
    else:
        if inject_lora is None:
            raise ValueError("lora_impl 'course' needs step 4's inject_lora (course.grading."
                             "load_reference('step4_lora', 'lora_exercise').inject_lora)")
        inject_lora(model, list(LORA_TARGETS), r=recipe.lora_r, alpha=recipe.lora_alpha,
                    dropout=recipe.lora_dropout)
    for name, p in model.named_parameters():
        if "lora_" in name:
            p.data = p.data.to(recipe.adapter_dtype)
    return model


def causal_lm(model: nn.Module) -> nn.Module:
    """The Qwen2ForCausalLM inside `model` (itself, or the one a PeftModel wraps)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """{"total": distinct parameters (tied ones once), "trainable", "lora": adapter params,
    "matmul": weights of every nn.Linear (the head counts even when tied: it still multiplies)}.
    LoRA's own A and B are counted in "lora", not in "matmul"."""
    params = {id(p): (n, p) for n, p in model.named_parameters()}.values()
    lora_ids = {id(p) for n, p in params if "lora_" in n}
    matmul = sum(m.weight.numel() for name, m in model.named_modules()
                 if isinstance(m, nn.Linear) and id(m.weight) not in lora_ids)
    return {"total": sum(p.numel() for _, p in params),
            "trainable": sum(p.numel() for _, p in params if p.requires_grad),
            "lora": sum(p.numel() for n, p in params if "lora_" in n), "matmul": matmul}


# --- the loss ------------------------------------------------------------------------------------
class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """sum_i CE(hidden[i] @ weight.T, targets[i]), a chunk of rows at a time; each chunk's
    gradients (w.r.t. hidden and, when it trains, weight) are computed in the forward pass, so
    no logit outlives its chunk and backward only scales them by the incoming gradient."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                chunk: int, compute_dtype: torch.dtype) -> torch.Tensor:
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(compute_dtype)
            need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
            grad_h = torch.empty(hidden.shape, dtype=compute_dtype, device=hidden.device) \
                if need_h else None
            grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) \
                if need_w else None
            total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            for start in range(0, hidden.shape[0], chunk):
                h = hidden[start:start + chunk].to(compute_dtype)
                t = targets[start:start + chunk]
                logits = (h @ w.T).float()                              # (c, vocab), fp32
                # log-sum-exp and softmax in place: one (c, vocab) fp32 buffer, no more
                target_logit = logits.gather(1, t[:, None]).squeeze(1)
                top = logits.amax(dim=-1, keepdim=True)
                probs = logits.sub_(top).exp_()
                norm = probs.sum(dim=-1, keepdim=True)
                total += (top.squeeze(1) + norm.squeeze(1).log() - target_logit).sum()
                if not (need_h or need_w):                              # no gradient wanted
                    del logits, probs
                    continue
                probs.div_(norm)
                probs.scatter_add_(1, t[:, None], probs.new_full((len(t), 1), -1.0))
                g = probs.to(compute_dtype)                             # d loss / d logits
                del logits, probs                                       # the fp32 buffer
                if need_h:
                    grad_h[start:start + chunk] = g @ w
                if need_w:
                    grad_w.add_(g.T @ h)                                # fp32 accumulation
                del g                                                   # before the next chunk
        ctx.hidden_dtype, ctx.weight_dtype = hidden.dtype, weight.dtype
        ctx.save_for_backward(*(x for x in (grad_h, grad_w) if x is not None))
        ctx.has = (grad_h is not None, grad_w is not None)
        return total

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        saved = list(ctx.saved_tensors)
        grad_h = saved.pop(0).to(ctx.hidden_dtype) * grad_out if ctx.has[0] else None
        grad_w = (saved.pop(0) * grad_out).to(ctx.weight_dtype) if ctx.has[1] else None
        return grad_h, grad_w, None, None, None


def chunked_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                          chunk: int = 1024, compute_dtype: torch.dtype | None = None
                          ) -> torch.Tensor:
    """Summed cross-entropy of the logits ``hidden @ weight.T`` (hidden (N, H) of the supervised
    positions only, weight (vocab, H), targets (N,)), as an fp32 scalar, without ever holding
    more than `chunk` rows of logits (their fp32 softmax, their gradient). Equal to
    ``F.cross_entropy((hidden @ weight.T).float(), targets, reduction="sum")``, gradients
    included. compute_dtype: the matmuls' dtype (default: bf16 under autocast, else the
    hidden states' dtype)."""
    if compute_dtype is None:
        compute_dtype = (torch.get_autocast_dtype(hidden.device.type)
                         if torch.is_autocast_enabled(hidden.device.type) else hidden.dtype)
    return _ChunkedLinearCrossEntropy.apply(hidden, weight, targets, max(1, chunk),
                                            compute_dtype)


def supervised_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(flat positions, their targets) of a (B, T) label batch: position b*T + t is scored when
    labels[b, t + 1] is not IGNORE_INDEX (the next token is supervised)."""
    nxt = F.pad(labels, (0, 1), value=IGNORE_INDEX)[:, 1:].reshape(-1)
    positions = (nxt != IGNORE_INDEX).nonzero().squeeze(1)
    return positions, nxt[positions]


def loss_sum(model: nn.Module, input_ids: torch.Tensor, positions: torch.Tensor,
             targets: torch.Tensor, recipe: Recipe) -> torch.Tensor:
    """The summed cross-entropy of one batch under `recipe` (autocast not included: see
    `training_step`). positions, targets: from `supervised_positions`. With loss_chunk 0, the
    library loss over the positions (every logit materialised)."""
    lm = causal_lm(model)
    if recipe.loss_chunk == 0:
        B, T = input_ids.shape
        labels = torch.full((B * T,), IGNORE_INDEX, dtype=torch.long, device=input_ids.device)
        labels[positions] = targets
        labels = F.pad(labels.view(B, T), (1, 0), value=IGNORE_INDEX)[:, :-1]
        return model(input_ids=input_ids, labels=labels).loss * positions.numel()
    hidden = lm.model(input_ids=input_ids).last_hidden_state
    hidden = hidden.reshape(-1, hidden.shape[-1]).index_select(0, positions)
    return chunked_cross_entropy(hidden, lm.get_output_embeddings().weight, targets,
                                 recipe.loss_chunk)


def make_optimizer(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters, fused (one kernel per step on CUDA; the CPU has a
    fused AdamW too, so fake-tensor runs follow the same path)."""
    trainable = [p for p in {id(p): p for p in model.parameters()}.values() if p.requires_grad]
    return torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0, fused=True)


def training_step(model: nn.Module, optimizer: torch.optim.Optimizer, input_ids: torch.Tensor,
                  positions: torch.Tensor, targets: torch.Tensor, recipe: Recipe
                  ) -> torch.Tensor:
    """One optimizer step: mean loss over the supervised positions (bf16 autocast in "mixed"),
    backward, AdamW, gradients freed. Returns the loss (a detached tensor: no sync)."""
    with torch.autocast(input_ids.device.type, dtype=torch.bfloat16, enabled=recipe.autocast):
        total = loss_sum(model, input_ids, positions, targets, recipe)
    loss = total / max(positions.numel(), 1)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def random_batch(config, batch_size: int, seq_len: int, supervised: float = 1.0,
                 device: torch.device | str = "cpu", seed: int = 0
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, positions, targets) of random tokens: the last `supervised` fraction of every
    row is scored (an answer after its prompt), so `positions` has
    ``batch_size * round(supervised * (seq_len - 1))`` entries. Deterministic; works under
    FakeTensorMode (no data-dependent shapes)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, config.vocab_size, (batch_size, seq_len), generator=g)
    n = round(supervised * (seq_len - 1))
    cols = torch.arange(seq_len - 1 - n, seq_len - 1)
    positions = (torch.arange(batch_size)[:, None] * seq_len + cols[None, :]).reshape(-1)
    targets = ids.reshape(-1)[positions + 1]
    return ids.to(device), positions.to(device), targets.to(device)


# --- checks on a GPU -----------------------------------------------------------------------------
def flash_attention_check(config, batch_size: int, seq_len: int, device: torch.device | str,
                          dtype: torch.dtype = torch.bfloat16) -> dict[str, Any]:
    """Does one layer's attention, at this shape and dtype, run on FlashAttention? Runs a forward
    and backward of the first decoder layer's self-attention with only the flash kernel allowed
    (`torch.nn.attention.sdpa_kernel`): {"flash": True} when it ran, else {"flash": False,
    "error": why}. Needs CUDA for a meaningful answer."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    heads, kv = config.num_attention_heads, config.num_key_value_heads
    head_dim = config.hidden_size // heads
    q = torch.randn(batch_size, heads, seq_len, head_dim, device=device, dtype=dtype,
                    requires_grad=True)
    k = torch.randn(batch_size, kv, seq_len, head_dim, device=device, dtype=dtype,
                    requires_grad=True)
    v = torch.randn_like(k, requires_grad=True)
    try:
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            out.sum().backward()
    except (RuntimeError, TypeError) as err:  # no kernel for it; TypeError: torch < 2.5
        return {"flash": False, "error": f"{type(err).__name__}: "
                                         f"{str(err).splitlines()[0][:300] if str(err) else ''}"}
    return {"flash": True, "shape": [batch_size, heads, seq_len, head_dim], "kv_heads": kv}


@contextlib.contextmanager
def cuda_time(device: torch.device) -> Iterator[dict[str, float]]:
    """Wall-clock seconds of a block, CUDA synchronised before and after: ``with cuda_time(d)
    as t: ...; t["s"]``."""
    import time

    sync = device.type == "cuda"
    if sync:
        torch.cuda.synchronize(device)
    out: dict[str, float] = {}
    start = time.perf_counter()
    try:
        yield out
    finally:
        if sync:
            torch.cuda.synchronize(device)
        out["s"] = time.perf_counter() - start


def median_step_time(times: list[float]) -> float:
    """The median of step times, the first (allocation, autotuning, compilation) left out."""
    import statistics

    return statistics.median(times[1:] if len(times) > 1 else times)


def gib(n: float | None) -> float | None:
    return None if n is None else n / 2**30



def bf16_update_stall(steps: int = 10, lr: float = 1e-5, n: int = 200_000, seed: int = 0,
                      device: torch.device | str = "cpu") -> dict[str, float]:
    """Why pure bf16 training stalls: the fraction of weights (N(0, 0.02), a typical init) that
    `steps` AdamW steps at `lr` actually change, kept in bf16 (weights and moments, as the
    "bf16" precision does) vs fp32 master weights (as "mixed"). AdamW's first steps move each
    weight by about lr; bf16 keeps 8 bits of mantissa, so an update below half a unit in the
    last place of its weight (|w| / 256) rounds away."""
    g = torch.Generator().manual_seed(seed)
    init = (torch.randn(n, generator=g) * 0.02).to(device)
    grads = [torch.randn(n, generator=g).to(device) for _ in range(steps)]
    changed = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp32_master", torch.float32)):
        w = torch.nn.Parameter(init.to(dtype).clone())
        start = w.detach().clone()
        opt = torch.optim.AdamW([w], lr=lr, weight_decay=0.0)
        for grad in grads:
            w.grad = grad.to(dtype)
            opt.step()
        changed[name] = (w.detach() != start).float().mean().item()  # in the stored dtype
    return {"steps": steps, "lr": lr, "changed_bf16": changed["bf16"],
            "changed_fp32_master": changed["fp32_master"]}
