"""GPU memory of one training step, two ways: an analytic estimate, and a count under fake tensors.

    from course import memory, recipe
    config = recipe.qwen_config("0.5B")
    memory.estimate_peak(config, recipe.Recipe("lora"), batch_size=2, seq_len=2048)["total"]
    memory.fake_peak(config, recipe.Recipe("lora"), 2, 2048, inject_lora=...)["peak"]

`estimate_peak` adds up, byte by byte, what is alive at the busiest moment of a step
(`course.recipe` says what the step does): the weights, AdamW's moments, the gradients, the
activations autograd saves (listed tensor by tensor in `activation_bytes_per_token`), the bf16
copies autocast makes of fp32 weights, and the output layer's buffers. It is the figure the GPU
benchmark prints next to `torch.cuda.max_memory_allocated()`.

`fake_peak` runs the very same step (the second one: AdamW's moments exist) under
`torch._subclasses.FakeTensorMode` -- tensors with shapes and dtypes but no data, so a 7B step
"runs" on a laptop in seconds -- and follows every storage from its allocation to its release
(`LiveBytes`): the peak of live bytes is what a caching allocator's `max_memory_allocated`
reports, fragmentation aside. The tests hold the estimate to it within 5 %.

One difference from a GPU is taken care of: transformers cannot tell, under fake tensors,
whether a batch is padded, so it would build a (B, 1, T, T) mask (and repeat the key/value heads
for it); on a GPU, with no padding, it passes ``is_causal`` and FlashAttention gets the grouped
heads as they are. `fake_peak` lets it know there is no padding (`_no_padding_under_fake`).
"""
from __future__ import annotations

import contextlib
import weakref
from typing import Any, Callable, Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map_only

from course.recipe import Recipe, build_model, make_optimizer, random_batch, training_step

GIB = 2**30
CARDS_GIB = {"80 GiB (H100 SXM)": 80.0, "141 GiB (H200)": 141.0}


