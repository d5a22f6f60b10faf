"""Step 4 exercises: LoRA by hand. A frozen nn.Linear plus a trainable low-rank update, put into a
model, counted, saved in peft's format, and merged back into a plain model.

tutorial.ipynb imports this module and reloads it before every cell (%autoreload). Each TODO is
a function body; its docstring is the specification that the checks and the grader hold you to.

    layer = LoRALinear(nn.Linear(4096, 4096), r=8, alpha=16)     # 65,536 of 16.8M trainable
    model = inject_lora(load_base_model(), ["q_proj", "v_proj"], r=8, alpha=16)
    count_parameters(model)          # (trainable, total), as peft's get_nb_trainable_parameters()
    save_adapter(model, "adapter")   # PeftModel.from_pretrained(base, "adapter") loads it
    model = merge_and_unload(model)  # a plain transformers model again

Names follow peft (peft/tuners/lora/layer.py): base_layer, lora_A, lora_B, lora_dropout, scaling,
get_delta_weight, merge, unmerge. lora_A and lora_B are bias-free nn.Linear layers with weights of
shape (r, in) and (out, r): the update B.weight @ A.weight has the base weight's (out, in) shape.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch
from torch import nn

from course import lora_io
from course.lora_io import (INITS, check_lora_settings,  # noqa: F401  (given helpers)
                            linear_names, lora_layers)

PEFT_PREFIX = "base_model.model."  # peft saves adapter weights under PeftModel.base_model.model
ALL_LINEAR = "all-linear"          # peft's shorthand: every nn.Linear except the output head


class LoRALinear(nn.Module):
    """y = base_layer(x) + lora_B(lora_A(lora_dropout(x))) * scaling, with base_layer frozen.

    Args:
        base: the nn.Linear (in_features -> out_features) to adapt. It is kept, not copied, as
            `self.base_layer`; its weight and its bias (if any) get requires_grad False.
        r: the rank, 1 <= r <= min(in_features, out_features).
        alpha: sets `scaling` = alpha / r, or alpha / sqrt(r) when `use_rslora` (rank-stabilised
            LoRA, whose updates keep their size as r grows).
        dropout: nn.Dropout(p=dropout) on the input of the LoRA path only (the base path never
            sees dropout); nn.Identity() when dropout == 0.
        init: how lora_A starts. "kaiming" (peft's default, like nn.Linear's own weights):
            nn.init.kaiming_uniform_(a=math.sqrt(5)), i.e. uniform in +-1/sqrt(in_features).
            "gaussian" (peft's init_lora_weights="gaussian"): normal with
            std 1/r. lora_B always starts at zero, so at init the layer equals the base layer,
            yet B's gradient is not zero (it is A @ x times the output gradient).

    Attributes (read by the tests, save_adapter and merge_and_unload):
        base_layer (the frozen nn.Linear), lora_A = nn.Linear(in_features, r, bias=False)
        (weight (r, in)), lora_B = nn.Linear(r, out_features, bias=False) (weight (out, r)),
        both on the base weight's device and dtype and trainable; lora_dropout; r; alpha;
        use_rslora; scaling (a float); merged (bool, False until merge()).

    Raises TypeError if `base` is not an nn.Linear, ValueError for r <= 0,
    r > min(in_features, out_features), alpha <= 0, dropout outside [0, 1) or an unknown init.

    >>> layer = LoRALinear(nn.Linear(16, 8), r=4, alpha=8)
    >>> layer.lora_A.weight.shape, layer.lora_B.weight.shape, layer.scaling
    (torch.Size([4, 16]), torch.Size([8, 4]), 2.0)
    """

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0,
                 use_rslora: bool = False, init: str = "kaiming"):
        super().__init__()
        check_lora_settings(base, r, alpha, dropout, init)
        self.r, self.alpha, self.use_rslora, self.merged = r, alpha, use_rslora, False
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}  # where base lives
        # TODO: freeze base, keep it as base_layer; make lora_A/B (**factory), lora_dropout, scaling
        ### BEGIN SOLUTION
        self.base_layer = base
        for p in base.parameters():  # the weight *and* the bias
            p.requires_grad_(False)
        self.lora_A = nn.Linear(base.in_features, r, bias=False, **factory)
        self.lora_B = nn.Linear(r, base.out_features, bias=False, **factory)
        self.lora_dropout = nn.Dropout(p=dropout) if dropout > 0 else nn.Identity()
        self.scaling = alpha / math.sqrt(r) if use_rslora else alpha / r
        if init == "kaiming":
            nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        else:
            nn.init.normal_(self.lora_A.weight, std=1 / r)
        nn.init.zeros_(self.lora_B.weight)
        ### END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., in_features) -> (..., out_features):
        base_layer(x) + lora_B(lora_A(lora_dropout(x))) * scaling.

        Once merged, the update is inside base_layer.weight, so the result is base_layer(x) alone
        (adding the LoRA path again would count the update twice).
        """
        # TODO: the base output, plus (unless merged) the LoRA path: dropout -> A -> B -> scaling.
        ### BEGIN SOLUTION
        result = self.base_layer(x)
        if self.merged:
            return result
        return result + self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling
        ### END SOLUTION

    def get_delta_weight(self) -> torch.Tensor:
        """The update as a weight: lora_B.weight @ lora_A.weight * scaling, shape (out, in) like
        base_layer.weight, in the LoRA weights' dtype. A function of A and B: merging does not
        change it."""
        # TODO: one matrix product and the scaling.
        ### BEGIN SOLUTION
        return (self.lora_B.weight @ self.lora_A.weight) * self.scaling
        ### END SOLUTION

    def merge(self) -> None:
        """Add the update into the base weight, W <- W + get_delta_weight(), and set `merged`, so
        that forward needs one matmul and gives the same output as before.

        Merging an already merged layer warns and changes nothing (never adds the update twice).
        If W + delta holds a NaN or an infinity, raise ValueError and leave W and `merged` as they
        were (peft's safe_merge). The bias is not touched.
        """
        # TODO: skip (warn) if merged; W + delta, checked finite, written into W; set merged.
        ### BEGIN SOLUTION
        if self.merged:
            warnings.warn("LoRALinear.merge(): already merged, nothing to do", stacklevel=2)
            return
        weight = self.base_layer.weight
        with torch.no_grad():
            new = weight + self.get_delta_weight().to(weight.dtype)
            if not torch.isfinite(new).all():
                raise ValueError("LoRALinear.merge(): the merged weight would contain NaN or "
                                 "inf values; the adapter seems broken, nothing was merged")
            weight.copy_(new)
        self.merged = True
        ### END SOLUTION

    def unmerge(self) -> None:
        """Undo merge(): W <- W - get_delta_weight() and `merged` = False, so the base weight is
        back (up to float rounding) and the LoRA path is used again. Unmerging a layer that is
        not merged warns and changes nothing."""
        # TODO: skip (warn) if not merged; subtract the update from W; clear merged.
        ### BEGIN SOLUTION
        if not self.merged:
            warnings.warn("LoRALinear.unmerge(): not merged, nothing to do", stacklevel=2)
            return
        weight = self.base_layer.weight
        with torch.no_grad():
            weight -= self.get_delta_weight().to(weight.dtype)
        self.merged = False
        ### END SOLUTION

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}, scaling={self.scaling:g}, merged={self.merged}"


