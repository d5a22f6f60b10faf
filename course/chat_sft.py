"""Fine-tune a chat model on a few conversations with the course's own pieces: step 2's labels,
step 3's optimizer, schedule and `train_step`, step 4's LoRA (the answer keys in solutions/).

    result = finetune(model, tokenizer, conversations, method="lora", steps=30, lr=2e-3)
    answers = chat(model, tokenizer, ["Who are you?"])

Made for SmolLM2 (course/smollm2.py) on a CPU: no checkpoints, no evaluation set; one run is a
few dozen optimizer steps. `method="full"` trains every parameter (the tied embedding too).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import torch
from tqdm.auto import tqdm

from course.batching import micro_batches_for_step
from course.evaluate import chat_prompt, generate
from course.grading import load_reference
from course.templates import with_default_system

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class FinetuneResult:
    """What `finetune` did: the loss of every step, seconds, supervised tokens/s, trainables."""

    method: str
    steps: int
    losses: list[float]
    seconds: float
    tokens: int
    tokens_per_s: float
    trainable: int
    settings: dict = field(default_factory=dict)
    step_seconds: list[float] = field(default_factory=list)
    step_tokens: list[int] = field(default_factory=list)

    def steady_tokens_per_s(self) -> float:
        """Supervised tokens/s without the first step (allocations, warm-up)."""
        return sum(self.step_tokens[1:]) / max(sum(self.step_seconds[1:]), 1e-9)


def encode(conversations: Sequence[list[dict]], tokenizer) -> list[dict]:
    """Step 2's labels (answers and their end token trained) for each conversation, the
    template's default system prompt made explicit first (it is in every chat, so in training)."""
    masking = load_reference("step2_masking", "masking_exercise")
    return [masking.labels_for_conversation(with_default_system(m, tokenizer), tokenizer)
            for m in conversations]


def finetune(model: torch.nn.Module, tokenizer, conversations: Sequence[list[dict]], *,
             method: str = "lora", steps: int = 30, lr: float = 2e-3, batch_size: int = 8,
             lora_r: int = 8, lora_alpha: float = 16.0, targets: Sequence[str] = LORA_TARGETS,
             warmup_steps: int = 3, max_grad_norm: float | None = 1.0, seed: int = 0,
             progress: bool = True) -> FinetuneResult:
    """Train `model` in place on `conversations` for `steps` optimizer steps of `batch_size`
    conversations (shuffled epochs), lr with linear warmup and cosine decay, AdamW without
    weight decay. method "lora": step 4's `inject_lora` on `targets` first (the base frozen;
    `lora.merge_and_unload(model)` afterwards gives a plain model); "full": every parameter."""
    if method not in ("lora", "full"):
        raise ValueError(f"method must be 'lora' or 'full', got {method!r}")
    sft = load_reference("step3_sft", "sft_exercise")
    torch.manual_seed(seed)
    if method == "lora":
        load_reference("step4_lora", "lora_exercise").inject_lora(
            model, list(targets), r=lora_r, alpha=lora_alpha)
    else:
        model.requires_grad_(True)
    examples = encode(conversations, tokenizer)
    cfg = sft.FinetuneConfig(learning_rate=lr, max_steps=steps, batch_size=batch_size,
                             warmup_steps=warmup_steps, weight_decay=0.0,
                             max_grad_norm=max_grad_norm, seed=seed)
    optimizer = sft.make_optimizer(model, cfg)
    scheduler = sft.make_scheduler(optimizer, warmup_steps, steps)
    trainable = sum(p.numel() for p in {id(p): p for p in model.parameters()
                                        if p.requires_grad}.values())
    losses, step_seconds, step_tokens = [], [], []
    start = time.perf_counter()
    bar = tqdm(range(steps), desc=f"{method} SFT", disable=not progress)
    for step in bar:
        t0 = time.perf_counter()
        batches = micro_batches_for_step(examples, step, cfg, tokenizer.pad_token_id)
        stats = sft.train_step(model, optimizer, scheduler, batches, max_grad_norm)
        step_seconds.append(time.perf_counter() - t0)
        losses.append(stats["loss"])
        step_tokens.append(stats["tokens"])
        bar.set_postfix(loss=f"{stats['loss']:.3f}")
    seconds = time.perf_counter() - start
    model.eval()
    tokens = sum(step_tokens)
    return FinetuneResult(method, steps, losses, seconds, tokens, tokens / max(seconds, 1e-9),
                          trainable, dict(lr=lr, batch_size=batch_size, lora_r=lora_r,
                                          lora_alpha=lora_alpha, warmup_steps=warmup_steps,
                                          seed=seed, targets=list(targets)
                                          if method == "lora" else "all"),
                          step_seconds, step_tokens)


def chat(model: torch.nn.Module, tokenizer, questions: Sequence[str],
         max_new_tokens: int = 40, system: str | None = None) -> list[str]:
    """Greedy answers to one-turn chats (the template's default system prompt, or `system`)."""
    head = [{"role": "system", "content": system}] if system else []
    prompts = [chat_prompt(tokenizer, head + [{"role": "user", "content": q}])
               for q in questions]
    return generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens)
