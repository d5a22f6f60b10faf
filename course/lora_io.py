"""LoRA adapters on disk in peft's format: adapter_config.json + adapter_model.safetensors.

    save_adapter(lora, model, "adapter")     # PeftModel.from_pretrained(base, "adapter") loads it
    load_adapter(lora, base, "adapter")      # and so does this, for peft's own adapters too

`lora` is step 4's exercise module (or the dict of its globals, see course/pieces.py): the
adapter's weights come from its `adapter_state_dict`, target names from its `matches_target` and
`find_target_modules`, and loading injects LoRA with its `inject_lora`. Also: the settings check
of a LoRA layer (`check_lora_settings`) and `lora_layers(model)`.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from course.pieces import Pieces

INITS = ("kaiming", "gaussian")  # how lora_A starts (lora_B always starts at zero)


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


def lora_layers(model: nn.Module) -> dict[str, nn.Module]:
    """{module name: LoRA layer} of every LoRA layer in the model (a module with a base_layer,
    lora_A and lora_B), in named_modules() order."""
    return {name: m for name, m in model.named_modules()
            if all(hasattr(m, a) for a in ("base_layer", "lora_A", "lora_B"))}


def linear_names(model: nn.Module) -> list[str]:
    """Names of the model's nn.Linear modules (for error messages: what names look like)."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def dropout_p(layer: nn.Module) -> float:
    """The dropout probability of a LoRA layer's lora_dropout (0.0 for nn.Identity)."""
    return float(getattr(layer.lora_dropout, "p", 0.0))


def _config_targets(lora: Pieces, model: nn.Module, names: list[str]) -> list[str]:
    """Short targets ("q_proj", ...) as peft writes them when they select exactly `names` in
    this model, else the full names."""
    short = sorted({name.rsplit(".", 1)[-1] for name in names})
    selected = [n for n, _ in model.named_modules() if n and lora.matches_target(n, short)]
    return short if selected == names else names


def adapter_config(lora: Any, model: nn.Module) -> dict:
    """peft's adapter_config.json for the LoRA layers of `model` (all must share r, alpha,
    dropout and rsLoRA; peft's rank_pattern is not supported here)."""
    lora = Pieces(lora)
    layers = lora_layers(model)
    if not layers:
        raise ValueError("the model has no LoRALinear layers: inject_lora first")
    settings = {(m.r, m.alpha, dropout_p(m), m.use_rslora) for m in layers.values()}
    if len(settings) > 1:
        raise ValueError(f"LoRA layers differ in (r, alpha, dropout, use_rslora): {settings}")
    (r, alpha, dropout, use_rslora), = settings
    config = getattr(model, "config", None)
    return {
        "peft_type": "LORA", "task_type": "CAUSAL_LM" if hasattr(model, "generate") else None,
        "base_model_name_or_path": getattr(config, "_name_or_path", None) or None,
        "r": r, "lora_alpha": alpha, "lora_dropout": dropout, "use_rslora": use_rslora,
        "target_modules": _config_targets(lora, model, list(layers)), "bias": "none",
        "fan_in_fan_out": False, "init_lora_weights": True, "inference_mode": True,
        "modules_to_save": None,
    }


def save_adapter(lora: Any, model: nn.Module, path: str | Path) -> Path:
    """Write the adapter in peft's format: `path`/adapter_config.json and
    `path`/adapter_model.safetensors (the weights of `lora.adapter_state_dict`), so that
    PeftModel.from_pretrained(base, path) and load_adapter(lora, base, path) both load it.
    Returns the folder."""
    lora = Pieces(lora)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = adapter_config(lora, model)
    (path / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n",
                                              encoding="utf-8")
    tensors = {k: v.contiguous() for k, v in lora.adapter_state_dict(model).items()}
    save_file(tensors, str(path / "adapter_model.safetensors"), metadata={"format": "pt"})
    return path


def load_adapter(lora: Any, model: nn.Module, path: str | Path) -> nn.Module:
    """Inject LoRA into `model` as `path`/adapter_config.json says and load the saved A and B
    (from save_adapter or peft's save_pretrained). Raises ValueError, naming the module and the
    shapes, when the adapter was made for a different base model; the model is changed only
    when everything fits."""
    lora = Pieces(lora)
    prefix = lora.PEFT_PREFIX
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
        names = lora.find_target_modules(model, config["target_modules"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"adapter {path} (made for base {base_name!r}) does not fit this "
                         f"model: {err}") from err
    expected = {}
    for name in names:
        module = model.get_submodule(name)
        expected[f"{prefix}{name}.lora_A.weight"] = (r, module.in_features)
        expected[f"{prefix}{name}.lora_B.weight"] = (module.out_features, r)
    if set(state) != set(expected):
        extra = sorted(k[len(prefix):] for k in set(state) - set(expected))
        missing = sorted(k[len(prefix):] for k in set(expected) - set(state))
        raise ValueError(f"adapter {path} was made for a different base model ({base_name!r}): "
                         f"it has weights for modules this model lacks {extra[:2]}, and none "
                         f"for {missing[:2]}")
    for key, shape in expected.items():
        if tuple(state[key].shape) != shape:
            raise ValueError(f"adapter {path} was made for a different base model "
                             f"({base_name!r}): {key[len(prefix):]} has shape "
                             f"{tuple(state[key].shape)}, this model needs {shape}")
    ours = getattr(getattr(model, "config", None), "_name_or_path", None)
    if base_name and ours and Path(str(base_name)).name != Path(str(ours)).name:
        warnings.warn(f"adapter {path} was saved for base {base_name!r}, loading it into "
                      f"{ours!r}", stacklevel=2)
    lora.inject_lora(model, names, r, alpha, config.get("lora_dropout", 0.0),
                     config.get("use_rslora", False))
    with torch.no_grad():
        for name, layer in lora_layers(model).items():
            for part in ("lora_A", "lora_B"):
                getattr(layer, part).weight.copy_(state[f"{prefix}{name}.{part}.weight"])
    return model