# --- putting LoRA into a model ------------------------------------------------------------------
def matches_target(name: str, target_modules: list[str]) -> bool:
    """peft's rule for a list of targets: True when the module name `name` equals a target or
    ends with "." + target, i.e. a target is a whole trailing run of name components.

    >>> name = "model.layers.0.self_attn.q_proj"
    >>> [matches_target(name, t) for t in (["q_proj"], ["self_attn.q_proj"], ["proj"], [])]
    [True, True, False, False]
    """
    # TODO: compare with each target: the whole name, or its end after a dot.
    ### BEGIN SOLUTION
    return any(name == t or name.endswith("." + t) for t in target_modules)
    ### END SOLUTION


def find_target_modules(model: nn.Module, target_modules: list[str] | str) -> list[str]:
    """Full names (as in model.named_modules(), in that order) of the modules to adapt.

    - "all-linear" (any case): every nn.Linear except the output head, i.e. the module returned
      by model.get_output_embeddings() when the model has that method (peft does the same).
    - a list of targets: every module whose name matches_target(name, target_modules). Each
      matched module must be an nn.Linear (else TypeError naming it and its type), and every
      target must match at least one module (else ValueError naming the target; peft only
      complains when no target matches at all).
    Any other string raises ValueError (peft would read it as a regular expression).
    """
    if isinstance(target_modules, str) and target_modules.lower() != ALL_LINEAR:
        raise ValueError(f"target_modules={target_modules!r}: give a list of module names such "
                         f"as ['q_proj', 'v_proj'], or {ALL_LINEAR!r}")
    # TODO: "all-linear": Linear modules that are not the head; a list: names that match.
    ### BEGIN SOLUTION
    if isinstance(target_modules, str):
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        return [name for name, module in model.named_modules()
                if isinstance(module, nn.Linear) and module is not head]
    names = [name for name, _ in model.named_modules()
             if name and matches_target(name, target_modules)]
    for name in names:
        module = model.get_submodule(name)
        if not isinstance(module, nn.Linear):
            raise TypeError(f"target module {name!r} is a {type(module).__name__}, not an "
                            "nn.Linear; LoRALinear only wraps nn.Linear layers")
    for target in target_modules:
        if not any(matches_target(name, [target]) for name in names):
            raise ValueError(f"target {target!r} matches no module of the model; module names "
                             f"look like {linear_names(model)[:3]}")
    return names
    ### END SOLUTION


