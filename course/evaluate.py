"""Generation helpers and exact-match evaluation on the course's instruction tasks."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase


def stop_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Ids that end an assistant turn: `<|im_end|>` (and the tokenizer's EOS if different)."""
    ids = {tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.eos_token_id}
    return sorted(i for i in ids if i is not None and i != tokenizer.unk_token_id)


@torch.no_grad()
def generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str],
             max_new_tokens: int = 40, batch_size: int = 64, progress: bool = False,
             stop_at_end_token: bool = True) -> list[str]:
    """Greedy continuations of raw text `prompts` (no template is applied here).

    Batches are left-padded so every row's last prompt token sits at the same position.
    Returns the new text only, cut at the first stop token.
    """
    device = next(model.parameters()).device
    stops = stop_token_ids(tokenizer) if stop_at_end_token else []
    old_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    was_training = model.training
    model.eval()
    outputs: list[str] = []
    try:
        for start in tqdm(range(0, len(prompts), batch_size), desc="generate", disable=not progress):
            batch = tokenizer(list(prompts[start:start + batch_size]), return_tensors="pt",
                              padding=True, add_special_tokens=False).to(device)
            new = model.generate(
                **batch, max_new_tokens=max_new_tokens, do_sample=False,
                eos_token_id=stops or None, pad_token_id=tokenizer.pad_token_id,
            )[:, batch["input_ids"].shape[1]:]
            for row in new.tolist():
                cut = next((i for i, t in enumerate(row) if t in stops), len(row))
                outputs.append(tokenizer.decode(row[:cut], skip_special_tokens=True))
    finally:
        tokenizer.padding_side = old_side
        model.train(was_training)
    return outputs


def chat_prompt(tokenizer: PreTrainedTokenizerBase, messages: list[dict]) -> str:
    """Template everything before the final assistant turn and open a new assistant turn.

    The template's default system prompt (Qwen2.5 writes "You are Qwen, ..." into every
    conversation without a system turn) is made explicit first, with
    `course.templates.with_default_system`, the same call that `course.data.load_split(...,
    tokenizer=...)` and `course.userdata.load_user_file(..., tokenizer=...)` apply to training
    data: the prompt is then exactly the start of the training text of the same conversation,
    whether that text is built by the template or turn by turn by hand (step 2)."""
    from course.templates import with_default_system

    if messages and messages[-1]["role"] == "assistant":
        messages = messages[:-1]
    return tokenizer.apply_chat_template(with_default_system(messages, tokenizer), tokenize=False,
                                         add_generation_prompt=True)


@dataclass
class ExactMatch:
    """Overall and per-task exact match, with every prediction kept for inspection."""

    score: float
    per_task: dict[str, float]
    predictions: list[dict] = field(repr=False, default_factory=list)

    def table(self) -> str:
        rows = [f"{'task':16s} {'exact match':>11s}"]
        rows += [f"{t:16s} {v:11.1%}" for t, v in sorted(self.per_task.items())]
        rows.append(f"{'overall':16s} {self.score:11.1%}")
        return "\n".join(rows)


def exact_match(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                dataset: Iterable[dict], batch_size: int = 64, max_new_tokens: int = 40,
                progress: bool = True) -> ExactMatch:
    """Greedy-generate the final assistant turn of each conversation and compare it exactly
    (after stripping surrounding whitespace) with the reference. A model that does not stop
    at `<|im_end|>` within `max_new_tokens` cannot score.

    `dataset`: records with `messages` (and optionally `task`), e.g. the course's test split.
    """
    records = list(dataset)
    prompts = [chat_prompt(tokenizer, r["messages"]) for r in records]
    preds = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens,
                     batch_size=batch_size, progress=progress)
    per_task: dict[str, list[bool]] = defaultdict(list)
    kept = []
    for rec, pred in zip(records, preds):
        ref = rec["messages"][-1]["content"]
        ok = pred.strip() == ref.strip()
        per_task[rec.get("task") or "all"].append(ok)
        kept.append({"task": rec.get("task"), "reference": ref, "prediction": pred, "correct": ok})
    total = sum(r["correct"] for r in kept)
    return ExactMatch(score=total / max(len(kept), 1),
                      per_task={t: sum(v) / len(v) for t, v in per_task.items()},
                      predictions=kept)
