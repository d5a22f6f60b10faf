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
get_delta_weight, merge, unmerge. The seed tutorial writes A as an (in, r) matrix and B as
(r, out) and computes x @ A @ B; here, as in peft, lora_A and lora_B are bias-free nn.Linear
layers with weights of shape (r, in) and (out, r), so the update B.weight @ A.weight has the
base weight's (out, in) shape and the saved keys are peft's.
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

PEFT_PREFIX = "base_model.model."  # peft saves adapter weights under PeftModel.base_model.model
ALL_LINEAR = "all-linear"          # peft's shorthand: every nn.Linear except the output head
INITS = ("kaiming", "gaussian")


def check_lora_settings(base: nn.Module, r: int, alpha: float, dropout: float = 0.0,
                        init: str = "kaiming", where: str = "") -> None:
    """Raise TypeError / ValueError, naming `where` (a module name) and the setting, when a
    LoRALinear(base, r, alpha, dropout, init=init) cannot be built."""
    at = f"{where}: " if where else ""
    if not isinstance(base, nn.Linear):
        raise TypeError(f"{at}LoRALinear wraps an nn.Linear, got {type(base).__name__}")
    if isinstance(r, bool) or not isinstance(r, int) or r <= 0:
        raise ValueError(f"{at}LoRA rank r must be a positive integer, got r={r!r}")
    if r > min(base.in_features, base.out_features):
        raise ValueError(
            f"{at}LoRA rank r={r} exceeds min(in_features, out_features) = "
            f"min({base.in_features}, {base.out_features}); B @ A would not be low-rank")
    if not alpha > 0:
        raise ValueError(f"{at}lora alpha must be positive, got alpha={alpha!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{at}lora dropout must be in [0, 1), got dropout={dropout!r}")
    if init not in INITS:
        raise ValueError(f"{at}init must be one of {INITS}, got init={init!r}")


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
            "gaussian" (the seed's choice; peft's init_lora_weights="gaussian"): normal with
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
        raise NotImplementedError(
            'freeze base, keep it as base_layer; make lora_A/B (**factory), lora_dropout, scaling')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., in_features) -> (..., out_features):
        base_layer(x) + lora_B(lora_A(lora_dropout(x))) * scaling.

        Once merged, the update is inside base_layer.weight, so the result is base_layer(x) alone
        (adding the LoRA path again would count the update twice).
        """
        # TODO: the base output, plus (unless merged) the LoRA path: dropout -> A -> B -> scaling.
        raise NotImplementedError(
            'the base output, plus (unless merged) the LoRA path: dropout -> A -> B -> scaling.')

    def get_delta_weight(self) -> torch.Tensor:
        """The update as a weight: lora_B.weight @ lora_A.weight * scaling, shape (out, in) like
        base_layer.weight, in the LoRA weights' dtype. A function of A and B: merging does not
        change it."""
        # TODO: one matrix product and the scaling.
        raise NotImplementedError('one matrix product and the scaling.')

    def merge(self) -> None:
        """Add the update into the base weight, W <- W + get_delta_weight(), and set `merged`, so
        that forward needs one matmul and gives the same output as before.

        Merging an already merged layer warns and changes nothing (never adds the update twice).
        If W + delta holds a NaN or an infinity, raise ValueError and leave W and `merged` as they
        were (peft's safe_merge). The bias is not touched.
        """
        # TODO: skip (warn) if merged; W + delta, checked finite, written into W; set merged.
        raise NotImplementedError(
            'skip (warn) if merged; W + delta, checked finite, written into W; set merged.')

    def unmerge(self) -> None:
        """Undo merge(): W <- W - get_delta_weight() and `merged` = False, so the base weight is
        back (up to float rounding) and the LoRA path is used again. Unmerging a layer that is
        not merged warns and changes nothing."""
        # TODO: skip (warn) if not merged; subtract the update from W; clear merged.
        raise NotImplementedError(
            'skip (warn) if not merged; subtract the update from W; clear merged.')

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
    raise NotImplementedError('compare with each target: the whole name, or its end after a dot.')


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
    raise NotImplementedError(
        '"all-linear": Linear modules that are not the head; a list: names that match.')


def _some_names(model: nn.Module, n: int = 3) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear)][:n]


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
    raise NotImplementedError(
        'freeze all parameters, then model.set_submodule(name, LoRALinear(...)) per name.')
    return model


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) numbers of parameters. A tensor shared by two modules (tied input and
    output embeddings) counts once; buffers are not parameters. Equal to peft's
    PeftModel.get_nb_trainable_parameters()."""
    # TODO: sum numel() over model.parameters() (shared tensors come once), and over trainable ones.
    raise NotImplementedError(
        'sum numel() over model.parameters() (shared tensors come once), and over trainable ones.')


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """{module name: LoRALinear} of every LoRA layer in the model, in named_modules() order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


# --- saving, loading, merging -------------------------------------------------------------------
def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's weights under peft's key names, and nothing else:
    {PEFT_PREFIX + name + ".lora_A.weight": A, PEFT_PREFIX + name + ".lora_B.weight": B} for
    every LoRALinear `name` of the model, e.g.
    "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight". The base weights are not
    part of an adapter. Values are detached CPU tensors (no autograd graph), ready to save.
    """
    # TODO: walk named_modules(); for each LoRALinear, add its two weights under peft's keys.
    raise NotImplementedError(
        "walk named_modules(); for each LoRALinear, add its two weights under peft's keys.")


def adapter_config(model: nn.Module) -> dict:
    """peft's adapter_config.json for the LoRA layers of `model` (all must share r, alpha,
    dropout and rsLoRA; peft's rank_pattern is not supported here)."""
    layers = lora_layers(model)
    if not layers:
        raise ValueError("the model has no LoRALinear layers: inject_lora first")
    settings = {(m.r, m.alpha, _dropout_p(m), m.use_rslora) for m in layers.values()}
    if len(settings) > 1:
        raise ValueError(f"LoRA layers differ in (r, alpha, dropout, use_rslora): {settings}")
    (r, alpha, dropout, use_rslora), = settings
    config = getattr(model, "config", None)
    return {
        "peft_type": "LORA", "task_type": "CAUSAL_LM" if hasattr(model, "generate") else None,
        "base_model_name_or_path": getattr(config, "_name_or_path", None) or None,
        "r": r, "lora_alpha": alpha, "lora_dropout": dropout, "use_rslora": use_rslora,
        "target_modules": _config_targets(model, list(layers)), "bias": "none",
        "fan_in_fan_out": False, "init_lora_weights": True, "inference_mode": True,
        "modules_to_save": None,
    }


def _dropout_p(layer: LoRALinear) -> float:
    return float(getattr(layer.lora_dropout, "p", 0.0))


def _config_targets(model: nn.Module, names: list[str]) -> list[str]:
    """Short targets ("q_proj", ...) as peft writes them when they select exactly `names` in
    this model, else the full names."""
    short = sorted({name.rsplit(".", 1)[-1] for name in names})
    selected = [n for n, _ in model.named_modules() if n and matches_target(n, short)]
    return short if selected == names else names


def save_adapter(model: nn.Module, path: str | Path) -> Path:
    """Write the adapter in peft's format: `path`/adapter_config.json and
    `path`/adapter_model.safetensors, so that PeftModel.from_pretrained(base, path) and
    load_adapter(base, path) both load it. Returns the folder."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = adapter_config(model)
    (path / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n",
                                              encoding="utf-8")
    tensors = {k: v.contiguous() for k, v in adapter_state_dict(model).items()}
    save_file(tensors, str(path / "adapter_model.safetensors"), metadata={"format": "pt"})
    return path


def load_adapter(model: nn.Module, path: str | Path) -> nn.Module:
    """Inject LoRA into `model` as `path`/adapter_config.json says and load the saved A and B
    (from save_adapter or peft's save_pretrained). Raises ValueError, naming the module and the
    shapes, when the adapter was made for a different base model; the model is changed only
    when everything fits."""
    path = Path(path)
    config = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
    for key, ok in (("peft_type", "LORA"), ("rank_pattern", {}), ("alpha_pattern", {}),
                    ("use_dora", False), ("bias", "none"), ("modules_to_save", None)):
        if config.get(key, ok) != ok:
            raise ValueError(f"{path}: adapter setting {key}={config[key]!r} is not supported "
                             f"here (only {key}={ok!r}); use peft's PeftModel.from_pretrained")
    state = load_file(str(path / "adapter_model.safetensors"))
    state = {k.replace(".lora_A.default.", ".lora_A.").replace(".lora_B.default.", ".lora_B."): v
             for k, v in state.items()}
    r, alpha = config["r"], config["lora_alpha"]
    base_name = config.get("base_model_name_or_path")
    try:
        names = find_target_modules(model, config["target_modules"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"adapter {path} (made for base {base_name!r}) does not fit this "
                         f"model: {err}") from err
    expected = {}
    for name in names:
        module = model.get_submodule(name)
        expected[f"{PEFT_PREFIX}{name}.lora_A.weight"] = (r, module.in_features)
        expected[f"{PEFT_PREFIX}{name}.lora_B.weight"] = (module.out_features, r)
    if set(state) != set(expected):
        extra = sorted(k[len(PEFT_PREFIX):] for k in set(state) - set(expected))
        missing = sorted(k[len(PEFT_PREFIX):] for k in set(expected) - set(state))
        raise ValueError(f"adapter {path} was made for a different base model ({base_name!r}): "
                         f"it has weights for modules this model lacks {extra[:2]}, and none "
                         f"for {missing[:2]}")
    for key, shape in expected.items():
        if tuple(state[key].shape) != shape:
            raise ValueError(f"adapter {path} was made for a different base model "
                             f"({base_name!r}): {key[len(PEFT_PREFIX):]} has shape "
                             f"{tuple(state[key].shape)}, this model needs {shape}")
    ours = getattr(getattr(model, "config", None), "_name_or_path", None)
    if base_name and ours and Path(str(base_name)).name != Path(str(ours)).name:
        warnings.warn(f"adapter {path} was saved for base {base_name!r}, loading it into "
                      f"{ours!r}", stacklevel=2)
    inject_lora(model, names, r, alpha, config.get("lora_dropout", 0.0),
                config.get("use_rslora", False))
    with torch.no_grad():
        for name, layer in lora_layers(model).items():
            for part in ("lora_A", "lora_B"):
                getattr(layer, part).weight.copy_(state[f"{PEFT_PREFIX}{name}.{part}.weight"])
    return model


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Merge every LoRALinear (merge(), unless it is merged already) and put its base_layer back
    in its place. Returns `model` itself, now with plain nn.Linear layers where the LoRA layers
    were and the same outputs: model.save_pretrained() writes a checkpoint that
    from_pretrained() loads without peft. requires_grad flags are left as they are."""
    # TODO: for each LoRALinear (list them first), merge it and set_submodule its base_layer.
    raise NotImplementedError(
        'for each LoRALinear (list them first), merge it and set_submodule its base_layer.')


# --- what LoRA saves: parameters and memory -----------------------------------------------------
def lora_parameter_count(d_in: int, d_out: int, r: int) -> tuple[int, int]:
    """(full, lora): trainable parameters of a d_out x d_in weight matrix trained in full, and of
    its LoRA pair A (r x d_in) and B (d_out x r). Biases are not counted.

    >>> lora_parameter_count(4096, 4096, 8)   # the seed's example: 16.8M vs 65.5K (-99.6 %)
    (16777216, 65536)
    """
    # TODO: one product for the full matrix, two for A and B.
    raise NotImplementedError('one product for the full matrix, two for A and B.')


# Bytes per parameter (weights, gradients, optimizer) when training with AdamW.
BYTES_PER_PARAM = {
    "fp32": (4, 4, 8),    # fp32 weights and grads; AdamW's two moments in fp32
    "bf16": (2, 2, 4),    # pure bf16: torch's AdamW keeps its moments in the parameters' dtype
    "mixed": (2, 2, 12),  # bf16 weights and grads + an fp32 master copy and fp32 moments per
                          # trainable parameter (the "16 bytes per parameter" of ZeRO)
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
    raise NotImplementedError('the four terms from the table above, then their total.')


def activation_bytes(config, tokens: int, bytes_per_value: int = 2,
                     checkpointing: bool = False) -> int:
    """A rough count of the activation memory of one training step of a Qwen2/LLaMA-style
    decoder (SDPA attention, no dropout), `tokens` = batch size * sequence length. `config`
    needs hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
    num_key_value_heads and vocab_size (a transformers config works).

    Values kept for backward, per token and layer: the attention block's input and its norm's
    output (2h), q (h), k and v (2 kv), the attention output (h); the MLP block's input and
    norm output (2h), gate, up, act(gate) and act(gate)*up (4 i): 6h + 2kv + 4i. Plus the
    logits: `bytes_per_value` each, then an fp32 copy and fp32 log-probabilities for the loss
    (transformers upcasts), 8 bytes more per vocabulary entry and token. With gradient
    checkpointing, each layer keeps only its input (h) and one layer is recomputed at a time.
    LoRA keeps about the same activations as full fine-tuning: gradients must still flow back
    through every frozen layer to reach the adapters of the layers below (with LoRA dropout,
    each adapted layer also keeps a dropped-out copy of its input, which this leaves out).
    """
    h, i, n = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    kv = h // config.num_attention_heads * config.num_key_value_heads
    per_layer = 6 * h + 2 * kv + 4 * i
    layers = n * h + per_layer if checkpointing else n * per_layer
    logits = config.vocab_size * (bytes_per_value + 8)
    return tokens * (layers * bytes_per_value + 2 * h * bytes_per_value + logits)