def inject_lora(model: nn.Module, target_modules: list[str] | str, r: int, alpha: float,
                dropout: float = 0.0, use_rslora: bool = False, init: str = "kaiming"
                ) -> nn.Module:
    """Freeze every parameter of `model`, then replace each module of
    find_target_modules(model, target_modules) by LoRALinear(that module, r, alpha, dropout,
    use_rslora, init), in place. Returns `model` itself; afterwards its only trainable
    parameters are the lora_A and lora_B weights.

    Raises ValueError (naming the module) when r does not fit a target, and ValueError when the
    model already holds LoRALinear layers (merge_and_unload it first).
    """
    if any(isinstance(m, LoRALinear) for m in model.modules()):
        raise ValueError("the model already has LoRA layers; merge_and_unload(model) first")
    names = find_target_modules(model, target_modules)
    for name in names:  # check every target before changing anything
        check_lora_settings(model.get_submodule(name), r, alpha, dropout, init, where=name)
    # TODO: freeze all parameters, then model.set_submodule(name, LoRALinear(...)) per name.
    ### BEGIN SOLUTION
    model.requires_grad_(False)
    for name in names:
        layer = LoRALinear(model.get_submodule(name), r, alpha, dropout, use_rslora, init)
        model.set_submodule(name, layer)
    ### END SOLUTION
    return model


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) numbers of parameters. A tensor shared by two modules (tied input and
    output embeddings) counts once; buffers are not parameters. Equal to peft's
    PeftModel.get_nb_trainable_parameters()."""
    # TODO: sum numel() over model.parameters() (shared tensors come once), and over trainable ones.
    ### BEGIN SOLUTION
    trainable = total = 0
    for p in model.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total
    ### END SOLUTION


# --- saving, loading, merging -------------------------------------------------------------------
def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's weights under peft's key names, and nothing else:
    {PEFT_PREFIX + name + ".lora_A.weight": A, PEFT_PREFIX + name + ".lora_B.weight": B} for
    every LoRALinear `name` of the model, e.g.
    "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight". The base weights are not
    part of an adapter. Values are detached CPU tensors (no autograd graph), ready to save.
    """
    # TODO: walk named_modules(); for each LoRALinear, add its two weights under peft's keys.
    ### BEGIN SOLUTION
    state = {}
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            for part in ("lora_A", "lora_B"):
                weight = getattr(module, part).weight
                state[f"{PEFT_PREFIX}{name}.{part}.weight"] = weight.detach().cpu().clone()
    return state
    ### END SOLUTION


