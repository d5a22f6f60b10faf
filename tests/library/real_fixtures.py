"""Loaders for the vendored real tokenizer, chat templates and data (tests/fixtures/, see the
README files there for sources and licences)."""
from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TEMPLATES = FIXTURES / "templates"
QWEN_DIR = TEMPLATES / "qwen2.5"
LLAMAFACTORY = FIXTURES / "data" / "llamafactory"
FAMILIES = ("qwen2.5", "llama3.2", "mistral-nemo", "gemma2")


@functools.lru_cache(maxsize=1)
def _qwen():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(QWEN_DIR)


def real_tokenizer(family: str = "qwen2.5"):
    """A fresh copy of Qwen2.5-0.5B-Instruct's tokenizer, or, for another family, that BPE with
    the family's chat template and special tokens (single tokens, as in the family's own
    tokenizer; its vocabulary itself is not vendored)."""
    tok = copy.deepcopy(_qwen())
    if family == "qwen2.5":
        return tok
    folder = TEMPLATES / family
    special = json.loads((folder / "special_tokens.json").read_text(encoding="utf-8"))
    tok.add_special_tokens({"additional_special_tokens": special["additional_special_tokens"]})
    tok.bos_token, tok.eos_token = special["bos_token"], special["eos_token"]
    tok.chat_template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    return tok