# --- counting under fake tensors -----------------------------------------------------------------
class LiveBytes(TorchDispatchMode):
    """Bytes of every storage alive, and their peak, while active: each operator's outputs are
    counted when created and uncounted when their storage is freed (a weakref finalizer).
    Tensors made before the mode was entered are not seen: enter it first."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._seen: set[int] = set()

    def _track(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key = id(storage)
        if key in self._seen:
            return
        n = storage.nbytes()
        self._seen.add(key)
        self.live += n
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._free, key, n)

    def _free(self, key: int, n: int) -> None:
        self.live -= n
        self._seen.discard(key)

    def reset_peak(self) -> None:
        self.peak = self.live

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        tree_map_only(torch.Tensor, self._track, out)
        return out


@contextlib.contextmanager
def _no_padding_under_fake() -> Iterator[None]:
    """Let transformers skip the causal mask under fake tensors, as it does on a GPU for a batch
    without padding (it cannot read a fake tensor's values to find that out itself)."""
    from transformers import masking_utils as mu

    original_ignore, original_packed = mu._ignore_causal_mask_sdpa, mu.find_packed_sequence_indices

    def ignore(padding_mask, q_length, kv_length, *args, **kwargs):
        if padding_mask is None and q_length == kv_length:
            return True
        return original_ignore(padding_mask, q_length, kv_length, *args, **kwargs)

    mu._ignore_causal_mask_sdpa = ignore
    mu.find_packed_sequence_indices = lambda *args, **kwargs: None  # positions 0..T-1: unpacked
    try:
        yield
    finally:
        mu._ignore_causal_mask_sdpa = original_ignore
        mu.find_packed_sequence_indices = original_packed


def fake_peak(config, recipe: Recipe, batch_size: int, seq_len: int, supervised: float = 1.0,
              inject_lora: Callable[..., Any] | None = None) -> dict[str, int]:
    """Peak live bytes of the second training step of `recipe` (the first creates AdamW's
    moments), counted under FakeTensorMode on the CPU: {"peak", "static" (weights and moments
    before the step), "after_first_step"}. A second or two per model, whatever its size."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with _no_padding_under_fake(), FakeTensorMode(), LiveBytes() as live:
        model = build_model(config, recipe, "cpu", inject_lora=inject_lora)
        optimizer = make_optimizer(model, 1e-5)
        ids, positions, targets = random_batch(config, batch_size, seq_len, supervised)
        training_step(model, optimizer, ids, positions, targets, recipe)
        static = live.live
        live.reset_peak()
        training_step(model, optimizer, ids, positions, targets, recipe)
        return {"peak": live.peak, "static": static}


# --- the analytic estimate -----------------------------------------------------------------------
def _shape(config) -> dict[str, int]:
    h, heads = config.hidden_size, config.num_attention_heads
    return {"h": h, "i": config.intermediate_size, "L": config.num_hidden_layers,
            "V": config.vocab_size, "heads": heads,
            "kv": h // heads * config.num_key_value_heads, "d": h // heads,
            "tied": int(bool(config.tie_word_embeddings))}


def parameter_split(config, recipe: Recipe) -> dict[str, int]:
    """Parameter counts of a Qwen2 model from its config: {"total", "layer" (one decoder
    layer), "layer_matmul" (its linear weights), "embedding", "head" (0 when tied), "lora"
    (adapters of all layers; 0 for full)}."""
    s = _shape(config)
    h, i, kv = s["h"], s["i"], s["kv"]
    layer_matmul = h * h * 2 + h * kv * 2 + 3 * h * i       # q, o; k, v; gate, up, down
    layer = layer_matmul + h + 2 * kv + 2 * h                # qkv biases, two norms
    embedding = s["V"] * h
    head = 0 if s["tied"] else s["V"] * h
    r = recipe.lora_r
    lora = 0
    if recipe.method == "lora":
        per_layer = sum(r * (a + b) for a, b in
                        [(h, h), (h, kv), (h, kv), (h, h), (h, i), (h, i), (i, h)])
        lora = s["L"] * per_layer
    total = s["L"] * layer + embedding + head + h            # + the final norm
    return {"total": total, "layer": layer, "layer_matmul": layer_matmul,
            "embedding": embedding, "head": head, "lora": lora}


def activation_bytes_per_token(config, recipe: Recipe) -> dict[str, int]:
    """Bytes autograd saves per token for one decoder layer (and for the layer-0 exception),
    by recipe. Counted from the saved tensors (h hidden, kv key/value width, i intermediate):

    RMSNorm (x2)     its input upcast to fp32 (4h) and 1/rms (4); when its weight trains, the
                     normalised input too (4h under autocast, else 2h in bf16) and, in pure
                     bf16, its output (2h: the projections' input)
    projections      under autocast, each of q, k, v, gate and up casts the fp32 norm output to
                     bf16 on its own: 5 copies of 2h; with bf16 weights the norm output is
                     shared (2h, once per norm, counted above for full; for LoRA the frozen
                     base needs no input, A does: 2h per norm)
    attention        rotated q (2h) and k (2kv), v (2kv), FlashAttention's output (2h: also
                     o_proj's input) and its log-sum-exp (4 per head)
    MLP              gate, up, silu(gate), silu(gate) * up (4 x 2i)
    LoRA             A's output of each of the 7 adapters (7 x 2r); with dropout, each adapted
                     layer also keeps its dropped-out input (2 bytes) and mask (1 byte)
    Layer 0 under LoRA: its input needs no gradient (embedding and norm frozen), so the input
    norm saves nothing but its output.
    """
    s = _shape(config)
    h, i, kv, heads, r = s["h"], s["i"], s["kv"], s["heads"], recipe.lora_r
    attention = 2 * h + 4 * kv + 4 * heads + 2 * h
    mlp = 8 * i
    if recipe.method == "full" and recipe.precision == "mixed":
        norms = 2 * (4 * h + 4 + 4 * h)
        casts = 5 * 2 * h
        layer = norms + casts + attention + mlp
        first = layer
    elif recipe.method == "full":
        norms = 2 * (4 * h + 4 + 2 * h + 2 * h)
        layer = norms + attention + mlp
        first = layer
    else:
        norms = 2 * (4 * h + 4 + 2 * h)
        layer = norms + attention + mlp + 7 * 2 * r
        if recipe.lora_dropout > 0:
            layer += 3 * (3 * h + h + 2 * h + i)
        first = layer - (4 * h + 4)
    return {"layer": layer, "first_layer": first}


def estimate_peak(config, recipe: Recipe, batch_size: int, seq_len: int,
                  supervised: float = 1.0) -> dict[str, int]:
    """Peak bytes of one training step of `recipe` (from the second step on), by what holds
    them: {"weights", "optimizer", "grads", "activations", "autocast_copies", "loss", "total"}
    (ints; "grads" and "loss" are what is alive at the peak, not their largest values).

    The peak is the largest of three moments: (a) the output layer's forward, every layer's
    activations saved, a chunk of logits in flight; (b) the start of backward, the output
    layer's gradients made; (c) the end of backward, every gradient made (plus the embedding's
    dense gradient being added in). The module docstring says how this is checked.
    """
    s = _shape(config)
    h, V, L = s["h"], s["V"], s["L"]
    split = parameter_split(config, recipe)
    P, P_lora = split["total"], split["lora"]
    tokens = batch_size * seq_len
    n_sup = batch_size * round(supervised * (seq_len - 1))
    mixed = recipe.precision == "mixed"
    full = recipe.method == "full"
    resid = 4 if (full and mixed) else 2                     # residual stream's bytes per value
    master = 4 if mixed else 2                               # trainable weights' bytes

    if full:
        weights = P * master
        trainable = P
    else:
        weights = P * 2 + P_lora * master
        trainable = P_lora
    optimizer = 2 * trainable * master                       # exp_avg, exp_avg_sq
    grads_all = trainable * master

    per = activation_bytes_per_token(config, recipe)
    rope = 2 * seq_len * s["d"] * (4 if mixed else 2)        # cos and sin, shared by all layers
    final_norm = 4 * h + 4 + ((4 * h if mixed else 2 * h) if full else 0)
    head_w = split["head"] or split["embedding"]             # the output layer's weight
    if recipe.grad_ckpt:
        # each layer keeps its input; one layer at a time is recomputed in backward
        activations = tokens * (L * h * resid + final_norm + 8) + rope
        recompute = tokens * per["layer"]
    else:
        activations = tokens * (per["first_layer"] + (L - 1) * per["layer"] + final_norm + 8) + rope
        recompute = 0
    copies = 0                                               # autocast's bf16 weight copies
    if mixed:
        copies = 2 * (L * split["layer_matmul"] if full else P_lora)

    # the output layer (course.recipe.chunked_cross_entropy)
    chunk = min(recipe.loss_chunk or n_sup, n_sup)
    grad_h = n_sup * h * 2 + n_sup * 8                       # bf16 d loss / d hidden, positions
    grad_w = 4 * head_w if full else 0
    w_copy = 2 * head_w if (full and mixed) else 0
    chunk_peak = max(6 * chunk * V, 2 * chunk * V + (2 * head_w if full else 0))
    selected = n_sup * h * resid
    loss_forward = grad_h + grad_w + w_copy + chunk_peak + selected
    loss_backward = grad_h + grad_w + n_sup * h * resid + (grad_w if not mixed else 0)

    layer_copies = copies // L if recipe.grad_ckpt else copies  # held during backward
    embed_grad = 4 * split["embedding"] if full else 0       # the embedding's dense gradient
    moments = {
        "output layer, forward": {"activations": activations, "autocast_copies": copies,
                                  "loss": loss_forward, "grads": 0},
        "start of backward": {"activations": activations + recompute,
                              "autocast_copies": layer_copies, "loss": loss_backward,
                              "grads": 0},
        "end of backward": {"activations": 0, "autocast_copies": 0, "loss": 0,
                            "grads": grads_all + embed_grad},
    }
    busiest = max(moments, key=lambda k: sum(moments[k].values()))
    out = {"weights": weights, "optimizer": optimizer, **moments[busiest]}
    out["total"] = sum(out.values())
    out["busiest"] = busiest
    return out