def save_adapter(model: nn.Module, path: str | Path) -> Path:
    """Write `adapter_state_dict(model)` in peft's format into the folder `path`
    (course/lora_io.py; `lora_io.load_adapter(this module, base, path)` loads it back)."""
    return lora_io.save_adapter(globals(), model, path)


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Merge every LoRALinear (merge(), unless it is merged already) and put its base_layer back
    in its place. Returns `model` itself, now with plain nn.Linear layers where the LoRA layers
    were and the same outputs: model.save_pretrained() writes a checkpoint that
    from_pretrained() loads without peft. requires_grad flags are left as they are."""
    # TODO: for each LoRALinear (list them first), merge it and set_submodule its base_layer.
    ### BEGIN SOLUTION
    for name, layer in list(lora_layers(model).items()):
        if not layer.merged:
            layer.merge()
        model.set_submodule(name, layer.base_layer)
    return model
    ### END SOLUTION


# --- what LoRA saves: parameters and memory -----------------------------------------------------
def lora_parameter_count(d_in: int, d_out: int, r: int) -> tuple[int, int]:
    """(full, lora): trainable parameters of a d_out x d_in weight matrix trained in full, and of
    its LoRA pair A (r x d_in) and B (d_out x r). Biases are not counted.

    >>> lora_parameter_count(4096, 4096, 8)   # a 7B model's 4096 x 4096: 16.8M vs 65.5K
    (16777216, 65536)
    """
    # TODO: one product for the full matrix, two for A and B.
    ### BEGIN SOLUTION
    return d_out * d_in, r * d_in + d_out * r
    ### END SOLUTION


# Bytes per parameter (weights, gradients, optimizer) when training with AdamW.
BYTES_PER_PARAM = {
    "fp32": (4, 4, 8),    # fp32 weights and grads; AdamW's two moments in fp32
    "bf16": (2, 2, 4),    # pure bf16: torch's AdamW keeps its moments in the parameters' dtype
    "mixed": (2, 2, 12),  # bf16 weights/grads + fp32 master copy and moments (ZeRO's 16 bytes)
}


def estimate_training_memory(n_params: int, n_trainable: int, precision: str = "bf16",
                             activation_bytes: int = 0) -> dict[str, int]:
    """Bytes needed to train with AdamW, by what holds them:

        weights     = n_params    * w   every parameter, frozen or trainable, LoRA's included
        grads       = n_trainable * g   only trainable parameters get a .grad
        optimizer   = n_trainable * o   AdamW's state (and the master copy in "mixed")
        activations = activation_bytes  what the forward pass keeps for backward
        total       = the sum of the four

    with (w, g, o) = BYTES_PER_PARAM[precision]. Returns {"weights", "grads", "optimizer",
    "activations", "total"} as ints. Full fine-tuning has n_trainable == n_params; LoRA keeps
    the weights (and the activations) but shrinks grads and optimizer to the adapter's size.

    >>> estimate_training_memory(7_000_000_000, 7_000_000_000, "mixed")["total"] / 1e9
    112.0
    """
    if precision not in BYTES_PER_PARAM:
        raise ValueError(f"precision must be one of {sorted(BYTES_PER_PARAM)}, got {precision!r}")
    w, g, o = BYTES_PER_PARAM[precision]
    # TODO: the four terms from the table above, then their total.
    ### BEGIN SOLUTION
    memory = {"weights": n_params * w, "grads": n_trainable * g, "optimizer": n_trainable * o,
              "activations": int(activation_bytes)}
    memory["total"] = sum(memory.values())
    return memory
    ### END SOLUTION
