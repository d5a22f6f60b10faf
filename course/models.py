"""Load the course's base model and tokenizer: the embedded one by default, any HF model on demand.

    model = load_base_model()                       # embedded 1-3M parameter Qwen2 (offline)
    model = load_base_model("Qwen/Qwen2.5-0.5B-Instruct")   # or COURSE_MODEL=... in the environment
    model = load_base_model("smollm2")              # SmolLM2-135M-Instruct (course/smollm2.py)

The same downstream code runs for both; only speed and quality differ.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from course import ASSETS_DIR
from course.device import pick_device

EMBEDDED_MODEL_DIR = ASSETS_DIR / "base_model"
EMBEDDED = "embedded"
SMOLLM2 = "smollm2"  # the real pretrained chat model installed by `make setup` (course/smollm2.py)


class ModelNotAvailableError(RuntimeError):
    """The requested model is neither a local folder nor in the Hugging Face cache."""


def resolve_model_name(name: str | None = None) -> str:
    """Argument > env COURSE_MODEL > the embedded model. Returns a local path or a hub id.
    "smollm2" is SmolLM2-135M-Instruct's converted checkpoint (converted on first use)."""
    name = name or os.environ.get("COURSE_MODEL") or EMBEDDED
    if name == SMOLLM2:
        from course import smollm2
        return str(smollm2.converted_dir())
    return str(EMBEDDED_MODEL_DIR) if name == EMBEDDED else name


def _explain(name: str, err: Exception) -> ModelNotAvailableError:
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
    hint = (
        f"Could not load model {name!r}: it is not a local folder and not in the Hugging Face "
        f"cache{' (HF_HUB_OFFLINE is set)' if offline else ' and could not be downloaded'}.\n"
        "  - To use the course's embedded model, unset COURSE_MODEL (or pass name=None).\n"
        "  - To use a hub model, download it once on a connected machine: "
        f"`huggingface-cli download {name}`, then run again.\n"
        "  - To use a local copy, set COURSE_MODEL to its folder (the one holding config.json)."
    )
    return ModelNotAvailableError(f"{hint}\n  (underlying error: {type(err).__name__}: {err})")


def load_tokenizer(name: str | None = None) -> PreTrainedTokenizerBase:
    """Tokenizer with a chat template and a pad token distinct from EOS."""
    path = resolve_model_name(name)
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise _explain(path, err) from err
    if tok.pad_token is None or tok.pad_token_id == tok.eos_token_id:
        warnings.warn(f"{path}: the pad token is missing or equal to EOS; a collator that masks "
                      "padding will then mask the end token too (see step 2).", stacklevel=2)
    return tok


def load_base_model(name: str | None = None, device: str | torch.device | None = None,
                    dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    """The causal LM in eval mode on `device` (default: `pick_device()`)."""
    path = resolve_model_name(name)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except (OSError, ValueError) as err:
        raise _explain(path, err) from err
    return model.to(device or pick_device()).eval()


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters; tied weights are counted once."""
    params = {id(p): p for p in model.parameters() if p.requires_grad or not trainable_only}
    return sum(p.numel() for p in params.values())
